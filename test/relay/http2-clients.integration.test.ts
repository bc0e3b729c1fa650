/**
 * Clients that speak HTTP/2 to the relay's direct-mode listener and to the
 * hub (the issuer's listener), as client-go does once `h2` is offered
 * (issue 21): lists, several watches on one session, refusals as Kubernetes
 * Status bodies, the same audit record, the per-agent cap counting each
 * stream as a request, and the listener's limits on a stream. The API
 * server here speaks HTTP/1.1 only: the relay's HTTP/2 upstream path has
 * its own tests (http2-upstream.test.ts, relay.h2-upstream.integration.test.ts).
 */
import http2, { type ClientHttp2Session } from 'node:http2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { h2Request, h2Session, h2Watch } from '../helpers/h2-client.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';
import { podEvent } from '../helpers/watch-client.js';

const CAP = 4;

// Node warns (once per process) when a status message is given to an HTTP/2 response, which cannot carry one.
const warnings: string[] = [];
process.on('warning', (warning) => warnings.push(warning.message));
afterAll(() => {
  expect(warnings.filter((message) => /HTTP\/2/.test(message))).toEqual([]);
});
const AUDIT_FIELDS = ['time', 'requestId', 'cluster', 'mode', 'user', 'groups', 'tokenId', 'sourceIp', 'userAgent', 'method', 'path', 'query', 'verb', 'namespace', 'resource', 'subresource', 'name', 'status', 'decision', 'durationMs', 'bytesIn', 'bytesOut'];

