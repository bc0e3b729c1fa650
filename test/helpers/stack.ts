/**
 * A whole kube-relay on loopback for integration tests: an issuer, a
 * recording fake API server, and a direct-mode relay between agents and it,
 * all sharing one data directory (so one CA trusts every listener).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import type { AuditRecord } from '../../src/audit/record.js';
import { requestToken } from '../../src/client/token.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type IssuerConfig, type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger, type Logger } from '../../src/log.js';
import { type RelayConfig, type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { request, until } from './http.js';
import { type FakeApiServer, type FakeApiServerOptions, startFakeApiServer } from '../fixtures/fake-apiserver.js';

export const RELAY_SA_TOKEN = 'relay-serviceaccount-token';

export interface Stack {
  mode: 'direct' | 'tunnel';
  connectorKey: string;
  dataDir: string;
  caFile: string;
  caPem: string;
  issuer: RunningIssuer;
  fake: FakeApiServer;
  relay: RunningRelay;
  auditFile: string;
  agentKey: string;
  relayKubeconfig: string;
  registry(): Promise<{ registry: Registry; close(): Promise<void> }>;
  token(agentKey?: string, cluster?: string): Promise<string>;
  auditRecords(): AuditRecord[];
  /** The hub's records of the requests it refused before a tunnel (tunnel mode). */
  hubAuditFile: string;
  hubAuditRecords(): AuditRecord[];
  /** The last audit record for `path` that matches, waiting for it to be written (records are written when the connection closes). */
  awaitRecord(path: string, matches?: (record: AuditRecord) => boolean): Promise<AuditRecord>;
  close(): Promise<void>;
}

export interface StackOptions {
  /** direct (default): agents talk to the relay's own listener; tunnel: to the hub, which reaches the relay through its tunnel. */
  mode?: 'direct' | 'tunnel';
  fake?: Omit<FakeApiServerOptions, 'tls'>;
  /** Where the relay logs (default: errors only, to stderr). */
  relayLog?: Logger;
  /** Direct mode: the relay also holds a control channel to the hub (the issuer) with the cluster's connector key. */
  controlChannel?: boolean;
  relay?: Partial<Pick<RelayConfig, 'maxStreamDurationMs' | 'adminListen' | 'pollRevocations' | 'revocationPollIntervalMs' | 'limits' | 'maxStreamsPerAgent' | 'maxRequestsPerAgent' | 'audit' | 'centralAudit'>>;
  issuer?: Partial<Pick<IssuerConfig, 'limits' | 'tunnelMaxStreams' | 'maxRequestsPerAgent' | 'tunnelStallTimeoutMs' | 'log' | 'adminListen' | 'hubReplica' | 'relayHeartbeatMs'>>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-stack-'));
  const log = createLogger('error');
  const openRegistry = async () => {
    const store = await openStore({ dataDir });
    return { registry: new Registry(store, loadOrCreatePepper(dataDir, {})), close: () => store.close() };
  };
  const setup = await openRegistry();
  const agentKey = await setup.registry.createAgent('deployer', 'acme', ['sre', 'platform']);
  const connectorKey = await setup.registry.createCluster('prod-eu', 'acme');
  await setup.close();
  const mode = options.mode ?? 'direct';

  const hubAuditFile = path.join(dataDir, 'hub-audit.jsonl');
  const issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: hubAuditFile }, log, ...options.issuer });
  const ca = loadOrCreateCa(dataDir);
  const apiServerCert = issueCertificate(ca, { commonName: 'kube-apiserver', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  const fake = await startFakeApiServer({ ...options.fake, tls: { key: apiServerCert.keyPem, cert: apiServerCert.certPem, ca: ca.certPem, requestCert: true } });

  const relayKubeconfig = path.join(dataDir, 'relay-upstream.kubeconfig');
  writeFileSync(
    relayKubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: fake.url, 'certificate-authority': ca.certPath } }],
      users: [{ name: 'relay', user: { token: RELAY_SA_TOKEN } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'relay' } }],
      'current-context': 'fake',
    }),
  );
  const auditFile = path.join(dataDir, 'audit.jsonl');
  const readAudit = () => readAuditFile(auditFile);
  const relay = await startRelay({
    mode,
    cluster: 'prod-eu',
    issuer: issuer.url,
    dataDir,
    ...(mode === 'direct'
      ? { listen: { host: '127.0.0.1', port: 0 } }
      : { tunnel: { hubUrl: issuer.url, connectorKey, hubCa: ca.certPem } }),
    ...(mode === 'direct' && options.controlChannel ? { controlChannel: { hubUrl: issuer.url, connectorKey, hubCa: ca.certPem } } : {}),
    issuerCa: ca.certPem,
    upstream: upstreamFromKubeconfig(relayKubeconfig),
    audit: { file: auditFile },
    maxStreamDurationMs: 0,
    pollRevocations: mode === 'direct',
    log: options.relayLog ?? log,
    ...options.relay,
  });

  if (mode === 'tunnel') {
    const probeToken = (await requestToken({ issuer: issuer.url, cluster: 'prod-eu', apiKey: agentKey, issuerCa: ca.certPem })).token;
    await until(async () => (await tunnelStatus(relay.url, ca.certPem, probeToken)) !== 503, 10_000, 'the tunnel to connect');
  }
  return {
    mode,
    connectorKey,
    dataDir,
    caFile: ca.certPath,
    caPem: ca.certPem,
    issuer,
    fake,
    relay,
    auditFile,
    agentKey,
    relayKubeconfig,
    registry: openRegistry,
    async token(key = agentKey, cluster = 'prod-eu') {
      return (await requestToken({ issuer: issuer.url, cluster, apiKey: key, issuerCa: ca.certPem })).token;
    },
    auditRecords: readAudit,
    hubAuditFile,
    hubAuditRecords: () => readAuditFile(hubAuditFile),
    async awaitRecord(path, matches = () => true) {
      const find = () => readAudit().filter((record) => record.path === path && matches(record)).at(-1);
      await until(() => find() !== undefined, 3_000, `an audit record for ${path}`);
      return find()!;
    },
    async close() {
      await relay.close();
      await fake.close();
      await issuer.close();
    },
  };
}

/** The hub answers 503 for a cluster until its relay has dialled in. */
async function tunnelStatus(clusterUrl: string, ca: string, token: string): Promise<number> {
  return (await request(`${clusterUrl}/version`, { ca, headers: { authorization: `Bearer ${token}` } })).status;
}

/** The records of ended requests (ResponseComplete), one per request, as most tests want them. */
function readAuditFile(file: string): AuditRecord[] {
  return readAuditLines(file).filter((line) => line.stage === 'ResponseComplete') as unknown as AuditRecord[];
}

/** Every line of an audit file: both stages of each request and any summary records. */
export function readAuditLines(file: string): (Record<string, unknown> & { stage?: string; kind?: string })[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
