/**
 * The resource table: which Kubernetes resources a tier serves, where each one's objects are
 * stored, and what discovery says about it. With no configuration it is derived from the data
 * itself, laid out as the API server lays out etcd:
 *
 *   /registry/<resource>/[<namespace>/]<name>           built-in groups (apps, batch, ... too)
 *   /registry/<group>/<resource>/[<namespace>/]<name>   a segment with a dot is a group: custom
 *                                                       resources and aggregated APIs
 *   /registry/services/specs/…, /registry/minions/…     irregular built-ins (catalogue.ts)
 *
 * The derivation walks the distinct storage prefixes of a snapshot rather than every key: it
 * reads the first key, works out its resource's prefix from the key alone, looks at up to
 * `PROBE` objects under that prefix for one that is a Kubernetes object (its `apiVersion` and
 * `kind` give group, version and kind; its key's depth gives the scope), then jumps past the
 * prefix. Cost O(resources · PROBE · log n) per snapshot, so it can run per revision. A resource
 * whose first objects are all left out (protobuf, encrypted) is not discovered; an explicit entry
 * serves it anyway (its non-JSON objects are still left out).
 *
 * CustomResourceDefinitions stored in the data add their short names, singular and scope, and
 * make a defined resource discoverable before it has objects, as in Kubernetes. An explicit table
 * (a file or flags, `parseExplicitResources`) adds or overrides entries last.
 */
import { BadRequest } from '../errors.ts';
import { keyAfter } from '../keys.ts';
import type { KeyReader } from '../store.ts';
import type { KvObject } from '../types.ts';
import { CATALOGUE_BY_PATH, CONTAINER_SEGMENTS, catalogueEntry, NOT_RESOURCES } from './catalogue.ts';
import { groupOf, versionOf, viewOf } from './objects.ts';

/** One served resource. Invariant: `keyPrefix` ends with `/` and lies under the table's root. */
export interface ResourceInfo {
  /** '' for the core group. */
  readonly group: string;
  /** The versions it is served at; the first is the preferred one. */
  readonly versions: readonly string[];
  /** The plural name, as in URLs (`configmaps`). */
  readonly resource: string;
  readonly kind: string;
  readonly singular: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  /** Where its objects are: `/registry/configmaps/`. */
  readonly keyPrefix: string;
}

/** The Kubernetes root in etcd that every tier assumes unless configured. */
export const DEFAULT_ROOT = '/registry/';
/** Objects looked at per storage prefix before deciding that it holds nothing servable. */
const PROBE = 16;

/** An immutable table with the lookups request routing and discovery need. */
export class ResourceTable {
  readonly resources: readonly ResourceInfo[];
  readonly #byGroupResource = new Map<string, ResourceInfo>();

  constructor(resources: readonly ResourceInfo[]) {
    this.resources = [...resources].sort(
      (a, b) => a.group.localeCompare(b.group) || a.resource.localeCompare(b.resource),
    );
    for (const r of this.resources) this.#byGroupResource.set(`${r.group}/${r.resource}`, r);
  }

  /** The resource for a URL's (group, version, plural), or undefined (404). */
  lookup(group: string, version: string, resource: string): ResourceInfo | undefined {
    const info = this.#byGroupResource.get(`${group}/${resource}`);
    return info?.versions.includes(version) ? info : undefined;
  }

  /** Groups other than core, each with its versions, preferred first. */
  groups(): { name: string; versions: string[] }[] {
    const groups = new Map<string, string[]>();
    for (const r of this.resources) {
      if (r.group === '') continue;
      const versions = groups.get(r.group) ?? [];
      for (const v of r.versions) if (!versions.includes(v)) versions.push(v);
      groups.set(r.group, versions);
    }
    return [...groups].map(([name, versions]) => ({ name, versions: sortVersions(versions) }));
  }

  /** The resources served at group/version. */
  at(group: string, version: string): ResourceInfo[] {
    return this.resources.filter((r) => r.group === group && r.versions.includes(version));
  }
}

/**
 * Kubernetes' version priority (GA > beta > alpha, higher numbers first), so that discovery's
 * preferred version is the one the API server would prefer.
 */
export function sortVersions(versions: readonly string[]): string[] {
  const rank = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (m === null) return [3, 0, 0];
    const stage = m[2] === undefined ? 0 : m[2] === 'beta' ? 1 : 2;
    return [stage, -Number(m[1]), -Number(m[3] ?? 0)];
  };
  return [...versions].sort((a, b) => {
    const [x, y] = [rank(a), rank(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2] || a.localeCompare(b);
  });
}

