/**
 * The one NDJSON reader of the codebase: the JSON values of a streamed body, one array per piece
 * of bytes as it arrived, blank lines (keep-alives) skipped. The typed `Watch` is built on it,
 * and so are the tools that look at the wire itself (the contract suite's WatchReader, the
 * robustness watchers, the benchmark watchers).
 *
 * Ends when the body ends or `signal` aborts (a pending read is cancelled at once, whatever
 * the `fetch` that made the body does on abort); throws `TransportError` when the body breaks
 * and `EdgewatchError` on a line that is not JSON. A line cut by the end of the body is parsed
 * like any other.
 */
import { EdgewatchError, TransportError } from './errors.ts';

export async function* ndjsonChunks(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
  what = 'NDJSON stream',
): AsyncGenerator<unknown[], void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const cancel = () => reader.cancel().catch(() => undefined);
  if (signal?.aborted) {
    await cancel();
    return;
  }
  signal?.addEventListener('abort', cancel, { once: true });
  try {
    for (;;) {
      let read: Awaited<ReturnType<typeof reader.read>>;
      try {
        read = await reader.read();
      } catch (error) {
        if (signal?.aborted) return;
        throw new TransportError(`${what}: the stream broke`, { cause: error });
      }
      if (signal?.aborted) return;
      let lines: string[];
      if (read.done) lines = [buffer + decoder.decode()];
      else {
        buffer += decoder.decode(read.value, { stream: true });
        lines = buffer.split('\n');
        buffer = lines.pop() ?? '';
      }
      const values: unknown[] = [];
      for (const line of lines) {
        if (line.trim() === '') continue;
        try {
          values.push(JSON.parse(line));
        } catch {
          throw new EdgewatchError(`${what}: a line that is not JSON: ${line.slice(0, 200)}`);
        }
      }
      if (values.length > 0) yield values;
      if (read.done) return;
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
    void cancel();
  }
}
