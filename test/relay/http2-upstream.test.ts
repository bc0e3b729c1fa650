/**
 * The forwarder's HTTP/2 path to an API server that offers h2
 * (request-stages/http2-upstream.ts), on loopback: a plain HTTP relay in
 * front of one Forwarder, the recording fake API server behind it. What is
 * counted is TLS connections at the fake: each HTTP/2 session is one.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Forwarder } from '../../src/relay/forward.js';
import type { Upstream } from '../../src/relay/upstream.js';
import { issueCertificate, type LocalCa, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { type FakeApiServer, type FakeApiServerOptions, startFakeApiServer } from '../fixtures/fake-apiserver.js';
import { until } from '../helpers/http.js';

interface Relay {
  url: string;
  fake: FakeApiServer;
  /** Errors the forwarder reported (each answered 502). */
  errors: Error[];
}

interface Answer {
  status: number;
  body: string;
}

describe('HTTP/2 to the API server', () => {
  let ca: LocalCa;
  let serving: { certPem: string; keyPem: string };
  let client: { certPem: string; keyPem: string };
  beforeAll(() => {
    ca = loadOrCreateCa(mkdtempSync(path.join(tmpdir(), 'kube-relay-h2-upstream-')));
    serving = issueCertificate(ca, { commonName: 'kube-apiserver', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
    client = issueCertificate(ca, { commonName: 'kube-relay-client', sans: [], usage: 'client' });
  });
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function relayTo(fakeOptions: Omit<FakeApiServerOptions, 'tls'> = {}): Promise<Relay> {
    const fake = await startFakeApiServer({ http2: true, ...fakeOptions, tls: { key: serving.keyPem, cert: serving.certPem, ca: ca.certPem, requestCert: true } });
    const upstream: Upstream = {
      server: new URL(fake.url),
      tls: { ca: ca.certPem, cert: client.certPem, key: client.keyPem, rejectUnauthorized: true },
      authorization: () => 'Bearer relay',
      description: 'test upstream',
    };
    const forwarder = new Forwarder(upstream);
    const errors: Error[] = [];
    const server = http.createServer((req, res) => {
      const body = req.headers['x-replace-body'] === undefined ? undefined : Buffer.from(String(req.headers['x-replace-body']));
      const headers = { authorization: 'Bearer relay', ...(req.headers['content-length'] ? { 'content-length': body ? String(body.length) : req.headers['content-length'] } : {}), ...(req.headers['transfer-encoding'] ? { 'transfer-encoding': 'chunked' } : {}) };
      forwarder.forwardRequest(
        req,
        res,
        headers,
        {
          onResponse: () => undefined,
          onBytes: () => undefined,
          onUpgraded: () => undefined,
          onError: (err) => {
            errors.push(err);
            if (!res.headersSent) res.writeHead(502).end();
            else res.destroy();
          },
        },
        // Every request here is sent as a long-running one would be, over HTTP/2, unless it says it is short.
        { body, longRunning: req.headers['x-short'] === undefined },
      );
    });
    server.on('upgrade', (req, socket, head) => {
      forwarder.forwardUpgrade(req, socket, head, { authorization: 'Bearer relay', connection: 'Upgrade', upgrade: 'SPDY/3.1' }, { onResponse: () => undefined, onBytes: () => undefined, onUpgraded: () => undefined, onError: () => socket.destroy() });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(async () => {
      forwarder.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fake.close();
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, fake, errors };
  }

  function get(relay: Relay, target: string, options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string } = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${relay.url}${target}`, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end(options.body);
    });
  }

  /** A watch through the relay: its lines as they arrive, and a way to leave it. */
  function watch(relay: Relay, target = '/api/v1/namespaces/default/pods?watch=1') {
    const lines: string[] = [];
    let status: number | undefined;
    const req = http.get(`${relay.url}${target}`, { agent: false }, (res) => {
      status = res.statusCode;
      let partial = '';
      res.on('data', (chunk: Buffer) => {
        const parts = (partial + chunk.toString('utf8')).split('\n');
        partial = parts.pop()!;
        lines.push(...parts);
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    return { lines, status: () => status, leave: () => req.destroy() };
  }

  it('carries many concurrent watches on one TLS connection, each on its own stream', async () => {
    const relay = await relayTo();
    const clients = Array.from({ length: 25 }, () => watch(relay));
    const streams = await Promise.all(clients.map(() => relay.fake.nextWatch()));
    await until(() => clients.every((c) => c.status() === 200), 10_000, 'every watch to be answered');
    expect(relay.fake.connectionsAccepted()).toBe(1);
    expect(relay.fake.requests.map((r) => r.httpVersion)).toEqual(Array(25).fill('2.0'));
    // Each stream is its own: an event sent on one reaches that client only.
    await streams[7]!.send({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'seventh' } } });
    await until(() => clients[7]!.lines.length === 1, 10_000, 'the event');
    expect(clients.filter((c) => c.lines.length > 0)).toHaveLength(1);
    clients.forEach((c) => c.leave());
  });

  it("opens another session only when every session holds its peer's maximum of concurrent streams", async () => {
    const relay = await relayTo({ maxConcurrentStreams: 4 });
    const first = Array.from({ length: 4 }, () => watch(relay));
    await Promise.all(first.map(() => relay.fake.nextWatch()));
    expect(relay.fake.connectionsAccepted()).toBe(1);
    const more = Array.from({ length: 3 }, () => watch(relay));
    await Promise.all(more.map(() => relay.fake.nextWatch()));
    await until(() => [...first, ...more].every((c) => c.status() === 200), 10_000, 'every watch to be answered');
    expect(relay.fake.connectionsAccepted()).toBe(2);
    // A stream freed on the first session is used again before any third session opens.
    first[0]!.leave();
    await until(() => relay.fake.requests.filter((r) => r.closedByClient).length === 1, 10_000, 'the watch to close upstream');
    const answer = await get(relay, '/api/v1/namespaces/default/pods');
    expect(answer.status).toBe(200);
    expect(relay.fake.connectionsAccepted()).toBe(2);
    [...first, ...more].forEach((c) => c.leave());
  });

  it('cancels the upstream stream of a watch its client leaves, and keeps the session for the next request', async () => {
    const relay = await relayTo();
    const client = watch(relay);
    const upstreamWatch = await relay.fake.nextWatch();
    await upstreamWatch.send({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'a' } } });
    await until(() => client.lines.length === 1, 10_000, 'the event');
    client.leave();
    await upstreamWatch.closed;
    const seen = relay.fake.requests.find((r) => r.url.includes('watch=1'))!;
    await until(() => seen.resetCode !== undefined, 5_000, 'the stream to close');
    expect(seen).toMatchObject({ closedByClient: true, resetCode: http2.constants.NGHTTP2_CANCEL });
    expect((await get(relay, '/version')).status).toBe(200);
    expect(relay.fake.connectionsAccepted()).toBe(1);
  });

  it('replaces a session the API server sends away (GOAWAY): streams under way finish, later requests succeed', async () => {
    const relay = await relayTo();
    const client = watch(relay);
    const upstreamWatch = await relay.fake.nextWatch();
    relay.fake.goAway();
    await until(() => relay.fake.openSessions() === 1, 5_000, 'the session to stay open for its watch');
    const answers = await Promise.all(Array.from({ length: 3 }, () => get(relay, '/api/v1/namespaces/default/pods')));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(relay.fake.connectionsAccepted()).toBe(2);
    // The watch, a stream the GOAWAY covered, still flows on the old session.
    await upstreamWatch.send({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'after-goaway' } } });
    await until(() => client.lines.some((line) => line.includes('after-goaway')), 10_000, 'the event after the GOAWAY');
    client.leave();
    expect(relay.errors).toEqual([]);
  });

  it('sends a request the API server refused unprocessed (GOAWAY, REFUSED_STREAM) once more, on a fresh session', async () => {
    const relay = await relayTo({ refuseFirstStreamTo: '/api/v1/namespaces/default/pods/refused' });
    expect((await get(relay, '/version')).status).toBe(200);
    const answer = await get(relay, '/api/v1/namespaces/default/pods/refused');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Pod', metadata: { name: 'refused' } });
    // Recorded once: the refused stream never reached the fake's handler.
    expect(relay.fake.requests.filter((r) => r.url === '/api/v1/namespaces/default/pods/refused')).toHaveLength(1);
    expect(relay.fake.connectionsAccepted()).toBe(2);
    expect(relay.errors).toEqual([]);
  });

  it('sends the path byte for byte, the header set without connection-specific headers, host as :authority, and the client certificate', async () => {
    const relay = await relayTo();
    const target = '/apis/apps/v1/namespaces/team-a/deployments/web?fieldManager=kubectl&x=%E2%9C%93&y=/../z';
    expect((await get(relay, target, { headers: { 'content-type': 'application/json' } })).status).toBe(200);
    const seen = relay.fake.lastRequest()!;
    expect(seen).toMatchObject({ url: target, httpVersion: '2.0', authority: new URL(relay.fake.url).host, clientCertCN: 'kube-relay-client' });
    expect(seen.headers.authorization).toBe('Bearer relay');
    expect(Object.keys(seen.headers).filter((name) => ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host'].includes(name))).toEqual([]);
  });

  it('streams a request body of unknown length, and sends a replacement body (a dry-run delete) as given', async () => {
    const relay = await relayTo();
    const body = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
    const streamed = await get(relay, '/api/v1/namespaces/default/configmaps', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body });
    expect(streamed.status).toBe(200);
    expect(relay.fake.lastRequest()!.body.equals(body)).toBe(true);
    const replaced = await get(relay, '/api/v1/namespaces/default/pods/web', { method: 'DELETE', headers: { 'content-length': '2', 'x-replace-body': '{"dryRun":["All"]}' }, body: '{}' });
    expect(replaced.status).toBe(200);
    expect(relay.fake.lastRequest()!.body.toString()).toBe('{"dryRun":["All"]}');
  });

  it('opens its sessions with the one TLS context the forwarder built at start', async () => {
    const relay = await relayTo({ maxConcurrentStreams: 1 });
    const createSecureContext = vi.spyOn(tls, 'createSecureContext');
    const clients = Array.from({ length: 3 }, () => watch(relay));
    await Promise.all(clients.map(() => relay.fake.nextWatch()));
    expect(relay.fake.connectionsAccepted()).toBe(3);
    expect(createSecureContext).not.toHaveBeenCalled();
    clients.forEach((c) => c.leave());
  });

  it('keeps upgrades on HTTP/1.1 through the agent', async () => {
    const relay = await relayTo();
    const url = new URL(relay.url);
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: '/api/v1/namespaces/default/pods/web/portforward?ports=80', method: 'POST', headers: { connection: 'Upgrade', upgrade: 'SPDY/3.1' } });
      req.on('upgrade', (_res, socket) => {
        socket.once('data', (chunk: Buffer) => {
          resolve(chunk.toString());
          socket.destroy();
        });
        socket.write('ping');
      });
      req.on('error', reject);
      req.end();
    });
    expect(echoed).toBe('ping');
    expect(relay.fake.lastRequest()).toMatchObject({ upgrade: true, httpVersion: '1.1' });
  });

  it('answers 502 through onError when the API server cannot be reached', async () => {
    const relay = await relayTo();
    expect((await get(relay, '/version')).status).toBe(200);
    await relay.fake.close();
    const refused = await get(relay, '/version');
    expect(refused.status).toBe(502);
    expect(relay.errors.length).toBeGreaterThan(0);
  });

  it('sends a request that is not long-running over the HTTP/1.1 keep-alive agent, though the API server offers h2', async () => {
    const relay = await relayTo();
    const client = watch(relay);
    await relay.fake.nextWatch();
    for (let i = 0; i < 3; i++) expect((await get(relay, '/api/v1/namespaces/default/pods', { headers: { 'x-short': '1' } })).status).toBe(200);
    expect(relay.fake.requests.map((r) => r.httpVersion)).toEqual(['2.0', '1.1', '1.1', '1.1']);
    // The watch's session, and the agent's one connection kept alive for the short requests.
    expect(relay.fake.connectionsAccepted()).toBe(2);
    client.leave();
  });

  it('falls back to the HTTP/1.1 agent for an API server that does not offer h2, decided once', async () => {
    const relay = await relayTo({ http2: false });
    for (let i = 0; i < 3; i++) expect((await get(relay, '/version')).status).toBe(200);
    expect(relay.fake.requests.map((r) => r.httpVersion)).toEqual(['1.1', '1.1', '1.1']);
    // The connection that learnt the API server's protocol, then the agent's one keep-alive connection.
    expect(relay.fake.connectionsAccepted()).toBe(2);
  });
});
