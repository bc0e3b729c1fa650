/**
 * The tunnel under faults (issue 4): hub shutdown and restart, a WebSocket
 * cut without a close frame, a peer that silently vanished, many short
 * streams, and one stalled stream beside many busy ones. The relay reaches
 * the hub through a loopback TCP proxy that plays the network.
 */
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requestToken } from '../../src/client/token.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { ReconnectBackoff } from '../../src/backoff.js';
import { streamingRequest, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const KEEPALIVE_MS = 300;
const BACKOFF = { initialMs: 50, maxMs: 200 };

// The stack brings the fake API server, the registry and the data directory; the hub and the
// tunnelled relay under test are started here, so they can be stopped, restarted and cut.
let stack: Stack;
let hubPort = 0;
let hub: RunningIssuer;
let network: TcpProxy;
let relay: RunningRelay;
let token: string;

async function startHub(drainMs: number): Promise<RunningIssuer> {
  const issuer = await startIssuer({
    dataDir: stack.dataDir,
    listen: { host: '127.0.0.1', port: hubPort },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: `${stack.dataDir}/hub-audit.jsonl` },
    log: createLogger('error'),
    adminListen: { host: '127.0.0.1', port: 0 },
    drainMs,
    tunnelKeepaliveMs: KEEPALIVE_MS,
  });
  hubPort = Number(new URL(issuer.url).port);
  return issuer;
}

beforeAll(async () => {
  stack = await startStack();
  hub = await startHub(2_000);
  network = await startTcpProxy(hubPort);
  relay = await startRelay({
    mode: 'tunnel',
    cluster: 'prod-eu',
    issuer: hub.url,
    dataDir: stack.dataDir,
    issuerCa: stack.caPem,
    tunnel: { hubUrl: `https://127.0.0.1:${network.port}`, connectorKey: stack.connectorKey, hubCa: stack.caPem, keepaliveMs: KEEPALIVE_MS, backoff: () => new ReconnectBackoff(BACKOFF) },
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: `${stack.dataDir}/tunnel-faults-audit.jsonl` },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    adminListen: { host: '127.0.0.1', port: 0 },
    log: createLogger('error'),
  });
  token = (await requestToken({ issuer: hub.url, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem })).token;
});

afterAll(async () => {
  await relay?.close();
  await hub?.close();
  await network?.close();
  await stack?.close();
});

beforeEach(async () => {
  await until(async () => (await get('/version')).status === 200, 5_000, 'the tunnel to be up');
});

/** One request through the hub on a fresh connection (a session of its own over HTTP/2). */
async function get(path: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const req = streamingRequest(`${hub.url}/clusters/prod-eu${path}`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
  req.end();
  try {
    const { status, body } = await req.response;
    body.resume();
    await req.ended;
    return { status, ms: performance.now() - started };
  } catch {
    return { status: 0, ms: performance.now() - started };
  }
}

/** A watch through the hub, its first event received; `ended` settles when the response completes or fails. */
async function openWatch(): Promise<{ ended: Promise<'complete' | 'failed'> }> {
  const watchReady = stack.fake.nextWatch();
  const req = streamingRequest(`${hub.url}/clusters/prod-eu/api/v1/namespaces/default/pods?watch=1`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
  req.end();
  const firstEvent = req.response.then(({ body }) => new Promise<void>((resolve) => body.once('data', () => resolve())));
  const watch = await watchReady;
  await watch.send({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'first' } } });
  await firstEvent;
  return { ended: req.ended.then((how) => (how === 'complete' ? 'complete' : 'failed')) };
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const values = text.split('\n').filter((line) => line.startsWith(name)).map((line) => Number(line.split(' ').at(-1)));
  return values.reduce((sum, value) => sum + value, 0);
}

const settleWithin = <T>(promise: Promise<T>, ms: number): Promise<T | 'still pending'> =>
  Promise.race([promise, new Promise<'still pending'>((resolve) => setTimeout(() => resolve('still pending'), ms))]);

