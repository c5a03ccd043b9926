/**
 * The vocabulary every tier shares: objects, events, revisions and the injected clock.
 *
 * These types are the in-memory form *and* the wire form of the read API (../shared/API.md):
 * a stored object is frozen once and then shared by the store, its snapshots, the event
 * history and every response that serialises it, so no tier copies values per read.
 */

/** An etcd revision. Safe as a JS number: etcd revisions are int64 but never near 2^53. */
export type Revision = number;

/**
 * One etcd key-value pair as the API returns it. Exactly one of `value` (the bytes were valid
 * UTF-8) and `valueBase64` (they were not) is set. Keys are UTF-8 strings; etcd orders keys by
 * their bytes, so compare them with `compareKeys` (core/keys.ts), never with `<` alone.
 *
 * Invariant: objects are immutable once created (`Object.freeze` in `makeObject`).
 */
export interface KvObject {
  readonly key: string;
  readonly value?: string;
  readonly valueBase64?: string;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  readonly version: number;
  /** The lease the key is attached to; absent when none. */
  readonly lease?: string;
}

/**
 * One change at one revision. For `DELETE`, `object` is the key's last state with `modRevision`
 * set to the deleting revision (what the API's DELETED event carries), `version` 0 as etcd does.
 * `prev` is the state before the change (absent for a create).
 */
export interface ChangeEvent {
  readonly type: 'PUT' | 'DELETE';
  readonly object: KvObject;
  readonly prev?: KvObject;
}

/**
 * All the changes etcd made at one revision, in etcd's order. A transaction writes several keys
 * at one revision; they travel and are applied together, never split across batches.
 */
export interface RevisionBatch {
  readonly revision: Revision;
  readonly events: readonly ChangeEvent[];
}

/**
 * Where a cache is fed from. The relay's reflector drives it from etcd; an edge replica drives
 * it from the relay's replication stream. Implementations must accept calls in this order:
 * `replace` first, then any mix of `apply` (strictly increasing revisions, each above the
 * current one) and `progress` (never below the current revision), with `replace` again on a
 * relist.
 */
export interface CacheSink {
  /**
   * Swap the whole state for `objects`, which is exactly etcd's state at `revision`.
   * `options.newHistory`: the old state was from another etcd history (or wrong); every
   * subscriber is ended with that error (a 410), none continues.
   */
  replace(revision: Revision, objects: readonly KvObject[], options?: { newHistory?: Error }): void;
  /** Apply one revision's changes atomically. */
  apply(batch: RevisionBatch): void;
  /** Etcd (or the upstream tier) says nothing changed in this prefix up to `revision`. */
  progress(revision: Revision): void;
}

/** A cancel function returned by timers and subscriptions. */
export type Cancel = () => void;

/**
 * Time, injected (STYLE.md §10): core code never calls `Date.now()` or `setTimeout` itself, so
 * tests of timeouts and bookmarks drive a manual clock instead of sleeping.
 */
export interface Clock {
  /** Milliseconds, monotonic enough for windows and timeouts. */
  now(): number;
  /** Run `fn` after `ms` milliseconds unless cancelled first. */
  setTimeout(fn: () => void, ms: number): Cancel;
}

/** The clock of the process the code runs in (Node or workerd). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, ms);
    return () => clearTimeout(handle);
  },
};
