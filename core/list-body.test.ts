import { describe, expect, it } from 'vitest';
import { listResponse, listBody as pageBody } from './format.ts';
import { CHUNK_BYTES, listBody, writeObject } from './list-body.ts';
import { makeObject } from './object.ts';
import { KeyStore } from './store.ts';
import type { KvObject } from './types.ts';

const utf8 = new TextEncoder();
const objects = (n: number, valueBytes: number): KvObject[] =>
  Array.from({ length: n }, (_, i) =>
    makeObject({
      key: `/r/${String(i).padStart(6, '0')}${i % 7 === 0 ? '"✓' : ''}`,
      value:
        i % 11 === 0
          ? new Uint8Array([0xff, i & 0xff])
          : utf8.encode(`{"i":${i},"p":"${'x'.repeat(valueBytes)}\n"}`),
      createRevision: i + 1,
      modRevision: i + 100,
      version: (i % 3) + 1,
      lease: i % 5 === 0 ? String(1000 + i) : undefined,
    }),
  );

async function chunksOf(body: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  if (body instanceof Uint8Array) return [body];
  const out: Uint8Array[] = [];
  for await (const chunk of body) out.push(chunk);
  return out;
}
const text = (chunks: Uint8Array[]) => chunks.map((c) => new TextDecoder().decode(c)).join('');

describe('list bodies', () => {
  it('are JSON.stringify of the page, byte for byte, small or streamed', async () => {
    for (const n of [0, 1, 3, 2_000]) {
      const items = objects(n, 200);
      const expected = JSON.stringify({ kind: 'List', metadata: { resourceVersion: '42' }, items });
      const res = listResponse({ items, revision: 42 }, { servedBy: 'relay', revision: 42 });
      expect(await res.text()).toBe(expected);
      expect(pageBody({ items }, 42)).toBe(expected);
    }
  });

  it('come as one buffer when they fit in a chunk, else as chunks of bounded size', async () => {
    const small = listBody('[', objects(10, 100), ']', writeObject);
    expect(small).toBeInstanceOf(Uint8Array);
    const big = listBody('[', objects(3_000, 1_000), ']', writeObject);
    expect(big).toBeInstanceOf(ReadableStream);
    const chunks = await chunksOf(big);
    expect(chunks.length).toBeGreaterThan(40);
    // A chunk is cut after the object that filled it: at most one object beyond CHUNK_BYTES.
    for (const chunk of chunks) expect(chunk.byteLength).toBeLessThanOrEqual(CHUNK_BYTES + 1_200);
    expect(JSON.parse(text(chunks))).toHaveLength(3_000);
  });

  it('read the items only as the client pulls: a stream not read holds one chunk of them', async () => {
    let read = 0;
    function* counted() {
      for (const o of objects(5_000, 1_000)) {
        read++;
        yield o;
      }
    }
    const body = listBody('[', counted(), ']', writeObject);
    if (!(body instanceof ReadableStream)) throw new Error('expected a stream');
    const afterFirst = read;
    expect(afterFirst).toBeLessThan(100);
    const reader = body.getReader();
    await reader.read();
    await reader.read();
    expect(read).toBeLessThan(3 * afterFirst);
    await reader.cancel();
  });

  it('stream from a snapshot: writes after it is taken are not in the body', async () => {
    const store = new KeyStore(objects(3_000, 500), 7);
    const snapshot = store.snapshot();
    const body = listBody('[', snapshot.scan('/r/'), ']', writeObject);
    // The store moves on while the body is being read.
    store.delete('/r/000001');
    store.set(
      makeObject({
        key: '/r/000002',
        value: utf8.encode('new'),
        createRevision: 1,
        modRevision: 8,
        version: 2,
      }),
    );
    const items = JSON.parse(text(await chunksOf(body))) as KvObject[];
    expect(items).toHaveLength(3_000);
    expect(items[1]?.key).toBe('/r/000001');
    expect(items[2]?.modRevision).toBe(102);
  });
});