/** Where a key's resource is stored, from the key alone (see the module comment). */
export interface StoragePath {
  /** The resource's prefix, e.g. `/registry/configmaps/`. */
  readonly keyPrefix: string;
  /** The group the layout names (`example.com` for `/registry/example.com/…`), else undefined. */
  readonly group: string | undefined;
  readonly resource: string;
}

/**
 * The storage prefix `key` belongs to; or `{ skip }`, a prefix (ending in `/`) that holds no
 * resource (ranges, an unknown `services/<x>/`); or `{ skip: undefined }` for a key that cannot
 * be an object (too few segments). `undefined` when the key is outside `root`.
 */
export function storagePathOf(
  key: string,
  root: string,
): StoragePath | { skip: string | undefined } | undefined {
  if (!key.startsWith(root)) return undefined;
  const segments = key.slice(root.length).split('/');
  const [first = '', second = ''] = segments;
  if (segments.length < 2 || first === '') return { skip: undefined };
  if (NOT_RESOURCES.has(first)) return { skip: `${root}${first}/` };
  if (CONTAINER_SEGMENTS.has(first) || first.includes('.')) {
    if (segments.length < 3 || second === '') return { skip: undefined };
    const path = `${first}/${second}/`;
    const builtin = CATALOGUE_BY_PATH.get(path);
    if (builtin !== undefined)
      return { keyPrefix: `${root}${path}`, group: builtin.group, resource: builtin.resource };
    if (CONTAINER_SEGMENTS.has(first)) return { skip: `${root}${path}` };
    return { keyPrefix: `${root}${path}`, group: first, resource: second };
  }
  const builtin = CATALOGUE_BY_PATH.get(`${first}/`);
  return { keyPrefix: `${root}${first}/`, group: builtin?.group, resource: builtin?.resource ?? first };
}

/** The smallest key after every key under `prefix` (which ends in `/`, so `/` + 1 = `0`). */
function pastPrefix(prefix: string): string {
  return `${prefix.slice(0, -1)}0`;
}

/**
 * Whether `key` is at the depth of an object of `info` (`<prefix><name>`, or `<prefix><ns>/<name>`
 * when namespaced), checked without allocating: lists run it once per key.
 */
export function isObjectKey(key: string, info: ResourceInfo): boolean {
  const start = info.keyPrefix.length;
  if (key.length <= start || !key.startsWith(info.keyPrefix)) return false;
  const slash = key.indexOf('/', start);
  if (!info.namespaced) return slash < 0;
  return slash > start && slash < key.length - 1 && key.indexOf('/', slash + 1) < 0;
}

/** Derives the table from a snapshot (see the module comment), then applies `explicit`. */
export function deriveResources(
  reader: KeyReader,
  root: string = DEFAULT_ROOT,
  explicit: readonly ExplicitResource[] = [],
): ResourceTable {
  const found = new Map<string, ResourceInfo>();
  let start = root;
  for (;;) {
    const first = reader.list(root, { startKey: start, limit: 1 }).items[0];
    if (first === undefined) break;
    const path = storagePathOf(first.key, root);
    if (path === undefined) break;
    if ('skip' in path) {
      start = path.skip === undefined ? keyAfter(first.key) : pastPrefix(path.skip);
      continue;
    }
    const info = probe(reader, path, first.key);
    if (info !== undefined) found.set(`${info.group}/${info.resource}`, info);
    start = pastPrefix(path.keyPrefix);
  }
  for (const crd of customResourceDefinitions(reader, root)) {
    const key = `${crd.group}/${crd.resource}`;
    const seen = found.get(key);
    found.set(
      key,
      seen === undefined ? crd : { ...seen, ...crd, versions: mergeVersions(crd.versions, seen.versions) },
    );
  }
  for (const entry of explicit) {
    const key = `${entry.group}/${entry.resource}`;
    found.set(key, completeExplicit(entry, found.get(key), root));
  }
  return new ResourceTable([...found.values()]);
}

/** Looks at up to PROBE objects under `path` for one that says what the resource is. */
function probe(reader: KeyReader, path: StoragePath, firstKey: string): ResourceInfo | undefined {
  const page = reader.list(path.keyPrefix, { startKey: firstKey, limit: PROBE });
  for (const kv of page.items) {
    const info = fromObject(kv, path);
    if (info !== undefined) return info;
  }
  return undefined;
}

function fromObject(kv: KvObject, path: StoragePath): ResourceInfo | undefined {
  const view = viewOf(kv);
  if (view === undefined) return undefined;
  const group = groupOf(view.apiVersion);
  // A layout that names a group must agree with the object's own group.
  if (path.group !== undefined && path.group !== group) return undefined;
  const depth = kv.key.slice(path.keyPrefix.length).split('/').length;
  if (depth !== 1 && depth !== 2) return undefined;
  const builtin = catalogueEntry(group, path.resource);
  return {
    group,
    versions: [versionOf(view.apiVersion)],
    resource: path.resource,
    kind: view.kind,
    singular: view.kind.toLowerCase(),
    namespaced: depth === 2,
    shortNames: builtin?.shortNames ?? [],
    keyPrefix: path.keyPrefix,
  };
}

