import { defineConfig } from 'vitest/config';

/** The end-to-end suite: one real cluster (etcd, kube-apiserver, kwok) shared by every file, real kubectl. */
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.e2e.test.ts'],
    globalSetup: ['test/e2e/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Files share one cluster and its RBAC objects: run them one after another.
    fileParallelism: false,
  },
});
