/**
 * Discovery as the Kubernetes API server answers it: the legacy documents (`/api`, `/api/v1`,
 * `/apis`, `/apis/{group}`, `/apis/{group}/{version}`), aggregated discovery (one document for
 * `/api` and one for `/apis`, KEP-3352) and `/version`, all built from the resource table.
 *
 * client-go asks for aggregated discovery in `Accept` and decides which format it got from the
 * response `Content-Type` alone, so the content type must name the aggregated format exactly
 * when the body is one. Every resource is read-only here: its verbs are get, list and watch.
 */
import type { ResourceInfo, ResourceTable } from './resources.ts';

const VERBS = ['get', 'list', 'watch'];

/** The Kubernetes release edgewatch answers as (kubectl picks its binary from `/version`). */
export const SERVED_KUBERNETES = { major: '1', minor: '32', gitVersion: 'v1.32.0' };

export interface DiscoveryDocument {
  readonly contentType: string;
  readonly body: unknown;
}

const JSON_TYPE = 'application/json';

/** `/version`. */
export function versionDocument(): DiscoveryDocument {
  return {
    contentType: JSON_TYPE,
    body: {
      ...SERVED_KUBERNETES,
      gitCommit: 'edgewatch',
      gitTreeState: 'clean',
      buildDate: '2026-01-01T00:00:00Z',
      goVersion: 'go1.23.0',
      compiler: 'gc',
      platform: 'linux/amd64',
    },
  };
}

/** The aggregated discovery version the client asked for in `Accept`, if any (v2 preferred). */
export function aggregatedVersion(accept: string | null): 'v2' | 'v2beta1' | undefined {
  if (accept === null) return undefined;
  let best: 'v2' | 'v2beta1' | undefined;
  for (const type of parseAccept(accept)) {
    if (type.type !== JSON_TYPE && type.type !== '*/*') continue;
    if (type.params.g !== 'apidiscovery.k8s.io' || type.params.as !== 'APIGroupDiscoveryList') continue;
    if (type.params.v === 'v2') return 'v2';
    if (type.params.v === 'v2beta1') best ??= 'v2beta1';
  }
  return best;
}

/** Media types of an Accept header with their parameters (q-values ignored: order decides). */
export function parseAccept(accept: string): { type: string; params: Record<string, string> }[] {
  return accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((s) => s.trim());
    const record: Record<string, string> = {};
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq > 0) record[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
    }
    return { type: type.toLowerCase(), params: record };
  });
}

/** `/api`: the core group's versions, legacy or aggregated. */
export function coreDocument(table: ResourceTable, accept: string | null): DiscoveryDocument {
  const aggregated = aggregatedVersion(accept);
  if (aggregated !== undefined) {
    const resources = table.at('', 'v1');
    const items = resources.length === 0 ? [] : [groupItem('', [{ version: 'v1', resources }])];
    return aggregatedList(aggregated, items);
  }
  return {
    contentType: JSON_TYPE,
    body: {
      kind: 'APIVersions',
      versions: ['v1'],
      serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '' }],
    },
  };
}

/** `/apis`: every other group, legacy or aggregated. */
export function groupsDocument(table: ResourceTable, accept: string | null): DiscoveryDocument {
  const aggregated = aggregatedVersion(accept);
  const groups = table.groups();
  if (aggregated !== undefined) {
    const items = groups.map((g) =>
      groupItem(
        g.name,
        g.versions.map((version) => ({ version, resources: table.at(g.name, version) })),
      ),
    );
    return aggregatedList(aggregated, items);
  }
  return {
    contentType: JSON_TYPE,
    body: { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(apiGroup) },
  };
}

/** `/apis/{group}`, or undefined when the group is not served. */
export function groupDocument(table: ResourceTable, group: string): DiscoveryDocument | undefined {
  const found = table.groups().find((g) => g.name === group);
  if (found === undefined) return undefined;
  return { contentType: JSON_TYPE, body: { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(found) } };
}

/** `/api/v1` or `/apis/{group}/{version}`, or undefined when nothing is served there. */
export function resourceListDocument(
  table: ResourceTable,
  group: string,
  version: string,
): DiscoveryDocument | undefined {
  const resources = table.at(group, version);
  // The core group always exists (kubectl reads /api/v1 whatever it holds); others only when served.
  if (resources.length === 0 && group !== '') return undefined;
  return {
    contentType: JSON_TYPE,
    body: {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group === '' ? version : `${group}/${version}`,
      resources: resources.map((r) => ({
        name: r.resource,
        singularName: r.singular,
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: VERBS,
        ...(r.shortNames.length > 0 ? { shortNames: r.shortNames } : {}),
      })),
    },
  };
}

function apiGroup(g: { name: string; versions: string[] }) {
  const versions = g.versions.map((version) => ({ groupVersion: `${g.name}/${version}`, version }));
  return { name: g.name, versions, preferredVersion: versions[0] };
}

function groupItem(name: string, versions: { version: string; resources: ResourceInfo[] }[]) {
  return {
    metadata: { name, creationTimestamp: null },
    versions: versions.map((v) => ({
      version: v.version,
      resources: v.resources.map((r) => ({
        resource: r.resource,
        responseKind: { group: r.group, version: v.version, kind: r.kind },
        scope: r.namespaced ? 'Namespaced' : 'Cluster',
        singularResource: r.singular,
        verbs: VERBS,
        ...(r.shortNames.length > 0 ? { shortNames: r.shortNames } : {}),
      })),
      freshness: 'Current',
    })),
  };
}

function aggregatedList(version: 'v2' | 'v2beta1', items: unknown[]): DiscoveryDocument {
  return {
    contentType: `${JSON_TYPE};g=apidiscovery.k8s.io;v=${version};as=APIGroupDiscoveryList`,
    body: {
      kind: 'APIGroupDiscoveryList',
      apiVersion: `apidiscovery.k8s.io/${version}`,
      metadata: {},
      items,
    },
  };
}
