/**
 * The current state of one cached prefix: every live key, in etcd's key order, with O(1)
 * snapshots.
 *
 * A B+ tree (sorted-btree) gives ordered range scans for paginated lists and copy-on-write
 * `clone()`, so a snapshot costs O(1) when taken and each later write copies only the O(log n)
 * nodes on its path. A list served from a snapshot therefore sees exactly one revision no
 * matter how many writes land while it is being paged or serialised.
 */
import BTreeImport from 'sorted-btree';
import { compareKeys, isUnder } from './keys.ts';
import { encoded } from './object.ts';
import type { KvObject, Revision } from './types.ts';

type BTree<K, V> = BTreeImport<K, V>;

// sorted-btree is CommonJS with `exports.default = BTree`. Bundlers (vitest, esbuild's browser
// mode) hand us the class; Node's own ESM loader (tsx, plain node) hands us `module.exports`,
// whose `.default` is the class. Accept both so the relay and the Worker load the same code.
const BTree: typeof BTreeImport =
  (BTreeImport as unknown as { default?: typeof BTreeImport }).default ?? BTreeImport;

/** One page of a list. */
export interface ListPage {
  /** The objects, in key order. */
  readonly items: KvObject[];
  /**
   * How many keys under the prefix follow the last item (the API's `remainingItemCount`);
   * 0 when the page holds everything that is left.
   */
  readonly remaining: number;
}

/** Where a list starts and how long it may be. */
export interface ListOptions {
  /** First key to return (inclusive), for continue tokens. Keys before the prefix are ignored. */
  readonly startKey?: string;
  /** Maximum number of items; unset or <= 0 means no limit. */
  readonly limit?: number;
}

/** The read side shared by the live store and its snapshots. */
export interface KeyReader {
  /** The revision whose state this reader reflects. */
  readonly revision: Revision;
  /** Number of keys held. O(1). */
  readonly size: number;
  get(key: string): KvObject | undefined;
  /**
   * The keys under `prefix` from `startKey`, at most `limit` of them.
   *
   * Cost: O(log n + items). `remaining` is computed only when the limit cut the page short, by
   * two rank queries on the tree's cached subtree sizes: O(log n · node size), independent of
   * how many keys remain, so paging through millions of keys stays linear overall.
   */
  list(prefix: string, options?: ListOptions): ListPage;
  /**
   * The objects under `prefix` from `startKey` (inclusive), in key order, read lazily: a list
   * streamed from it holds one position in the tree, never an array of the whole prefix.
   */
  scan(prefix: string, startKey?: string): Iterable<KvObject>;
}

/** Reads over one tree; the live store and snapshots differ only in who may write it. */
class TreeReader implements KeyReader {
  protected tree: BTree<string, KvObject>;
  protected rev: Revision;

  constructor(tree: BTree<string, KvObject>, revision: Revision) {
    this.tree = tree;
    this.rev = revision;
  }

  get revision(): Revision {
    return this.rev;
  }

  get size(): number {
    return this.tree.size;
  }

  get(key: string): KvObject | undefined {
    return this.tree.get(key);
  }

  list(prefix: string, options: ListOptions = {}): ListPage {
    const start =
      options.startKey !== undefined && compareKeys(options.startKey, prefix) > 0 ? options.startKey : prefix;
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Number.POSITIVE_INFINITY;
    const items: KvObject[] = [];
    const reused: (string | KvObject)[] = [];
    for (const [key, object] of this.tree.entries(start, reused)) {
      if (!isUnder(key, prefix)) return { items, remaining: 0 };
      if (items.length === limit) {
        // At least one more key: count them all from `key` to the end of the prefix.
        const remaining = countBefore(this.tree, (k) => compareKeys(k, prefix) < 0 || isUnder(k, prefix));
        const done = countBefore(this.tree, (k) => compareKeys(k, key) < 0);
        return { items, remaining: remaining - done };
      }
      items.push(object);
    }
    return { items, remaining: 0 };
  }

  *scan(prefix: string, startKey?: string): IterableIterator<KvObject> {
    const start = startKey !== undefined && compareKeys(startKey, prefix) > 0 ? startKey : prefix;
    const reused: (string | KvObject)[] = [];
    for (const [key, object] of this.tree.entries(start, reused)) {
      if (!isUnder(key, prefix)) return;
      yield object;
    }
  }
}