function mergeVersions(preferred: readonly string[], more: readonly string[]): string[] {
  return [...new Set([...preferred, ...more])];
}

/** The resources that CustomResourceDefinitions in the data define (served versions only). */
function customResourceDefinitions(reader: KeyReader, root: string): ResourceInfo[] {
  const prefix = `${root}apiextensions.k8s.io/customresourcedefinitions/`;
  const out: ResourceInfo[] = [];
  for (const kv of reader.list(prefix).items) {
    const body = viewOf(kv)?.body as { spec?: unknown } | undefined;
    const spec = body?.spec as
      | {
          group?: unknown;
          scope?: unknown;
          names?: { plural?: unknown; singular?: unknown; kind?: unknown; shortNames?: unknown };
          versions?: { name?: unknown; served?: unknown; storage?: unknown }[];
        }
      | undefined;
    const names = spec?.names;
    if (
      typeof spec?.group !== 'string' ||
      typeof names?.plural !== 'string' ||
      typeof names.kind !== 'string'
    ) {
      continue;
    }
    const served = (Array.isArray(spec.versions) ? spec.versions : [])
      .filter((v) => v.served !== false && typeof v.name === 'string')
      .map((v) => v.name as string);
    if (served.length === 0) continue;
    out.push({
      group: spec.group,
      versions: sortVersions(served),
      resource: names.plural,
      kind: names.kind,
      singular:
        typeof names.singular === 'string' && names.singular !== ''
          ? names.singular
          : names.kind.toLowerCase(),
      namespaced: spec.scope !== 'Cluster',
      shortNames: Array.isArray(names.shortNames)
        ? names.shortNames.filter((s) => typeof s === 'string')
        : [],
      keyPrefix: `${root}${spec.group}/${names.plural}/`,
    });
  }
  return out;
}

// ---- the explicit table ---------------------------------------------------------------------

/**
 * One entry of an explicit table: `group` and `resource` name it; anything else given overrides
 * what the data says. Unset fields come from the derived entry, then the catalogue, then the
 * layout rules (`keyPrefix`) and the kind (`singular`).
 */
export interface ExplicitResource {
  readonly group: string;
  readonly resource: string;
  readonly version?: string;
  readonly kind?: string;
  readonly singular?: string;
  readonly namespaced?: boolean;
  readonly shortNames?: readonly string[];
  readonly keyPrefix?: string;
}

function completeExplicit(
  entry: ExplicitResource,
  derived: ResourceInfo | undefined,
  root: string,
): ResourceInfo {
  const builtin = catalogueEntry(entry.group, entry.resource);
  const kind = entry.kind ?? derived?.kind ?? builtin?.kind;
  const version = entry.version ?? derived?.versions[0] ?? builtin?.version;
  const namespaced = entry.namespaced ?? derived?.namespaced ?? builtin?.namespaced;
  const what = `resource ${entry.group === '' ? '' : `${entry.group}/`}${entry.resource}`;
  if (kind === undefined || version === undefined || namespaced === undefined) {
    throw new Error(`${what}: give kind, version and namespaced (nothing in the data or catalogue says)`);
  }
  const keyPrefix =
    entry.keyPrefix ??
    derived?.keyPrefix ??
    (builtin !== undefined
      ? `${root}${builtin.path}`
      : entry.group.includes('.')
        ? `${root}${entry.group}/${entry.resource}/`
        : `${root}${entry.resource}/`);
  if (!keyPrefix.startsWith(root) || !keyPrefix.endsWith('/')) {
    throw new Error(`${what}: keyPrefix must lie under ${root} and end with /`);
  }
  return {
    group: entry.group,
    versions: mergeVersions([version], derived?.versions ?? []),
    resource: entry.resource,
    kind,
    singular: entry.singular ?? derived?.singular ?? kind.toLowerCase(),
    namespaced,
    shortNames: entry.shortNames ?? derived?.shortNames ?? builtin?.shortNames ?? [],
    keyPrefix,
  };
}

/**
 * Parses an explicit table: `{"resources":[{"group":"example.com","resource":"widgets",
 * "version":"v1","kind":"Widget","namespaced":true,"shortNames":["wd"]}]}` (a file's contents or
 * the `K8S_RESOURCES` variable). Throws an `Error` naming the bad field.
 */