describe.each(['direct', 'tunnel'] as const)('HTTP/2 clients, %s mode', (mode) => {
  let stack: Stack;
  let token: string;
  const sessions: ClientHttp2Session[] = [];

  beforeAll(async () => {
    stack = await startStack({
      mode,
      ...(mode === 'direct' ? { relay: { maxRequestsPerAgent: CAP, adminListen: { host: '127.0.0.1', port: 0 } } } : { issuer: { maxRequestsPerAgent: CAP } }),
    });
    token = await stack.token();
  });
  afterEach(() => {
    for (const session of sessions.splice(0)) session.destroy();
  });
  afterAll(async () => {
    await stack?.close();
  });

  const session = async () => {
    const opened = await h2Session(stack.relay.url, stack.caPem);
    sessions.push(opened);
    return opened;
  };
  const base = () => new URL(stack.relay.url).pathname.replace(/\/$/, '');
  const bearer = () => ({ authorization: `Bearer ${token}` });

  it('lists as the agent, the API server seeing exactly what an HTTP/1.1 client would have sent', async () => {
    const answer = await h2Request(`${stack.relay.url}/api/v1/namespaces/default/pods?limit=2`, { ca: stack.caPem, headers: { ...bearer(), 'user-agent': 'kubectl/v1.33.0 (h2)' } });
    expect(answer.status).toBe(200);
    expect(answer.json()).toMatchObject({ kind: 'PodList' });
    const seen = stack.fake.lastRequest()!;
    expect(seen).toMatchObject({ url: '/api/v1/namespaces/default/pods?limit=2', httpVersion: '1.1' });
    expect(seen.headers['impersonate-user']).toBe('agent:deployer');
    expect(seen.headers['user-agent']).toBe('kubectl/v1.33.0 (h2)');
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.startsWith(':'))).toEqual([]);
  });

  it('carries several watches on one session, each its own stream, and ends each cleanly', async () => {
    const shared = await session();
    const watches = ['a', 'b', 'c'].map((ns) => h2Watch(shared, `${base()}/api/v1/namespaces/watch-${ns}/pods?watch=1`, token));
    const upstream = await Promise.all(watches.map(() => stack.fake.nextWatch()));
    await until(() => watches.every((w) => w.status() === 200), 10_000, 'every watch to be answered');
    for (const w of upstream) await w.send(podEvent(new URL(w.url, 'https://x').pathname.split('/')[4]!));
    await until(() => watches.every((w) => w.body().endsWith('\n')), 10_000, 'an event on every watch');
    expect(watches.map((w) => w.lines())).toEqual(['a', 'b', 'c'].map((ns) => [podEvent(`watch-${ns}`)]));
    upstream.forEach((w) => w.end());
    expect(await Promise.all(watches.map((w) => w.ended))).toEqual(['complete', 'complete', 'complete']);
    // Still usable: one more request on the same session.
    expect((await h2Request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: bearer(), session: shared })).status).toBe(200);
  });

  it('cancels the upstream watch of a stream the client resets', async () => {
    const shared = await session();
    const watch = h2Watch(shared, `${base()}/api/v1/namespaces/left/pods?watch=1`, token);
    const upstream = await stack.fake.nextWatch();
    await until(() => watch.status() === 200, 10_000, 'the watch to be answered');
    watch.leave();
    await upstream.closed;
    expect(await watch.ended).toBe('cut');
  });

  it.each([
    ['no token', {}, '/api/v1/namespaces/default/secrets', 401, 'Unauthorized'],
    ['Impersonate-User', { auth: true, 'impersonate-user': 'system:admin' }, '/api/v1/namespaces/default/secrets', 403, 'Forbidden'],
    ['a dot segment', { auth: true }, '/api/v1/namespaces/default/pods/../secrets', 400, 'BadRequest'],
    ['a header of 40 KiB', { auth: true, 'x-padding': 'a'.repeat(40 * 1024) }, '/api/v1/namespaces/default/pods', 431, 'BadRequest'],
  ] as const)('refuses %s with a Kubernetes Status, forwarding nothing', async (_name, headers, path, code, reason) => {
    const before = stack.fake.requests.length;
    const { auth, ...rest } = headers as Record<string, string> & { auth?: boolean };
    const answer = await h2Request(`${stack.relay.url}${path}`, { ca: stack.caPem, headers: { ...(auth ? bearer() : {}), ...rest } });
    expect(answer.status).toBe(code);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect(answer.json()).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason });
    expect(stack.fake.requests.slice(before).filter((r) => r.headers['impersonate-user'] !== undefined)).toEqual([]);
  });

  it('counts every stream as a request against the agent cap: 429 past it, room again once one ends', async () => {
    const shared = await session();
    const watches = Array.from({ length: CAP }, (_, i) => h2Watch(shared, `${base()}/api/v1/namespaces/capped-${i}/pods?watch=1`, token));
    const upstream = await Promise.all(watches.map(() => stack.fake.nextWatch()));
    const refused = await h2Request(`${stack.relay.url}/api/v1/namespaces/default/pods`, { ca: stack.caPem, headers: bearer(), session: shared });
    expect(refused.status).toBe(429);
    expect(refused.json()).toMatchObject({ kind: 'Status', code: 429, reason: 'TooManyRequests' });
    watches[0]!.leave();
    await upstream[0]!.closed;
    await until(async () => (await h2Request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: bearer(), session: shared })).status === 200, 10_000, 'a slot to be given back');
    watches.forEach((w) => w.leave());
  });

  it('sends 100 Continue only to an admitted request, and refuses the others before their body', async () => {
    const shared = await session();
    const expectContinue = (headers: Record<string, string>) =>
      new Promise<{ continued: boolean; status: number }>((resolve, reject) => {
        const stream = shared.request({ ':method': 'POST', ':path': `${base()}/api/v1/namespaces/default/configmaps`, expect: '100-continue', 'content-type': 'application/json', ...headers }, { endStream: false });
        let continued = false;
        stream.on('continue', () => {
          continued = true;
          stream.end('{"kind":"ConfigMap"}');
        });
        stream.on('response', (received) => resolve({ continued, status: Number(received[':status']) }));
        stream.on('error', reject);
        stream.resume();
      });
    expect(await expectContinue(bearer())).toEqual({ continued: true, status: 200 });
    expect(stack.fake.lastRequest()!.body.toString()).toBe('{"kind":"ConfigMap"}');
    expect(await expectContinue({})).toEqual({ continued: false, status: 401 });
  });

  it('writes the same audit record for an HTTP/2 request as for an HTTP/1.1 one', async () => {
    const headers = { ...bearer(), 'user-agent': 'kubectl/v1.33.0', 'kubectl-command': 'kubectl get', 'kubectl-session': 'h2-session' };
    await h2Request(`${stack.relay.url}/api/v1/namespaces/audited-h2/configmaps/one?resourceVersion=0`, { ca: stack.caPem, headers });
    await request(`${stack.relay.url}/api/v1/namespaces/audited-h1/configmaps/one?resourceVersion=0`, { ca: stack.caPem, headers });
    const viaH2 = await stack.awaitRecord('/api/v1/namespaces/audited-h2/configmaps/one');
    const viaH1 = await stack.awaitRecord('/api/v1/namespaces/audited-h1/configmaps/one');
    for (const field of AUDIT_FIELDS) expect(viaH2, field).toHaveProperty(field);
    const comparable = (record: Record<string, unknown>) => {
      const { time: _t, requestId: _r, tokenId: _k, durationMs: _d, path: _p, namespace: _n, ...rest } = record;
      return rest;
    };
    expect(comparable(viaH2 as unknown as Record<string, unknown>)).toEqual(comparable(viaH1 as unknown as Record<string, unknown>));
    expect(viaH2).toMatchObject({ mode, user: 'agent:deployer', verb: 'get', userAgent: 'kubectl/v1.33.0', kubectlCommand: 'kubectl get', kubectlSession: 'h2-session', status: 200, decision: 'allowed' });
    expect(viaH2.sourceIp).toMatch(/127\.0\.0\.1$/);
  });

  if (mode === 'direct') {
    it('counts the requests of each protocol on the listener', async () => {
      await h2Request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: bearer() });
      await request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: bearer() });
      const metrics = await (await fetch(`http://127.0.0.1:${stack.relay.adminPort}/metrics`)).text();
      expect(metrics).toMatch(/kube_relay_listener_requests_total\{protocol="h2"\} [1-9]/);
      expect(metrics).toMatch(/kube_relay_listener_requests_total\{protocol="http\/1\.1"\} [1-9]/);
    });
  }

  if (mode === 'tunnel') {
    it('refuses a Kubernetes path without /clusters/<name> with a 404 Status over HTTP/2 too', async () => {
      const answer = await h2Request(`${stack.issuer.url}/api/v1/namespaces/default/pods`, { ca: stack.caPem, headers: bearer() });
      expect(answer.status).toBe(404);
      expect(answer.json()).toMatchObject({ kind: 'Status', code: 404 });
    });

    it('sends the issuer API (express) back to HTTP/1.1 with HTTP_1_1_REQUIRED, and serves it there', async () => {
      const shared = await session();
      const stream = shared.request({ ':path': '/v1/revocations' }, { endStream: true });
      stream.on('error', () => undefined);
      stream.resume();
      await new Promise((resolve) => stream.on('close', resolve));
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_HTTP_1_1_REQUIRED);
      expect((await request(`${stack.issuer.url}/v1/revocations`, { ca: stack.caPem })).status).toBe(200);
      // The session itself carries on.
      expect((await h2Request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: bearer(), session: shared })).status).toBe(200);
    });
  }
});

