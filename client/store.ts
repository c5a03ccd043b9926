/**
 * The informer's local copy of a prefix: the objects by key, listed in etcd's key order.
 *
 * Only the informer writes to it (one caller, no concurrency); readers get frozen objects that
 * the tiers sent, never copies. `list()` sorts once per change and then reuses the sorted array.
 */
import { compareKeys } from '../core/keys.ts';
import type { KvObject } from '../core/types.ts';

export class LocalStore {
  readonly #objects = new Map<string, KvObject>();
  #sorted: readonly KvObject[] | undefined;

  get size(): number {
    return this.#objects.size;
  }

  get(key: string): KvObject | undefined {
    return this.#objects.get(key);
  }

  has(key: string): boolean {
    return this.#objects.has(key);
  }

  /** Every object, in key order; the same array until the store changes. */
  list(): readonly KvObject[] {
    this.#sorted ??= Object.freeze([...this.#objects.values()].sort((a, b) => compareKeys(a.key, b.key)));
    return this.#sorted;
  }

  keys(): IterableIterator<string> {
    return this.#objects.keys();
  }

  set(object: KvObject): void {
    this.#objects.set(object.key, object);
    this.#sorted = undefined;
  }

  delete(key: string): void {
    if (this.#objects.delete(key)) this.#sorted = undefined;
  }
}
