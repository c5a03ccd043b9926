import { defineConfig } from 'vitest/config';

/**
 * The checker's unit tests alone: `npx vitest run --config robustness/vitest.config.ts`.
 * (The root vitest.config.ts should also include `robustness/**\/*.test.ts` so `npm test` runs them.)
 */
export default defineConfig({
  test: { include: ['robustness/**/*.test.ts'], pool: 'forks' },
});