describe.each(['direct', 'tunnel'] as const)('the listener limits on an HTTP/2 session, %s mode', (mode) => {
  let stack: Stack;
  let token: string;
  const limits = { headersTimeoutMs: 1_000, requestTimeoutMs: 1_500 };

  beforeAll(async () => {
    stack = await startStack({ mode, ...(mode === 'direct' ? { relay: { limits } } : { issuer: { limits } }) });
    token = await stack.token();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('sends away a session that opens no stream within the headers timeout', async () => {
    const idle = await h2Session(stack.relay.url, stack.caPem);
    const startedAt = Date.now();
    await new Promise((resolve) => idle.once('close', resolve));
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  });

  it('answers 408 to a stream whose body does not arrive within the request deadline', async () => {
    const session = await h2Session(stack.relay.url, stack.caPem);
    const stream = session.request({ ':method': 'POST', ':path': `${new URL(stack.relay.url).pathname.replace(/\/$/, '')}/api/v1/namespaces/default/configmaps`, authorization: `Bearer ${token}`, 'content-type': 'application/json' }, { endStream: false });
    stream.write('{"kind":');
    stream.on('error', () => undefined);
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    const status = await new Promise<number>((resolve) => stream.once('response', (headers) => resolve(Number(headers[':status']))));
    await new Promise((resolve) => stream.on('close', resolve));
    session.destroy();
    expect(status).toBe(408);
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ kind: 'Status', code: 408 });
    // The stream was reset after the answer, as HTTP/1.1 closes the connection: the request is abandoned upstream too.
    expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    await until(() => stack.fake.requests.some((r) => r.url === '/api/v1/namespaces/default/configmaps' && r.closedByClient), 10_000, 'the upstream request to be abandoned');
  });
});
