/**
 * Informer clients for the robustness run: each keeps an `edgewatch/client` informer over one
 * prefix at one target for the whole run, and records what its handlers saw and every `sync`
 * (the store claims to be exactly etcd's state at that revision), with a copy of the store
 * itself now and then. robustness/informer-check.ts judges the record against etcd's history.
 */
import { EdgewatchClient, type Informer, type KvObject } from '../client/index.ts';
import type { InformerEntry, InformerRecord, ModelObject } from './model.ts';
import type { Observed } from './writers.ts';

/** A copy of the whole store is recorded every this many syncs (and when the informer stops). */
const SNAPSHOT_EVERY = 25;

const model = (o: KvObject): ModelObject => ({ ...o });

export class InformerClient {
  readonly record: InformerRecord;
  readonly #informer: Informer;
  readonly #entries: InformerEntry[] = [];

  constructor(name: string, target: { name: string; baseUrl: string }, prefix: string, observed: Observed) {
    this.#informer = new EdgewatchClient({ url: target.baseUrl }).informer(prefix);
    this.record = { name, target: target.name, prefix, entries: this.#entries };
    const entries = this.#entries;
    const informer = this.#informer;
    let syncs = 0;
    let lists = 0;
    /** A list started since the last entry: what follows until its sync are its differences. */
    const marker = () => {
      if (informer.stats.lists === lists) return;
      lists = informer.stats.lists;
      entries.push({ op: 'list' });
    };
    informer.on('add', (o) => {
      marker();
      entries.push({ op: 'add', object: model(o) });
    });
    informer.on('update', (o) => {
      marker();
      entries.push({ op: 'update', object: model(o) });
    });
    informer.on('delete', (o) => {
      marker();
      entries.push({ op: 'delete', object: model(o) });
    });
    informer.on('sync', (revision) => {
      marker();
      observed.observe(revision);
      entries.push({ op: 'sync', revision, at: Date.now() });
      if (++syncs % SNAPSHOT_EVERY === 0) this.#snapshot();
    });
  }

  get stats() {
    return this.#informer.stats;
  }

  start(): void {
    this.#informer.start();
  }

  async stop(): Promise<void> {
    await this.#informer.stop();
    this.#snapshot();
  }

  /** The store as it is now (between syncs it may hold a revision not yet proven whole). */
  #snapshot(): void {
    this.#entries.push({
      op: 'snapshot',
      revision: this.#informer.revision,
      objects: this.#informer.list().map(model),
    });
  }
}
