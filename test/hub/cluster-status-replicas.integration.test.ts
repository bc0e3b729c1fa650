/**
 * Live cluster status across hub replicas (issue 16 item 5, DESIGN §9):
 * each replica records the relay connections it holds in the shared store
 * and refreshes them every heartbeat, so a status read through one replica
 * shows tunnels held by another. Replica hub-a runs in this process and is
 * restarted; replica hub-b runs in a process of its own and is killed with
 * SIGKILL, as a replica that dies without closing anything: its rows, no
 * longer refreshed, stop counting after three heartbeats.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/backoff.js';
import { OPERATOR } from '../../src/control/caller.js';
import type { ClusterStatus, DisconnectedClusterStatus, RelayStatus } from '../../src/control/cluster-status.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { type IssuerConfig, type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { until } from '../helpers/http.js';
import { type IssuerProcess, startIssuerProcess } from '../helpers/issuer-process.js';
import { type Stack, startStack } from '../helpers/stack.js';

const HEARTBEAT_MS = 300;

let stack: Stack;
let hubA: RunningIssuer | undefined;
let hubAPort = 0;
let hubB: IssuerProcess | undefined;
let adminKey: string;
const keys: Record<string, string> = {};
const relays: RunningRelay[] = [];
let fetch: ReturnType<typeof fetchWithCa>;

function hubAConfig(port: number): IssuerConfig {
  return {
    dataDir: stack.dataDir,
    listen: { host: '127.0.0.1', port },
    keyRotationIntervalMs: 86_400_000,
    hubReplica: { id: 'hub-a', count: 1 },
    relayHeartbeatMs: HEARTBEAT_MS,
    audit: { file: path.join(stack.dataDir, 'hub-a-audit.jsonl') },
    drainMs: 500,
    log: createLogger('error'),
  };
}

async function relayTo(hubUrl: string, cluster: string): Promise<RunningRelay> {
  const relay = await startRelay({
    mode: 'tunnel',
    cluster,
    issuer: hubUrl,
    dataDir: stack.dataDir,
    issuerCa: stack.caPem,
    tunnel: { hubUrl, connectorKey: keys[cluster]!, hubCa: stack.caPem, backoff: () => new ReconnectBackoff({ initialMs: 50, maxMs: 200 }) },
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: path.join(stack.dataDir, `${cluster}-relay-audit.jsonl`) },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('info', {}, () => undefined),
  });
  relays.push(relay);
  return relay;
}

beforeAll(async () => {
  // The stack gives the fake API server, the data directory (the store both replicas share) and its CA.
  stack = await startStack({ mode: 'direct' });
  fetch = fetchWithCa({ ca: readFileSync(stack.caFile) });
  const { registry, close } = await stack.registry();
  for (const name of ['spread', 'b-only']) keys[name] = await registry.createCluster(name, 'acme');
  adminKey = (await ops.createAdmin(registry, OPERATOR, { name: 'operator', allOrgs: true })).adminKey;
  await close();
  hubA = await startIssuer(hubAConfig(0));
  hubAPort = hubA.port;
  hubB = await startIssuerProcess({
    dataDir: stack.dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    hubReplica: { id: 'hub-b', count: 1 },
    relayHeartbeatMs: HEARTBEAT_MS,
    audit: { file: path.join(stack.dataDir, 'hub-b-audit.jsonl') },
    drainMs: 500,
  });
  await relayTo(hubA.url, 'spread');
  await relayTo(hubB.url, 'spread');
  await relayTo(hubB.url, 'b-only');
}, 60_000);

afterAll(async () => {
  for (const relay of relays) await relay.close();
  await hubB?.kill();
  await hubA?.close();
  await stack?.close();
});

/** GET /v1/clusters/{name}/status through a replica's admin API. */
async function statusThrough(hubUrl: string, cluster: string): Promise<ClusterStatus> {
  const res = await fetch(`${hubUrl}/v1/clusters/${cluster}/status`, { headers: { authorization: `Bearer ${adminKey}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as ClusterStatus;
}

const byReplica = (status: ClusterStatus, replica: string): RelayStatus[] => status.relays.filter((relay) => relay.hubReplica === replica);
const readyOn = async (hubUrl: string, cluster: string, replicas: string[]) => {
  const status = await statusThrough(hubUrl, cluster);
  return status.relays.length === replicas.length && replicas.every((replica) => byReplica(status, replica).length === 1 && byReplica(status, replica)[0]!.ready);
};

describe('cluster status across hub replicas', () => {
  it('a status read through replica hub-a shows the relay attached to replica hub-b, and the other way round', async () => {
    await until(() => readyOn(hubA!.url, 'spread', ['hub-a', 'hub-b']), 20_000, 'both relays of spread, ready, through hub-a');
    expect(await readyOn(hubB!.url, 'spread', ['hub-a', 'hub-b'])).toBe(true);
    await until(() => readyOn(hubA!.url, 'b-only', ['hub-b']), 20_000, "b-only's relay on hub-b, through hub-a");
  });

  it('a hub restart: the relay reconnects, the status shows the new connection and the old one gone', async () => {
    const before = byReplica(await statusThrough(hubA!.url, 'spread'), 'hub-a')[0]!;
    await hubA!.close();
    hubA = undefined;
    // Closed cleanly, hub-a wrote its connections' end: read through hub-b meanwhile, only hub-b's is left.
    const meanwhile = await statusThrough(hubB!.url, 'spread');
    expect(meanwhile.relays.map((relay) => relay.hubReplica)).toEqual(['hub-b']);

    const restartedAt = Date.now();
    hubA = await startIssuer(hubAConfig(hubAPort));
    await until(() => readyOn(hubA!.url, 'spread', ['hub-a', 'hub-b']), 30_000, 'the relay back on hub-a, ready');
    const after = byReplica(await statusThrough(hubA.url, 'spread'), 'hub-a');
    expect(after).toHaveLength(1);
    expect(Date.parse(after[0]!.connectedSince)).toBeGreaterThanOrEqual(restartedAt);
    expect(after[0]!.connectedSince).not.toBe(before.connectedSince);
  });

  it('a replica that dies without closing: its connections stop counting three heartbeats after it was last heard of', async () => {
    const lastSeen = byReplica(await statusThrough(hubA!.url, 'b-only'), 'hub-b')[0]!;
    await hubB!.kill();
    hubB = undefined;
    const goneBy = Date.now();
    await until(async () => byReplica(await statusThrough(hubA!.url, 'spread'), 'hub-b').length === 0, 20_000, "hub-b's relay to drop out of spread's status");
    expect((await statusThrough(hubA!.url, 'spread')).relays.map((relay) => relay.hubReplica)).toEqual(['hub-a']);

    // b-only had its one relay on hub-b: not connected, since hub-b last vouched for it.
    await until(async () => !(await statusThrough(hubA!.url, 'b-only')).connected, 20_000, 'b-only not connected');
    const status = (await statusThrough(hubA!.url, 'b-only')) as DisconnectedClusterStatus;
    expect(status).toMatchObject({ cluster: 'b-only', connected: false, neverConnected: false, relays: [] });
    expect(Date.parse(status.notConnectedSince)).toBeGreaterThanOrEqual(Date.parse(lastSeen.lastHeard));
    expect(Date.parse(status.notConnectedSince)).toBeLessThanOrEqual(goneBy);

    // Nobody closed those rows: they only went stale. Read at a time when hub-b still vouched for them, they are there.
    const { registry, close } = await stack.registry();
    try {
      const thenLive = await registry.liveRelayConnections('b-only', new Date(Date.parse(lastSeen.lastHeard)));
      expect(thenLive.map((connection) => [connection.hubReplica, connection.disconnectedAt])).toEqual([['hub-b', undefined]]);
    } finally {
      await close();
    }
  });
});