/**
 * A read-only view of the store at one revision. Taking it is O(1); it never changes, whatever
 * the store does afterwards. Safe to keep across awaits and to share between requests.
 */
export class StoreSnapshot extends TreeReader {
  /** The same state tagged with a later revision (nothing changed in between). */
  at(revision: Revision): StoreSnapshot {
    return revision === this.rev ? this : new StoreSnapshot(this.tree, revision);
  }
}

/**
 * The mutable current state. Only the watch cache writes it (must not await between the writes
 * of one batch); `revision` is whatever its owner says the contents reflect.
 */
export class KeyStore extends TreeReader {
  /** Objects enter in the form caches keep (core/object.ts `EncodedObject`). */
  constructor(objects: Iterable<KvObject> = [], revision: Revision = 0) {
    super(new BTree<string, KvObject>(undefined, compareKeys), revision);
    for (const object of objects) this.tree.set(object.key, encoded(object));
  }

  override get revision(): Revision {
    return this.rev;
  }

  /** Set by the owner after it applied a batch or learned of progress. */
  override set revision(revision: Revision) {
    this.rev = revision;
  }

  set(object: KvObject): void {
    this.tree.set(object.key, encoded(object));
  }

  /** Removes `key`; returns whether it was present. */
  delete(key: string): boolean {
    return this.tree.delete(key);
  }

  /** An O(1) read-only view of the current contents at `this.revision`. */
  snapshot(): StoreSnapshot {
    return new StoreSnapshot(this.tree.clone(), this.rev);
  }

  /** An O(1) independent, writable copy (used to rewind to an older revision). */
  clone(): KeyStore {
    const copy = new KeyStore([], this.rev);
    copy.tree = this.tree.clone();
    return copy;
  }
}

/** The tree nodes as sorted-btree 2.x lays them out (`keys[i]` is the max key of `children[i]`). */
interface TreeNode {
  keys: string[];
  children?: TreeNode[];
  size(): number;
}

/**
 * How many keys satisfy `before`, a predicate that holds for a prefix of the key order (true,
 * true, …, false, false). O(depth · node size) using the subtree sizes that sorted-btree caches
 * in internal nodes. Reaches into the tree's private `_root`; sorted-btree is pinned, and
 * store.test.ts checks this against a plain count, so a layout change fails the tests, not prod.
 */
function countBefore(tree: BTree<string, KvObject>, before: (key: string) => boolean): number {
  let node = (tree as unknown as { _root: TreeNode })._root;
  let count = 0;
  for (;;) {
    const { keys, children } = node;
    const i = firstFalse(keys, before);
    if (children === undefined) return count + i;
    for (let j = 0; j < i; j++) count += (children[j] as TreeNode).size();
    const next = children[i];
    if (next === undefined) return count;
    node = next;
  }
}

/** Index of the first key for which `before` is false (binary search; keys.length if none). */
function firstFalse(keys: string[], before: (key: string) => boolean): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(keys[mid] as string)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A page read elsewhere (the relay's etcd fallback), read like a snapshot so the read path
 * serves it exactly as it serves the cache's own: the items of one range, in key order, and how
 * many keys under the prefix follow them. Only the listing it was fetched for is meaningful:
 * `list` returns the items at or after `startKey` and counts the ones it leaves out as remaining.
 */
export class FetchedPage implements KeyReader {
  readonly revision: Revision;
  readonly #items: readonly KvObject[];
  readonly #remaining: number;

  constructor(revision: Revision, items: readonly KvObject[], remaining: number) {
    this.revision = revision;
    this.#items = items;
    this.#remaining = remaining;
  }

  get size(): number {
    return this.#items.length;
  }

  get(key: string): KvObject | undefined {
    return this.#items.find((o) => o.key === key);
  }

  list(prefix: string, options: ListOptions = {}): ListPage {
    const start = options.startKey;
    const from = start === undefined ? 0 : this.#items.findIndex((o) => compareKeys(o.key, start) >= 0);
    const under = (from < 0 ? [] : this.#items.slice(from)).filter((o) => isUnder(o.key, prefix));
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : under.length;
    const items = under.slice(0, limit);
    return { items, remaining: under.length - items.length + this.#remaining };
  }

  scan(prefix: string, startKey?: string): Iterable<KvObject> {
    return this.list(prefix, startKey !== undefined ? { startKey } : {}).items;
  }
}
