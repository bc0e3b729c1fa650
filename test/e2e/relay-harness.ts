/** An issuer and a direct-mode relay in front of the e2e cluster, and agents with kubeconfigs for it. */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditRecord } from '../../src/audit/record.js';
import { buildKubeconfig } from '../../src/client/kubeconfig.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openSqliteStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import type { E2eCluster } from './global-setup.js';

export const CLUSTER_NAME = 'e2e';
export const ORG = 'acme';

export interface RelayUnderTest {
  dataDir: string;
  issuer: RunningIssuer;
  relay: RunningRelay;
  /** Creates an agent and returns a kubeconfig whose exec plugin gets its tokens. */
  agent(name: string, teams: string[]): string;
  auditRecords(): AuditRecord[];
  close(): Promise<void>;
}

export async function startRelayFor(cluster: E2eCluster): Promise<RelayUnderTest> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-e2e-relay-'));
  const log = createLogger('warn');
  const withRegistry = <T>(use: (registry: Registry) => T): T => {
    const store = openSqliteStore(dataDir);
    try {
      return use(new Registry(store, loadOrCreatePepper(dataDir, {})));
    } finally {
      store.close();
    }
  };
  withRegistry((registry) => registry.createCluster(CLUSTER_NAME, ORG));
  const issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log });
  const auditFile = path.join(dataDir, 'audit.jsonl');
  const relay = await startRelay({
    mode: 'direct',
    cluster: CLUSTER_NAME,
    issuer: issuer.url,
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    issuerCa: readFileSync(issuer.caFile!),
    upstream: upstreamFromKubeconfig(cluster.relayKubeconfig),
    auditFile,
    maxStreamDurationMs: 0,
    pollRevocations: true,
    log,
  });
  return {
    dataDir,
    issuer,
    relay,
    agent(name, teams) {
      const key = withRegistry((registry) => registry.createAgent(name, ORG, teams));
      const keyFile = path.join(dataDir, `${name}.api-key`);
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
      const kubeconfig = path.join(dataDir, `${name}.kubeconfig`);
      writeFileSync(
        kubeconfig,
        buildKubeconfig({ issuer: issuer.url, cluster: CLUSTER_NAME, server: relay.url, caFile: relay.caFile, issuerCaFile: issuer.caFile, apiKeyFile: keyFile }),
      );
      return kubeconfig;
    },
    auditRecords() {
      return readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as AuditRecord);
    },
    async close() {
      await relay.close();
      await issuer.close();
    },
  };
}
