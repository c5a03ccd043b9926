/**
 * Filling etcd fast: puts grouped in transactions (etcd's default limit is 128 operations per
 * txn), several in flight. Values are deterministic JSON padded to the requested size, so every
 * run stores the same bytes.
 */
import type { Etcd3 } from 'etcd3';
import { progress } from './stats.ts';

export interface SeedOptions {
  /** Keys are `${prefix}${i padded}`. */
  prefix: string;
  count: number;
  valueBytes: number;
  /** Puts per transaction. Default 100. */
  perTxn?: number;
  /** Transactions in flight. Default 8. */
  concurrency?: number;
}

export function keyFor(prefix: string, i: number): string {
  return `${prefix}obj-${String(i).padStart(7, '0')}`;
}

/** A JSON value of exactly `bytes` bytes (ASCII). */
export function valueFor(i: number, bytes: number): string {
  const head = `{"i":${i},"pad":"`;
  const tail = '"}';
  const padLength = Math.max(0, bytes - head.length - tail.length);
  return head + 'x'.repeat(padLength) + tail;
}

/** Writes the objects and returns the revision of the last write. */
export async function seed(client: Etcd3, options: SeedOptions): Promise<number> {
  const perTxn = options.perTxn ?? 100;
  const concurrency = options.concurrency ?? 8;
  let next = 0;
  let last = 0;
  let lastReport = Date.now();
  const worker = async () => {
    while (next < options.count) {
      const from = next;
      next = Math.min(options.count, next + perTxn);
      const success = [];
      for (let i = from; i < next; i++) {
        success.push({
          request_put: {
            key: Buffer.from(keyFor(options.prefix, i)),
            value: Buffer.from(valueFor(i, options.valueBytes)),
          },
        });
      }
      const res = await client.kv.txn({ success });
      last = Math.max(last, Number(res.header.revision));
      if (Date.now() - lastReport > 5_000) {
        progress(`  seeding ${options.prefix}: ${next}/${options.count}`);
        lastReport = Date.now();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return last;
}
