import { defineConfig } from 'vitest/config';

/**
 * The browser suite: the web console in Debian's Chromium, driven by playwright-core
 * (test/browser/browser.ts). One file at a time: each starts an issuer and a browser, and pages
 * wait for live parts that refresh every few seconds, on two cores shared with other suites.
 */
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    // Chromium missing: the run fails before any file, saying how to install it.
    globalSetup: ['test/browser/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 1,
    fileParallelism: false,
  },
});