describe('hub shutdown and restart', () => {
  afterEach(async () => {
    // Each test leaves the hub stopped; bring it back on the same port.
    hub = await startHub(2_000);
  });

  it('lets a request in flight finish (GOAWAY, then close), and the relay is back within the backoff once the hub is', async () => {
    const body = Buffer.alloc(512 * 1024, 'x');
    let stopping: Promise<void> | undefined;
    const req = streamingRequest(`${hub.url}/clusters/prod-eu/api/v1/namespaces/default/configmaps`, {
      method: 'POST',
      ca: stack.caPem,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': body.length },
    });
    req.write(body.subarray(0, 1024));
    void until(() => stack.fake.requests.some((r) => r.url.endsWith('/configmaps') && r.body.length > 0), 5_000, 'the upstream to get the first bytes').then(async () => {
      stopping = hub.close();
      await new Promise((resolve) => setTimeout(resolve, 200));
      req.end(body.subarray(1024));
    });
    const response = req.response.then(
      ({ status, body: answer }) =>
        new Promise<{ status: number; text: string }>((resolve) => {
          let text = '';
          answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
          answer.on('end', () => resolve({ status, text }));
        }),
    );
    const answer = await response;
    expect(answer.status).toBe(200);
    expect(stack.fake.requests.filter((r) => r.url.endsWith('/configmaps')).at(-1)!.body.length).toBe(body.length);
    await stopping;
    await until(() => !relay.readiness().ready, 2_000, 'the relay to report the tunnel down');
    expect(relay.readiness().waitingFor.join()).toContain('tunnel');

    hub = await startHub(2_000);
    const restartedAt = performance.now();
    await until(async () => (await get('/version')).status === 200, 5_000, 'a request through the restarted hub');
    // Backoff caps here are 50 ms → 200 ms; allow for the TLS handshakes on a busy machine.
    expect(performance.now() - restartedAt).toBeLessThan(2_000);
    await until(() => relay.readiness().ready, 2_000, 'the relay to be ready again');
    await hub.close();
  });

  it('a hub killed mid-watch ends the watch at once instead of leaving it hanging', async () => {
    await hub.close();
    hub = await startHub(0);
    await until(async () => (await get('/version')).status === 200, 5_000, 'the relay to reconnect');
    const { ended } = await openWatch();
    const killed = hub.close();
    expect(await settleWithin(ended, 2_000)).toBe('failed');
    await killed;
  });
});

describe('network faults', () => {
  it('a WebSocket cut without a close frame fails the watch in flight at once, and the relay reconnects', async () => {
    const { ended } = await openWatch();
    const before = network.accepted;
    network.cut();
    expect(await settleWithin(ended, 2_000)).toBe('failed');
    await until(() => network.accepted > before, 3_000, 'the relay to dial again');
    await until(async () => (await get('/version')).status === 200, 3_000, 'a request through the new tunnel');
  });

  it('a half-open tunnel (the peer silently gone) is detected by both ends within 2.5 ping intervals', async () => {
    const { ended } = await openWatch();
    const before = network.accepted;
    const vanishedAt = performance.now();
    network.blackhole();
    await until(() => network.accepted > before, 5_000, 'the relay to give up on the silent tunnel and dial again');
    const detectedMs = performance.now() - vanishedAt;
    // 2 missed pings + half an interval = 2.5 intervals; then at most one backoff delay (≤ 200 ms).
    expect(detectedMs).toBeLessThan(2.5 * KEEPALIVE_MS + BACKOFF.maxMs + 500);
    expect(await settleWithin(ended, 2 * KEEPALIVE_MS)).toBe('failed');
    // The hub dropped its end too, so no request is routed into the dead tunnel.
    await until(async () => (await metric(hub.adminPort!, 'kube_relay_tunnel_connected{')) === 1, 3_000, 'the hub to hold exactly one tunnel');
    const answers = await Promise.all(Array.from({ length: 10 }, () => get('/version')));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
  });
});

describe('resources', () => {
  it('1 000 open/close cycles leave no stream, socket or listener behind', async () => {
    const resources = () => {
      const info = process.getActiveResourcesInfo();
      return { sockets: info.filter((r) => r === 'TCPSocketWrap').length, listeners: info.filter((r) => r === 'TCPServerWrap').length };
    };
    const before = resources();
    for (let round = 0; round < 125; round++) {
      const answers = await Promise.all(Array.from({ length: 8 }, () => get('/version')));
      expect(answers.every((a) => a.status === 200)).toBe(true);
    }
    await until(async () => (await metric(hub.adminPort!, 'kube_relay_tunnel_open_streams')) === 0, 3_000, 'the hub to have no open stream');
    await until(async () => (await metric(relay.adminPort!, 'kube_relay_tunnel_open_streams')) === 0, 3_000, 'the relay to have no open stream');
    await until(() => resources().sockets <= before.sockets, 3_000, `sockets back to ${before.sockets}`);
    expect(resources().listeners).toBe(before.listeners);
  });

  it('one stalled stream does not hold back 100 parallel GETs on the same tunnel', async () => {
    const p99 = async () => {
      const answers = await Promise.all(Array.from({ length: 100 }, () => get('/api/v1/namespaces/default/pods')));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      const sorted = answers.map((a) => a.ms).sort((a, b) => a - b);
      return sorted[98]!;
    };
    await p99(); // warm-up
    const unstalled = await p99();

    // A port-forward whose client writes 8 MiB and never reads the echo: its stream sits at a full window.
    const stalled = tls.connect({ host: '127.0.0.1', port: hubPort, ca: stack.caPem, servername: 'localhost' });
    stalled.on('error', () => undefined);
    await new Promise((resolve) => stalled.once('secureConnect', resolve));
    stalled.write(
      `POST /clusters/prod-eu/api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n` +
        'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n',
    );
    stalled.write(Buffer.alloc(8 * 1024 * 1024, 'p'));
    stalled.pause();
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      const withStall = await p99();
      // Loose here (a shared, noisy machine); the benchmark measures it properly.
      expect(withStall).toBeLessThan(Math.max(3 * unstalled, unstalled + 250));
    } finally {
      stalled.destroy();
    }
  });
});
