/** An issuer (with its hub) and a relay, direct or tunnelled, in front of the e2e cluster, and agents with kubeconfigs for it. */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AuditRecord } from '../../src/audit/record.js';
import { buildKubeconfig } from '../../src/client/kubeconfig.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { until } from '../helpers/http.js';
import type { E2eCluster } from './global-setup.js';

export const CLUSTER_NAME = 'e2e';
export const ORG = 'acme';

export interface RelayUnderTest {
  dataDir: string;
  issuer: RunningIssuer;
  relay: RunningRelay;
  /** The issuer's store, as the operator's CLI sees it. */
  withRegistry<T>(use: (registry: Registry) => Promise<T>): Promise<T>;
  /** Another relay replica of the same cluster, configured as the first; `sameAddress`: on the first one's listener address (direct mode; the first must be closed). */
  startReplica(options?: { sameAddress?: boolean }): Promise<RunningRelay>;
  /** Creates an agent and returns a kubeconfig whose exec plugin gets its tokens. */
  agent(name: string, teams: string[]): Promise<string>;
  auditRecords(): AuditRecord[];
  close(): Promise<void>;
}

/** An issuer (and hub) and a relay in front of the e2e cluster: agents reach it directly or through the hub's tunnel. */
export interface RelayOptions {
  /** Tunnel mode: where the connector key travels before the relay reads it (the chart's Secret, say); returns what the relay is given. */
  connectorKeyVia?: (key: string) => string;
  /** Direct mode: a control channel to the hub with the connector key, so the relay sends its records to the issuer (central audit) as a tunnel relay does. */
  controlChannel?: boolean;
  /** Central grants with this relay identity (a kubeconfig with the chart's centralGrants rights) and Lease timings. */
  centralGrants?: { kubeconfig: string; lease?: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number } };
}

export async function startRelayFor(cluster: E2eCluster, mode: 'direct' | 'tunnel', options: RelayOptions = {}): Promise<RelayUnderTest> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-e2e-relay-'));
  const log = createLogger('warn');
  const withRegistry = async <T>(use: (registry: Registry) => Promise<T>): Promise<T> => {
    const store = await openStore({ dataDir });
    try {
      return await use(new Registry(store, loadOrCreatePepper(dataDir, {})));
    } finally {
      await store.close();
    }
  };
  const issuedKey = await withRegistry((registry) => registry.createCluster(CLUSTER_NAME, ORG));
  const connectorKey = options.connectorKeyVia ? options.connectorKeyVia(issuedKey) : issuedKey;
  const issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: path.join(dataDir, 'hub-audit.jsonl') }, log });
  const auditFile = path.join(dataDir, 'audit.jsonl');
  const issuerCa = readFileSync(issuer.caFile!);
  const relayConfig: Parameters<typeof startRelay>[0] = {
    mode,
    cluster: CLUSTER_NAME,
    issuer: issuer.url,
    dataDir,
    ...(mode === 'direct' ? { listen: { host: '127.0.0.1', port: 0 } } : { tunnel: { hubUrl: issuer.url, connectorKey, hubCa: issuerCa } }),
    ...(mode === 'direct' && options.controlChannel ? { controlChannel: { hubUrl: issuer.url, connectorKey, hubCa: issuerCa } } : {}),
    issuerCa,
    upstream: upstreamFromKubeconfig(options.centralGrants?.kubeconfig ?? cluster.relayKubeconfig),
    audit: { file: auditFile },
    adminListen: { host: '127.0.0.1', port: 0 },
    maxStreamDurationMs: 0,
    pollRevocations: true,
    ...(options.centralGrants ? { centralGrants: { connectorKey, leaseNamespace: 'kube-relay', ...(options.centralGrants.lease ? { lease: options.centralGrants.lease } : {}) } } : {}),
    log,
  };
  const relay = await startRelay(relayConfig);
  await until(() => relay.readiness().ready, 15_000, `the ${mode}-mode relay to be ready (${relay.readiness().waitingFor.join(', ')})`);
  return {
    dataDir,
    issuer,
    relay,
    withRegistry,
    startReplica: ({ sameAddress = false } = {}) =>
      startRelay({
        ...relayConfig,
        ...(mode === 'direct' ? { listen: { host: '127.0.0.1', port: sameAddress ? Number(new URL(relay.url).port) : 0 } } : {}),
        adminListen: { host: '127.0.0.1', port: 0 },
        audit: { file: path.join(dataDir, `audit-replica-${Date.now()}.jsonl`) },
      }),
    async agent(name, teams) {
      const key = await withRegistry((registry) => registry.createAgent(name, ORG, teams));
      const keyFile = path.join(dataDir, `${name}.api-key`);
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
      const kubeconfig = path.join(dataDir, `${name}.kubeconfig`);
      writeFileSync(
        kubeconfig,
        // One data directory, one CA: it signed the relay's and the hub's certificates alike.
        buildKubeconfig({ issuer: issuer.url, cluster: CLUSTER_NAME, server: relay.url, caFile: issuer.caFile, issuerCaFile: issuer.caFile, apiKeyFile: keyFile }),
      );
      return kubeconfig;
    },
    auditRecords() {
      return readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as AuditRecord)
        .filter((record) => record.stage === 'ResponseComplete'); // not the RequestReceived lines
    },
    async close(this: RelayUnderTest) {
      await this.relay.close();
      await issuer.close();
    },
  };
}
