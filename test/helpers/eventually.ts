/**
 * Waits for a condition the test can observe (a status, a response), polling with backoff up to
 * a deadline that fails the test: waiting on the condition itself, never sleeping for it.
 */
export async function eventually<T>(
  read: () => Promise<T>,
  ok: (value: T) => boolean,
  what: string,
  deadlineMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`never ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
