/**
 * Revision requests on a replica link: "what is etcd's current revision?", asked by an edge
 * replica for a most-recent read. The relay answers with etcd's revision from a quorum read, but
 * only once its cache has reached it, so the replica's progress follows right behind the answer.
 * At most MAX_INFLIGHT_REVISION_REQUESTS wait at once per replica; more get 429 at once (they are
 * cheap to repeat).
 */
import { ServiceUnavailable, TooManyRequests, toStatus } from '../core/errors.ts';
import type { RelayMessage } from '../core/protocol.ts';
import type { Clock, Revision } from '../core/types.ts';
import type { ReplicationSource } from './replica-types.ts';

/** Revision requests one replica may have waiting at once. */
export const MAX_INFLIGHT_REVISION_REQUESTS = 32;

export class RevisionRequests {
  readonly #clock: Clock;
  readonly #waitTimeoutMs: number;
  readonly #send: (message: RelayMessage) => void;
  #inflight = 0;

  constructor(clock: Clock, waitTimeoutMs: number, send: (message: RelayMessage) => void) {
    this.#clock = clock;
    this.#waitTimeoutMs = waitTimeoutMs;
    this.#send = send;
  }

  /** Answers request `id` for `source` (a `revisionResponse` with the revision or a Status). */
  answer(source: ReplicationSource, id: number): void {
    if (this.#inflight >= MAX_INFLIGHT_REVISION_REQUESTS) {
      const error = toStatus(new TooManyRequests('too many revision requests in flight'));
      this.#send({ v: 1, type: 'revisionResponse', id, error });
      return;
    }
    this.#inflight++;
    const answer = async (): Promise<Revision> => {
      let revision: Revision | undefined;
      try {
        revision = await within(this.#clock, source.latestRevision(), this.#waitTimeoutMs);
      } catch (error) {
        throw new ServiceUnavailable(
          `etcd is unavailable: ${error instanceof Error ? error.message : error}`,
        );
      }
      if (revision === undefined) throw new ServiceUnavailable('etcd did not answer a quorum read in time');
      await source.cache.waitFor(revision, this.#waitTimeoutMs); // 504 Timeout when it does not
      return revision;
    };
    answer()
      .then(
        (revision) => this.#send({ v: 1, type: 'revisionResponse', id, revision }),
        (error: unknown) => this.#send({ v: 1, type: 'revisionResponse', id, error: toStatus(error) }),
      )
      .finally(() => this.#inflight--)
      .catch(() => {});
  }
}

/** Resolves with the value, or undefined after `ms`; rejects if `promise` rejects first. */
export function within<T>(clock: Clock, promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve, reject) => {
    const cancel = clock.setTimeout(() => resolve(undefined), ms);
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (error: unknown) => {
        cancel();
        reject(error);
      },
    );
  });
}