export function parseExplicitResources(text: string): ExplicitResource[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('resource table: not JSON');
  }
  const list = (value as { resources?: unknown } | null)?.resources;
  if (!Array.isArray(list)) throw new Error('resource table: expected {"resources": [...]}');
  return list.map((raw, i): ExplicitResource => {
    const e = (raw ?? {}) as Record<string, unknown>;
    const where = `resource table: resources[${i}]`;
    const str = (name: string, optional: boolean): string | undefined => {
      const v = e[name];
      if (v === undefined && optional) return undefined;
      if (typeof v !== 'string') throw new Error(`${where}.${name} must be a string`);
      return v;
    };
    const group = str('group', true) ?? '';
    const resource = str('resource', false) as string;
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(resource))
      throw new Error(`${where}.resource is not a resource name`);
    const out: {
      group: string;
      resource: string;
      version?: string;
      kind?: string;
      singular?: string;
      namespaced?: boolean;
      shortNames?: string[];
      keyPrefix?: string;
    } = { group, resource };
    for (const name of ['version', 'kind', 'singular', 'keyPrefix'] as const) {
      const v = str(name, true);
      if (v !== undefined) out[name] = v;
    }
    if (e.namespaced !== undefined) {
      if (typeof e.namespaced !== 'boolean') throw new Error(`${where}.namespaced must be true or false`);
      out.namespaced = e.namespaced;
    }
    if (e.shortNames !== undefined) {
      if (!Array.isArray(e.shortNames) || !e.shortNames.every((s) => typeof s === 'string')) {
        throw new Error(`${where}.shortNames must be a list of strings`);
      }
      out.shortNames = e.shortNames as string[];
    }
    return out;
  });
}

/**
 * Resolves a URL's resource: the table first; a built-in from the catalogue otherwise (so an
 * empty built-in resource lists as empty instead of 404, as Kubernetes answers). `undefined`:
 * the caller answers 404.
 */
export function resolveResource(
  table: ResourceTable,
  group: string,
  version: string,
  resource: string,
  root: string = DEFAULT_ROOT,
): ResourceInfo | undefined {
  const found = table.lookup(group, version, resource);
  if (found !== undefined) return found;
  const builtin = catalogueEntry(group, resource);
  if (builtin === undefined || builtin.version !== version) return undefined;
  return {
    group,
    versions: [builtin.version],
    resource,
    kind: builtin.kind,
    singular: builtin.kind.toLowerCase(),
    namespaced: builtin.namespaced,
    shortNames: builtin.shortNames,
    keyPrefix: `${root}${builtin.path}`,
  };
}

/** Validates a path segment used as a name or namespace (no `/`, not `.` or `..`). */
export function checkSegment(kind: 'name' | 'namespace', value: string): string {
  if (value === '' || value === '.' || value === '..' || value.includes('/')) {
    throw new BadRequest(`invalid ${kind} ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * One resource given as a flag: `[<group>/]<version>/<resource>[=<Kind>][,namespaced|,cluster]
 * [,short=<name>+<name>][,prefix=<keyPrefix>]`, e.g. `example.com/v1/widgets=Widget,namespaced,short=wd`
 * or `v1/configmaps,short=cm+conf`. Throws an `Error` naming what is wrong.
 */
export function parseResourceFlag(text: string): ExplicitResource {
  const [head = '', ...options] = text.split(',').map((s) => s.trim());
  const [path = '', kind] = head.split('=');
  const parts = path.split('/');
  if (parts.length !== 2 && parts.length !== 3) {
    throw new Error(`--k8s-resource ${JSON.stringify(text)}: expected [group/]version/resource`);
  }
  const [group, version, resource] = parts.length === 2 ? ['', parts[0], parts[1]] : parts;
  const entry: {
    group: string;
    resource: string;
    version?: string;
    kind?: string;
    namespaced?: boolean;
    shortNames?: string[];
    keyPrefix?: string;
  } = { group: group ?? '', resource: resource ?? '', version: version ?? '' };
  if (kind !== undefined && kind !== '') entry.kind = kind;
  for (const option of options) {
    if (option === 'namespaced' || option === 'cluster') entry.namespaced = option === 'namespaced';
    else if (option.startsWith('short='))
      entry.shortNames = option
        .slice(6)
        .split('+')
        .filter((s) => s !== '');
    else if (option.startsWith('prefix=')) entry.keyPrefix = option.slice(7);
    else throw new Error(`--k8s-resource ${JSON.stringify(text)}: unknown option ${JSON.stringify(option)}`);
  }
  // The same validation as a file's entries.
  const [checked] = parseExplicitResources(JSON.stringify({ resources: [entry] }));
  if (checked === undefined) throw new Error(`--k8s-resource ${JSON.stringify(text)}`);
  return checked;
}
