/**
 * The tunnel as an attacker holding a connector key would use it (issue 7):
 * a hand-written relay speaks raw mux frames to the real hub. The hub
 * derives the cluster from the key, never from what the relay claims, and
 * ends a tunnel whose relay breaks the protocol rather than guessing.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../../src/log.js';
import { startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { KEY_REVOKED_CLOSE_CODE } from '../../src/tunnel/handshake.js';
import { FrameType, MAX_MESSAGE_BYTES } from '../../src/tunnel/mux.js';
import { dialHub as dialFakeRelay, type FakeRelay, frame } from '../helpers/fake-relay.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const TUNNEL_CAPACITY = 8;

let stack: Stack;
const keys: Record<string, string> = {};
let alphaToken: string;
const hubLog: string[] = [];

beforeAll(async () => {
  stack = await startStack({
    mode: 'tunnel',
    issuer: { tunnelMaxStreams: TUNNEL_CAPACITY, log: createLogger('info', {}, (line) => hubLog.push(line)), adminListen: { host: '127.0.0.1', port: 0 } },
  });
  const setup = await stack.registry();
  for (const cluster of ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'retired']) keys[cluster] = await setup.registry.createCluster(cluster, 'acme');
  await setup.registry.revokeCluster('retired');
  await setup.close();
  alphaToken = await stack.token(stack.agentKey, 'alpha');
});

afterAll(async () => {
  await stack?.close();
});

const dialHub = (key: string, cluster: string) => dialFakeRelay(stack, key, cluster);

const agentGet = (path: string, token = alphaToken) => request(`${stack.issuer.url}${path}`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });

/** Completes one request through the fake relay (the positive control: the harness speaks the protocol). */
async function serveOne(relay: FakeRelay, cluster = 'alpha'): Promise<void> {
  const answer = agentGet(`/clusters/${cluster}/version`, cluster === 'alpha' ? alphaToken : await stack.token(stack.agentKey, cluster));
  await until(() => relay.frames.some((f) => f.type === FrameType.Open), 3_000, 'the hub to open a stream');
  const id = relay.frames.find((f) => f.type === FrameType.Open)!.id;
  await until(() => relay.frames.some((f) => f.type === FrameType.Data && f.id === id && f.payload.includes('\r\n\r\n')), 3_000, 'the request');
  relay.ws.send(frame(FrameType.Data, id, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
  relay.ws.send(frame(FrameType.Fin, id));
  const result = await answer;
  expect(result.status).toBe(200);
  expect(result.body.toString()).toBe('ok');
  relay.frames.length = 0;
}

describe('who may connect a tunnel (DESIGN §4: the key decides the cluster)', () => {
  it("refuses cluster alpha's key claiming cluster beta, naming the key's cluster", async () => {
    await expect(dialHub(keys.alpha!, 'beta')).rejects.toMatchObject({ status: 401, message: expect.stringContaining('"alpha"') });
  });

  it("refuses cluster beta's key claiming alpha, and a made-up key claiming either", async () => {
    await expect(dialHub(keys.beta!, 'alpha')).rejects.toMatchObject({ status: 401 });
    await expect(dialHub(`krl_cluster_${'A'.repeat(43)}`, 'alpha')).rejects.toMatchObject({ status: 401 });
  });

  it("refuses a revoked cluster's key", async () => {
    await expect(dialHub(keys.retired!, 'retired')).rejects.toMatchObject({ status: 401 });
  });

  it('closes the tunnel of a cluster revoked while it is connected, and the real relay stops for good', async () => {
    const fake = await dialHub(keys.gamma!, 'gamma');
    const relay = await startRelay({
      mode: 'tunnel',
      cluster: 'delta',
      issuer: stack.issuer.url,
      dataDir: stack.dataDir,
      issuerCa: stack.caPem,
      tunnel: { hubUrl: stack.issuer.url, connectorKey: keys.delta!, hubCa: stack.caPem },
      upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
      audit: { file: `${stack.dataDir}/delta-audit.jsonl` },
      maxStreamDurationMs: 0,
      pollRevocations: false,
      log: createLogger('error', {}, () => undefined),
    });
    try {
      const deltaToken = await stack.token(stack.agentKey, 'delta');
      await until(async () => (await agentGet('/clusters/delta/version', deltaToken)).status === 200, 5_000, 'the delta relay to connect');
      const revoke = await stack.registry();
      await revoke.registry.revokeCluster('gamma');
      await revoke.registry.revokeCluster('delta');
      await revoke.close();
      expect(await fake.closed).toBe(KEY_REVOKED_CLOSE_CODE);
      const failure = await relay.failed;
      expect(failure.message).toMatch(/connector key was revoked/);
      expect((await agentGet('/clusters/delta/version', deltaToken)).status).not.toBe(200);
    } finally {
      await relay.close();
    }
  });
});

describe('requests the hub refuses', () => {
  it('are logged with the reason and counted, never with the token', async () => {
    const forged = `${alphaToken.slice(0, -4)}AAAA`;
    expect((await agentGet('/clusters/alpha/api/v1/secrets?access=1', forged)).status).toBe(401);
    const line = hubLog.find((entry) => entry.includes('request refused at the hub') && entry.includes('/clusters/alpha/api/v1/secrets'));
    expect(JSON.parse(line!)).toMatchObject({ cluster: 'alpha', status: 401, method: 'GET', path: '/clusters/alpha/api/v1/secrets' });
    expect(hubLog.join('\n')).not.toContain(forged.split('.')[2]!);
    const metrics = await (await fetch(`http://127.0.0.1:${stack.issuer.adminPort}/metrics`)).text();
    expect(Number(/kube_relay_hub_refusals_total\{code="401"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  });

  it("leave a record in the hub's audit trail, shaped as the relay's, since no relay saw them (DESIGN §5)", async () => {
    const forged = `${alphaToken.slice(0, -4)}AAAA`;
    expect((await agentGet('/clusters/alpha/api/v1/namespaces/prod/secrets/db?access_token=x', forged)).status).toBe(401);
    // A valid token for alpha: no relay holds a tunnel for gamma, and the token is not for it either.
    expect((await agentGet('/clusters/gamma/api/v1/namespaces/prod/pods')).status).toBe(401);
    await until(() => stack.hubAuditRecords().filter((r) => r.path.startsWith('/api/v1/namespaces/prod/')).length === 2, 3_000, 'two hub records');
    const [forgedRecord, gammaRecord] = stack.hubAuditRecords().filter((r) => r.path.startsWith('/api/v1/namespaces/prod/'));
    expect(forgedRecord).toMatchObject({
      cluster: 'alpha',
      mode: 'tunnel',
      user: null,
      method: 'GET',
      path: '/api/v1/namespaces/prod/secrets/db',
      query: 'access_token=redacted',
      verb: 'get',
      namespace: 'prod',
      resource: 'secrets',
      name: 'db',
      status: 401,
      decision: 'denied-by-relay',
      reason: 'token-in-query',
    });
    expect(forgedRecord!.sourceIp).toMatch(/127\.0\.0\.1/);
    expect(gammaRecord).toMatchObject({ cluster: 'gamma', status: 401, decision: 'denied-by-relay', reason: 'wrong-audience', verb: 'list', resource: 'pods' });
    expect(readFileSync(stack.hubAuditFile, 'utf8')).not.toContain(forged.split('.')[2]!);
  });
});

describe('revocations pushed down a tunnel (DESIGN §2)', () => {
  it('reach a relay that connects after two thousand agents were revoked, in messages that each fit one frame', async () => {
    const handle = await stack.registry();
    for (let i = 0; i < 2_000; i++) await handle.registry.createAgent(`gone-${i}`, 'acme', ['sre']);
    for (let i = 0; i < 2_000; i++) await handle.registry.revokeAgent(`gone-${i}`);
    await handle.close();
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the hub reads the store every second
    const relay = await dialHub(keys.beta!, 'beta');
    const pushed = () =>
      new Set(
        relay.frames
          .filter((f) => f.type === FrameType.Control)
          .flatMap((f) => (JSON.parse(f.payload.toString()) as { items: { user: string }[] }).items.map((item) => item.user)),
      );
    await until(() => pushed().size >= 2_000, 3_000, 'every revocation to arrive');
    expect([...pushed()].filter((user) => user.startsWith('agent:gone-'))).toHaveLength(2_000);
    expect(relay.ws.readyState).toBe(WebSocket.OPEN);
    relay.ws.close();
    await relay.closed;
  });
});

describe('a relay that breaks the tunnel protocol is disconnected (hub side)', () => {
  it('serves a well-behaved hand-written relay (control), and drops frames for a stream already closed', async () => {
    const relay = await dialHub(keys.alpha!, 'alpha');
    await serveOne(relay);
    // Stream 1 is closed both ways now: a late frame for it is a race, not an attack.
    relay.ws.send(frame(FrameType.Data, 1, 'late'));
    await serveOne(relay);
    relay.ws.close();
    await relay.closed;
  });

  it.each([
    ['opens a stream of its own (only the hub opens streams)', () => frame(FrameType.Open, 2, '{}')],
    ['sends DATA for a stream the hub never opened', () => frame(FrameType.Data, 7, 'HTTP/1.1 200 OK\r\n\r\n')],
    ['sends DATA for an id of its own parity that was never opened', () => frame(FrameType.Data, 8, 'x')],
    ['sends WINDOW for a stream never opened', () => frame(FrameType.Window, 3, Buffer.from([0, 0, 16, 0]))],
    ['sends FIN for a stream never opened', () => frame(FrameType.Fin, 5)],
    ['sends RST for a stream never opened', () => frame(FrameType.Rst, 9)],
    ['sends a frame shorter than its header', () => Buffer.from([2, 0, 0])],
    ['sends a CONTROL message that is not JSON', () => frame(FrameType.Control, 0, 'not json')],
    ['sends a frame of an unknown type', () => frame(42, 0)],
  ])('when it %s', async (_name, bad) => {
    const relay = await dialHub(keys.alpha!, 'alpha');
    relay.ws.send(bad());
    expect(await relay.closed).toBe(1006); // terminated, no close handshake
    expect((await agentGet('/clusters/alpha/version')).status).toBe(503);
  });

  it('when it sends a text message', async () => {
    const relay = await dialHub(keys.alpha!, 'alpha');
    relay.ws.send('hello');
    expect(await relay.closed).toBe(1006);
  });

  it('when it sends a message larger than one frame (1009, message too big)', async () => {
    const relay = await dialHub(keys.alpha!, 'alpha');
    relay.ws.send(frame(FrameType.Data, 1, Buffer.alloc(MAX_MESSAGE_BYTES)));
    expect(await relay.closed).toBe(1009);
  });
});

describe('a tunnel that dies mid-answer', () => {
  it('cuts the client connection too, so the client sees the answer break off instead of waiting forever', async () => {
    const relay = await dialHub(keys.alpha!, 'alpha');
    const answer = new Promise<{ complete: boolean; body: string }>((resolve) => {
      const req = https.get(`${stack.issuer.url}/clusters/alpha/version`, { ca: stack.caPem, agent: false, headers: { authorization: `Bearer ${alphaToken}` } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('close', () => resolve({ complete: res.complete, body }));
        res.on('error', () => undefined);
      });
      req.on('error', () => resolve({ complete: false, body: '' }));
    });
    await until(() => relay.frames.some((f) => f.type === FrameType.Open), 3_000, 'the hub to open a stream');
    relay.ws.send(frame(FrameType.Data, 1, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst ten.'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    relay.ws.terminate();
    expect(await answer).toEqual({ complete: false, body: 'first ten.' });
  });
});

describe('a tunnel whose WebSocket is closing', () => {
  it('takes no new request: the client gets a Status at once, not a request that hangs', async () => {
    const relay = await dialHub(keys.epsilon!, 'epsilon');
    await serveOne(relay, 'epsilon');
    // The relay says goodbye and then stops reading: the hub's side stays CLOSING (not yet closed) for its close timeout.
    relay.ws.close(1000, 'bye');
    (relay.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const answer = await agentGet('/clusters/epsilon/version', await stack.token(stack.agentKey, 'epsilon'));
    expect(answer.status).toBe(503);
    expect(answer.json()).toMatchObject({ kind: 'Status', code: 503, message: expect.stringContaining('no relay connected') });
    relay.ws.terminate();
  });
});

describe('a tunnel at its capacity', () => {
  it(`refuses stream ${TUNNEL_CAPACITY + 1} with 429 and a Status while the first ${TUNNEL_CAPACITY} stay open`, async () => {
    const relay = await dialHub(keys.alpha!, 'alpha'); // accepts every stream, answers none
    const agent = new https.Agent({ maxSockets: Infinity });
    const pending = Array.from({ length: TUNNEL_CAPACITY }, () =>
      new Promise<number>((resolve) => {
        const req = https.get(`${stack.issuer.url}/clusters/alpha/version`, { ca: stack.caPem, agent, headers: { authorization: `Bearer ${alphaToken}` } }, (res) => resolve(res.statusCode!));
        req.on('error', () => resolve(0));
      }),
    );
    await until(() => relay.frames.filter((f) => f.type === FrameType.Open).length === TUNNEL_CAPACITY, 5_000, 'every stream to open');
    // Answered while the first streams are still open: the hub does not queue it behind them.
    const refused = await agentGet('/clusters/alpha/version');
    expect(refused.status).toBe(429);
    expect(refused.json()).toMatchObject({ kind: 'Status', code: 429, reason: 'TooManyRequests', message: expect.stringContaining('retry') });
    expect(relay.frames.filter((f) => f.type === FrameType.Open)).toHaveLength(TUNNEL_CAPACITY);
    relay.ws.terminate();
    expect(await Promise.all(pending)).toEqual(Array(TUNNEL_CAPACITY).fill(502));
    agent.destroy();
  });
});
