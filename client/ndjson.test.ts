import { describe, expect, it } from 'vitest';
import { EdgewatchError, TransportError } from './errors.ts';
import { ndjsonChunks } from './ndjson.ts';

/** A body that sends `pieces` and then ends, or breaks when `breakAtEnd`. */
function body(pieces: string[], breakAtEnd = false): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const queue = [...pieces];
  return new ReadableStream({
    pull(controller) {
      const piece = queue.shift();
      if (piece !== undefined) controller.enqueue(encoder.encode(piece));
      else if (breakAtEnd) controller.error(new TypeError('terminated'));
      else controller.close();
    },
  });
}

async function collect(stream: AsyncIterable<unknown[]>): Promise<unknown[][]> {
  const out: unknown[][] = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

describe('ndjsonChunks', () => {
  it('yields the values of each piece, joins lines split across pieces, skips blank keep-alive lines', async () => {
    const chunks = await collect(ndjsonChunks(body(['{"a":1}\n\n{"b"', ':2}\n', '\n', '{"c":3}'])));
    expect(chunks).toEqual([[{ a: 1 }], [{ b: 2 }], [{ c: 3 }]]);
  });

  it('throws TransportError when the body breaks, after what arrived whole', async () => {
    const seen: unknown[][] = [];
    const error = await (async () => {
      for await (const chunk of ndjsonChunks(body(['{"a":1}\n{"b":'], true))) seen.push(chunk);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([[{ a: 1 }]]);
    expect(error).toBeInstanceOf(TransportError);
  });

  it('throws EdgewatchError on a line that is not JSON', async () => {
    await expect(collect(ndjsonChunks(body(['nope\n'])))).rejects.toBeInstanceOf(EdgewatchError);
  });

  it('ends at once when the signal aborts, even while a read is pending', async () => {
    const abort = new AbortController();
    const never = new ReadableStream<Uint8Array>({ start: () => {} });
    const done = collect(ndjsonChunks(never, abort.signal));
    abort.abort();
    await expect(done).resolves.toEqual([]);
  });
});
