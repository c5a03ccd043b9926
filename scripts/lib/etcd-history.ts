/**
 * Gives a running etcd member another history, as operators do: wipe its data (an empty member
 * on the same ports, the same name and so the same cluster id), or restore it from a snapshot
 * taken earlier with `etcdctl snapshot save`, with or without `etcdutl snapshot restore
 * --bump-revision N --mark-compacted` (etcd's documented procedure for Kubernetes). For the
 * history tests and the robustness faults. etcdctl and etcdutl come from the same Debian
 * packages as etcd (scripts/fetch-etcd.sh), beside its binary.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { etcdBinary } from './etcd-process.ts';

const run = promisify(execFile);

/** What a restore needs of a member: where its data is, and how it names itself to its peers. */
export interface RestorableMember {
  readonly endpoint: string;
  readonly dataDir: string;
  readonly name: string;
  readonly peerUrl: string;
  kill(): Promise<void>;
  /** Starts the member again on its ports and data directory; resolves once healthy. */
  restart(): Promise<void>;
}

function tool(name: 'etcdctl' | 'etcdutl'): string {
  return path.join(path.dirname(etcdBinary()), name);
}

/** `etcdctl snapshot save`: the member's whole keyspace at its current revision, into `file`. */
export async function saveSnapshot(endpoint: string, file: string): Promise<void> {
  await run(tool('etcdctl'), ['--endpoints', endpoint, 'snapshot', 'save', file], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
}

/** Kills the member, empties its data directory and starts it again: a brand-new, empty history. */
export async function wipeMember(member: RestorableMember): Promise<void> {
  await member.kill();
  rmSync(member.dataDir, { recursive: true, force: true });
  mkdirSync(member.dataDir, { recursive: true });
  await member.restart();
}

export interface RestoreOptions {
  /** `--bump-revision N --mark-compacted`: revisions continue N above the snapshot's, all compacted. */
  readonly bumpRevision?: number;
  /** Leave the member stopped after the restore (a test starts it later). */
  readonly leaveStopped?: boolean;
}

/**
 * Kills the member and replaces its data with `snapshot` (`etcdutl snapshot restore`), then
 * starts it again: etcd goes back to the snapshot's state and revision (plus the bump).
 */
export async function restoreMember(
  member: RestorableMember,
  snapshot: string,
  options: RestoreOptions = {},
): Promise<void> {
  await member.kill();
  rmSync(member.dataDir, { recursive: true, force: true });
  const bump =
    options.bumpRevision !== undefined
      ? ['--bump-revision', String(options.bumpRevision), '--mark-compacted']
      : [];
  await run(tool('etcdutl'), [
    'snapshot',
    'restore',
    snapshot,
    '--data-dir',
    member.dataDir,
    '--name',
    member.name,
    '--initial-cluster',
    `${member.name}=${member.peerUrl}`,
    '--initial-advertise-peer-urls',
    member.peerUrl,
    ...bump,
  ]);
  if (!options.leaveStopped) await member.restart();
}

/** The revision a snapshot file was taken at (`etcdutl snapshot status`). */
export async function snapshotRevision(file: string): Promise<number> {
  const { stdout } = await run(tool('etcdutl'), ['snapshot', 'status', file, '--write-out', 'json']);
  const revision = Number((JSON.parse(stdout) as { revision?: number }).revision);
  if (!Number.isSafeInteger(revision)) throw new Error(`etcdutl snapshot status: no revision in ${stdout}`);
  return revision;
}

/** A whole cluster's members, and how they were bootstrapped. */
export interface RestorableCluster {
  readonly members: readonly RestorableMember[];
  readonly initialCluster: string;
  readonly token: string;
}

/** Kills every member, empties every data directory and starts them all again: a new, empty cluster. */
export async function wipeCluster(cluster: RestorableCluster): Promise<void> {
  await Promise.all(cluster.members.map((m) => m.kill()));
  for (const m of cluster.members) {
    rmSync(m.dataDir, { recursive: true, force: true });
    mkdirSync(m.dataDir, { recursive: true });
  }
  await Promise.all(cluster.members.map((m) => m.restart()));
}

/**
 * Kills every member and restores each from the same `snapshot` (etcd's procedure for a cluster),
 * then starts them all again; the members elect a leader among themselves.
 */
export async function restoreCluster(
  cluster: RestorableCluster,
  snapshot: string,
  options: RestoreOptions = {},
): Promise<void> {
  await Promise.all(cluster.members.map((m) => m.kill()));
  const bump =
    options.bumpRevision !== undefined
      ? ['--bump-revision', String(options.bumpRevision), '--mark-compacted']
      : [];
  for (const m of cluster.members) {
    rmSync(m.dataDir, { recursive: true, force: true });
    await run(tool('etcdutl'), [
      ...['snapshot', 'restore', snapshot, '--data-dir', m.dataDir, '--name', m.name],
      ...['--initial-cluster', cluster.initialCluster, '--initial-cluster-token', cluster.token],
      ...['--initial-advertise-peer-urls', m.peerUrl, ...bump],
    ]);
  }
  if (!options.leaveStopped) await Promise.all(cluster.members.map((m) => m.restart()));
}
