/**
 * Hub replicas behind one load balancer (DESIGN §9): each says which replica
 * it is and how many there are; the relay keeps one tunnel per replica, so an
 * agent's request succeeds whichever replica it lands on. The load balancer
 * here sends the first connections all to replica a, so the relay's second
 * tunnel first lands where its first one is and must dial again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/backoff.js';
import { requestToken } from '../../src/client/token.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const PODS = '/clusters/prod-eu/api/v1/namespaces/default/pods';

let stack: Stack;
let balancer: TcpProxy;
const hubs: Record<'a' | 'b', RunningIssuer> = {} as Record<'a' | 'b', RunningIssuer>;
let relay: RunningRelay;
const relayLog: string[] = [];

beforeAll(async () => {
  // The stack gives the fake API server, the data directory (agent, cluster prod-eu) and its CA.
  stack = await startStack({ mode: 'direct' });
  const ports: number[] = [];
  let picks = 0;
  // Connections 1-3 (the relay's JWKS fetch, its first tunnel, its second tunnel's first try) to a, then b, a, b, …
  balancer = await startTcpProxy(() => (picks++ < 3 ? ports[0]! : ports[(picks - 3) % 2 === 1 ? 1 : 0]!));
  const publicUrl = `https://127.0.0.1:${balancer.port}`;
  for (const id of ['a', 'b'] as const) {
    hubs[id] = await startIssuer({
      dataDir: stack.dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      publicUrl,
      keyRotationIntervalMs: 86_400_000,
      hubReplica: { id: `hub-${id}`, count: 2 },
      audit: { file: `${stack.dataDir}/hub-${id}-audit.jsonl` },
      log: createLogger('error'),
    });
    ports.push(hubs[id].port);
  }
  relay = await startRelay({
    mode: 'tunnel',
    cluster: 'prod-eu',
    issuer: publicUrl,
    dataDir: stack.dataDir,
    tunnel: { hubUrl: publicUrl, connectorKey: stack.connectorKey, hubCa: stack.caPem, backoff: () => new ReconnectBackoff({ initialMs: 50, maxMs: 200 }) },
    issuerCa: stack.caPem,
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: `${stack.dataDir}/replicas-relay-audit.jsonl` },
    adminListen: { host: '127.0.0.1', port: 0 },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('debug', {}, (line) => relayLog.push(line)),
  });
}, 30_000);

afterAll(async () => {
  await relay?.close();
  for (const hub of Object.values(hubs)) await hub.close();
  await balancer?.close();
  await stack?.close();
});

/** A request straight to one replica's own port, as the load balancer would have sent it there. */
async function viaReplica(id: 'a' | 'b') {
  const port = hubs[id].port;
  const token = (await requestToken({ issuer: `https://127.0.0.1:${port}`, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem })).token;
  return request(`https://127.0.0.1:${port}${PODS}`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
}

async function relayMetric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

describe('a relay behind a load balancer in front of two hub replicas (DESIGN §9)', () => {
  it('keeps one tunnel to each replica, dialling again when it lands on one it holds', async () => {
    await until(async () => (await relayMetric('kube_relay_tunnel_connected')) === 2, 15_000, 'a tunnel to each replica');
    expect(await relayMetric('kube_relay_tunnel_hub_replicas')).toBe(2);
    expect(relayLog.some((line) => line.includes('reached a hub replica another one holds') && line.includes('hub-a'))).toBe(true);
    expect(relay.readiness()).toEqual({ ready: true, waitingFor: [] });
  });

  it('serves an agent whichever replica its request lands on', async () => {
    for (const id of ['a', 'b'] as const) {
      const before = stack.fake.requests.length;
      const answer = await viaReplica(id);
      expect(answer.status, `through hub-${id}`).toBe(200);
      const upstream = stack.fake.requests.slice(before).filter((seen) => seen.headers['impersonate-user'] !== undefined);
      expect(upstream.map((seen) => seen.url)).toEqual(['/api/v1/namespaces/default/pods']);
    }
  });

  it('stays ready on the replica that is left when the other shuts down', async () => {
    const b = hubs.b;
    delete (hubs as Partial<typeof hubs>).b;
    await b.close();
    await until(async () => (await relayMetric('kube_relay_tunnel_connected')) === 1, 10_000, 'the tunnel to hub-b to end');
    expect(relay.readiness().ready).toBe(true);
    expect((await viaReplica('a')).status).toBe(200);
  });
});
