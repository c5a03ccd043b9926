import { defineConfig } from 'vitest/config';

/**
 * Unit tests sit beside the code (`core/store.test.ts`); tests against real etcd, relay and
 * workerd live in `test/`. Both run in one `vitest run`, each file in its own process.
 */
export default defineConfig({
  test: {
    include: [
      'client/**/*.test.ts',
      'core/**/*.test.ts',
      'relay/**/*.test.ts',
      'worker/**/*.test.ts',
      'robustness/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // Waiting on an observable condition (expect.poll; vi.waitFor takes the timeout per call):
    // long enough for a loaded machine, short enough that a condition that never holds fails.
    expect: { poll: { timeout: 10_000, interval: 20 } },
  },
});
