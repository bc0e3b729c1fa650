/**
 * Starts the one e2e cluster for the whole run (building its binaries on a
 * machine's first run) and hands its coordinates to the test files.
 */
import type { TestProject } from 'vitest/node';
import { bootstrapCluster } from './cluster/bootstrap.js';
import { buildBinaries, type Cluster, startCluster } from './cluster/cluster.js';

/** What the test files get: the cluster's coordinates (no functions: provide() serializes) and the relay's kubeconfig. */
export type E2eCluster = Omit<Cluster, 'stop'> & { relayKubeconfig: string };

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: E2eCluster;
    /** The Helm binary built from the module proxy. */
    helm: string;
  }
}

let cluster: Cluster | undefined;

export default async function setup(project: TestProject) {
  const started = Date.now();
  const binaries = buildBinaries();
  process.stderr.write(`e2e: binaries ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  cluster = await startCluster(binaries);
  const { relayKubeconfig } = await bootstrapCluster(cluster, binaries.helm);
  process.stderr.write(`e2e: cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s (${cluster.dir})\n`);
  const { stop: _stop, ...coordinates } = cluster;
  project.provide('cluster', { ...coordinates, relayKubeconfig });
  project.provide('helm', binaries.helm);
  return async () => {
    await cluster?.stop();
  };
}
