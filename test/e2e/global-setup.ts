/**
 * Starts the one e2e cluster for the whole run (building its binaries on a
 * machine's first run) and hands its coordinates to the test files.
 */
import type { TestProject } from 'vitest/node';
import { bootstrapCluster } from './cluster/bootstrap.js';
import { buildBinaries, type Cluster, startCluster } from './cluster/cluster.js';

export interface E2eCluster {
  dir: string;
  server: string;
  caFile: string;
  caPem: string;
  adminKubeconfig: string;
  auditLog: string;
  relayKubeconfig: string;
  portForwardTargetPort: number;
  /** The container log file kwok serves for logs and attach; tests append to it. */
  logsFile: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: E2eCluster;
  }
}

let cluster: Cluster | undefined;

export default async function setup(project: TestProject) {
  const started = Date.now();
  const binaries = buildBinaries();
  process.stderr.write(`e2e: binaries ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  cluster = await startCluster(binaries);
  const { relayKubeconfig } = await bootstrapCluster(cluster);
  process.stderr.write(`e2e: cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s (${cluster.dir})\n`);
  project.provide('cluster', {
    dir: cluster.dir,
    server: cluster.server,
    caFile: cluster.caFile,
    caPem: cluster.caPem,
    adminKubeconfig: cluster.adminKubeconfig,
    auditLog: cluster.auditLog,
    relayKubeconfig,
    portForwardTargetPort: cluster.portForwardTargetPort,
    logsFile: cluster.logsFile,
  });
  return async () => {
    await cluster?.stop();
  };
}
