import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The end-to-end suite runs against a real cluster: npm run test:e2e (vitest.e2e.config.ts); the
    // PostgreSQL suite against a real server: npm run test:postgres (vitest.postgres.config.ts); the
    // browser suite in Debian's Chromium: npm run test:browser (vitest.browser.config.ts).
    exclude: ['test/e2e/**', 'test/postgres/**', 'test/browser/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start real loopback servers and kubectl processes; two cores, so keep the fan-out modest.
    maxWorkers: 2,
  },
});
