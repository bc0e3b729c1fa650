/**
 * Live cluster status (issue 16 item 5) with one hub: the hub records each
 * relay's connection, its readiness changes (with the reason the relay
 * gives) and its end in the store, and clusterStatus reads them back, as
 * the admin API and `kube-relay cluster status` do. The relays are real
 * ones, made unready the ways relays are: their audit trail full, their API
 * server gone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import { type ClusterStatus, clusterStatus, type DisconnectedClusterStatus } from '../../src/control/cluster-status.js';
import { createLogger } from '../../src/log.js';
import { type RelayConfig, type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let stack: Stack;
const keys: Record<string, string> = {};
const relays: RunningRelay[] = [];
let apiServerPath: TcpProxy | undefined;

beforeAll(async () => {
  stack = await startStack({ mode: 'tunnel', issuer: { hubReplica: { id: 'hub-0', count: 1 }, relayHeartbeatMs: 200 } });
  const { registry, close } = await stack.registry();
  for (const name of ['audit-full', 'api-down', 'direct-one', 'never']) keys[name] = await registry.createCluster(name, 'acme');
  await close();
});

afterAll(async () => {
  for (const relay of relays) await relay.close();
  await apiServerPath?.close();
  await stack?.close();
});

async function statusOf(name: string): Promise<ClusterStatus> {
  const { registry, close } = await stack.registry();
  try {
    return await clusterStatus(registry, OPERATOR, name);
  } finally {
    await close();
  }
}

async function relayFor(cluster: string, overrides: Partial<RelayConfig> = {}): Promise<RunningRelay> {
  const relay = await startRelay({
    mode: 'tunnel',
    cluster,
    issuer: stack.issuer.url,
    dataDir: stack.dataDir,
    issuerCa: stack.caPem,
    tunnel: { hubUrl: stack.issuer.url, connectorKey: keys[cluster]!, hubCa: stack.caPem },
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: path.join(stack.dataDir, `${cluster}-audit.jsonl`) },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    readinessIntervalMs: 200,
    log: createLogger('error'),
    ...overrides,
  });
  relays.push(relay);
  return relay;
}

const onlyRelay = async (cluster: string) => {
  const status = await statusOf(cluster);
  return status.relays.length === 1 ? status.relays[0] : undefined;
};

describe('cluster status with one hub', () => {
  it('shows a connected tunnel relay: mode, hub replica, version, connected since, last heard (refreshed), ready', async () => {
    await until(async () => (await onlyRelay('prod-eu'))?.ready === true, 10_000, 'the relay of prod-eu ready in the status');
    const status = await statusOf('prod-eu');
    expect(status).toEqual({
      cluster: 'prod-eu',
      connected: true,
      relays: [{ mode: 'tunnel', hubReplica: 'hub-0', version: PACKAGE_VERSION, connectedSince: expect.any(String), lastHeard: expect.any(String), ready: true }],
    });
    const [relay] = status.relays;
    expect(Date.parse(relay!.lastHeard)).toBeGreaterThanOrEqual(Date.parse(relay!.connectedSince));
    await until(async () => Date.parse((await onlyRelay('prod-eu'))!.lastHeard) > Date.parse(relay!.lastHeard), 10_000, 'the hub to refresh last heard');
  });

  it('shows a relay whose audit trail is full as not ready, with its reason', async () => {
    // Its audit webhook is down and holds one record at most: after a request or two it cannot serve.
    const relay = await relayFor('audit-full', { audit: { webhook: { url: 'http://127.0.0.1:1/' }, bufferRecords: 1, whenFull: 'fail', closeDeadlineMs: 100 } });
    const token = await stack.token(undefined, 'audit-full');
    await until(async () => (await onlyRelay('audit-full'))?.ready === true, 10_000, 'the relay ready at first');
    for (let i = 0; i < 4 && relay.readiness().ready; i++) await request(`${stack.issuer.url}/clusters/audit-full/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
    expect(relay.readiness().waitingFor.join()).toContain('room in the audit trail');
    await until(async () => (await onlyRelay('audit-full'))?.ready === false, 10_000, 'not ready in the status');
    expect((await onlyRelay('audit-full'))!.reason).toMatch(/^waiting for room in the audit trail \(the audit webhook .+\)$/);
  });

  it("shows a relay whose API server cannot be reached as not ready, naming it", async () => {
    apiServerPath = await startTcpProxy(Number(new URL(stack.fake.url).port));
    const kubeconfig = parse(readFileSync(stack.relayKubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
    kubeconfig.clusters[0]!.cluster.server = `https://127.0.0.1:${apiServerPath.port}`;
    const viaProxy = path.join(stack.dataDir, 'api-down.kubeconfig');
    writeFileSync(viaProxy, stringify(kubeconfig));
    await relayFor('api-down', { upstream: upstreamFromKubeconfig(viaProxy) });
    await until(async () => (await onlyRelay('api-down'))?.ready === true, 10_000, 'the relay ready while its API server answers');

    await apiServerPath.close();
    apiServerPath = undefined;
    await until(async () => (await onlyRelay('api-down'))?.ready === false, 20_000, 'not ready in the status');
    expect((await onlyRelay('api-down'))!.reason).toBe('waiting for the Kubernetes API server');
  });

  it('shows a direct-mode relay known through its control channel, and a cluster not connected since its last relay left', async () => {
    const relay = await relayFor('direct-one', {
      mode: 'direct',
      listen: { host: '127.0.0.1', port: 0 },
      tunnel: undefined,
      controlChannel: { hubUrl: stack.issuer.url, connectorKey: keys['direct-one']!, hubCa: stack.caPem },
    });
    await until(async () => (await onlyRelay('direct-one'))?.ready === true, 10_000, 'the direct relay in the status');
    expect(await onlyRelay('direct-one')).toMatchObject({ mode: 'direct', hubReplica: 'hub-0', version: PACKAGE_VERSION });

    const leftAfter = Date.now();
    relays.splice(relays.indexOf(relay), 1);
    await relay.close();
    await until(async () => !(await statusOf('direct-one')).connected, 10_000, 'the relay gone from the status');
    const status = await statusOf('direct-one');
    expect(status).toEqual({ cluster: 'direct-one', connected: false, notConnectedSince: expect.any(String), neverConnected: false, relays: [] });
    expect(Date.parse((status as DisconnectedClusterStatus).notConnectedSince)).toBeGreaterThanOrEqual(leftAfter);
  });

  it('a cluster that never had a relay is not connected since it was created', async () => {
    const { registry, close } = await stack.registry();
    const created = (await registry.findCluster('never'))!.createdAt;
    await close();
    expect(await statusOf('never')).toEqual({ cluster: 'never', connected: false, notConnectedSince: created.toISOString(), neverConnected: true, relays: [] });
  });
});
