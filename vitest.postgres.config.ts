import { defineConfig } from 'vitest/config';

/** The store tests against a real PostgreSQL server: one throwaway server (test/postgres/server.ts) shared by every file. */
export default defineConfig({
  test: {
    include: ['test/postgres/**/*.test.ts'],
    globalSetup: ['test/postgres/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores; each file isolates itself in a database of its own (createDatabase).
    maxWorkers: 2,
  },
});
