/**
 * Measures the replication protocol's wire encoding (printed, not asserted): the JSON objects
 * core/protocol.ts sends versus a positional-array encoding, for 1,000 single-event batches of
 * ~1 KB values. The numbers are quoted in core/protocol.ts's doc comment; rerun after changing
 * the message shapes: `npx tsx scripts/protocol-size.ts`.
 */

import { gzipSync } from 'node:zlib';
import { type BatchesMessage, decodeRelayMessage, encode } from '../core/protocol.ts';
import type { RevisionBatch } from '../core/types.ts';

function configMap(i: number): string {
  const data: Record<string, string> = {};
  const object = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `app-${i}`, namespace: 'default', labels: { app: 'web', tier: 'frontend' } },
    data,
  };
  for (let j = 0; JSON.stringify(object).length < 1000; j++)
    data[`key${j}`] = `${((i * 7919 + j) * 104729).toString(36)}-${j}`;
  return JSON.stringify(object);
}

const batches: RevisionBatch[] = [];
for (let i = 0; i < 1000; i++) {
  const revision = 5000 + i;
  const object = {
    key: `/registry/configmaps/default/app-${i}`,
    value: configMap(i),
    createRevision: 1000 + i,
    modRevision: revision,
    version: 3,
  };
  batches.push({ revision, events: [{ type: 'PUT', object }] });
}
const message = { v: 1, type: 'batches', batches } satisfies BatchesMessage;

/** The alternative: [revision, [[0|1, key, value|null, valueBase64|null, create, mod, version]]]. */
function encodeArrays(m: BatchesMessage): string {
  return JSON.stringify([
    m.v,
    m.type,
    m.batches.map((b) => [
      b.revision,
      b.events.map((e) => [
        e.type === 'PUT' ? 0 : 1,
        e.object.key,
        e.object.value ?? null,
        e.object.valueBase64 ?? null,
        e.object.createRevision,
        e.object.modRevision,
        e.object.version,
      ]),
    ]),
  ]);
}

function time(fn: () => unknown, rounds = 50): number {
  fn();
  const start = performance.now();
  for (let i = 0; i < rounds; i++) fn();
  return (performance.now() - start) / rounds;
}

const bytes = (text: string) => new TextEncoder().encode(text).length;
const objectsText = encode(message);
const arraysText = encodeArrays(message);
const rows = [
  ['JSON objects (chosen)', objectsText, () => encode(message)],
  ['positional arrays', arraysText, () => encodeArrays(message)],
] as const;
for (const [name, text, enc] of rows) {
  console.log(
    `${name.padEnd(22)} ${(bytes(text) / 1024).toFixed(0).padStart(5)} KiB, gzip ${(gzipSync(text).length / 1024).toFixed(0).padStart(4)} KiB, ` +
      `encode ${time(enc).toFixed(2)} ms, JSON.parse ${time(() => JSON.parse(text)).toFixed(2)} ms`,
  );
}
console.log(
  `decodeRelayMessage (parse + validate + freeze) of the objects: ${time(() => decodeRelayMessage(objectsText)).toFixed(2)} ms`,
);
