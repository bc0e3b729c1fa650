/**
 * The relay end to end against the recording fake API server: what arrives
 * upstream, what the client gets back, and what is audited. Run once per
 * mode: straight to the relay (direct) and through the hub's tunnel; and
 * once per upstream protocol: an API server of HTTP/1.1 only, and one that
 * offers HTTP/2 as kube-apiserver does (plain requests then go over h2);
 * and with clients of either protocol (upgrades are HTTP/1.1 in both).
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { BEARER_SUBPROTOCOL_PREFIX } from '../../src/request-stages/authenticate.js';
import { type ClientProtocol, request as requestOver, streamingRequest, until } from '../helpers/http.js';
import { RELAY_SA_TOKEN, type Stack, startStack } from '../helpers/stack.js';
import { openWatch, podEvent } from '../helpers/watch-client.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

export interface RelaySuiteOptions {
  /** What the fake API server speaks (default HTTP/1.1 only). */
  upstream?: 'http/1.1' | 'h2';
  /** What the agents' plain requests and watches speak (default HTTP/1.1). */
  client?: ClientProtocol;
}

export function relaySuite(mode: 'direct' | 'tunnel', options: RelaySuiteOptions = {}): void {
  let stack: Stack;
  let token: string;
  const clientProtocol = options.client ?? 'http/1.1';
  const request = (url: string, requestOptions: Omit<Parameters<typeof requestOver>[1], 'protocol'>) => requestOver(url, { ...requestOptions, protocol: clientProtocol });
  const watchOver = (url: string, ca: string, path: string, agentToken: string, headers: Record<string, string> = {}) => openWatch(url, ca, path, agentToken, headers, clientProtocol);

  beforeAll(async () => {
    stack = await startStack({ mode, fake: { http2: options.upstream === 'h2' }, relay: { adminListen: { host: '127.0.0.1', port: 0 } } });
    token = await stack.token();
  });

  afterAll(async () => {
    await stack?.close();
  });

  const get = (path: string, headers: Record<string, string | string[]> = {}) =>
    request(`${stack.relay.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers }, ca: stack.caPem });

  function upstreamRequestsTo(pathPrefix: string) {
    return stack.fake.requests.filter((r) => r.url.startsWith(pathPrefix));
  }

  function recordFor(requestPath: string) {
    return stack.auditRecords().filter((r) => r.path === requestPath);
  }

  describe('what the API server receives', () => {
    it('gets exactly the relay credential plus the agent identity, never the agent token', async () => {
      const answer = await get('/api/v1/namespaces/default/pods?limit=500', { 'user-agent': 'kubectl/v1.33.0' });
      expect(answer.status).toBe(200);
      const seen = stack.fake.lastRequest()!;
      expect(seen.url).toBe('/api/v1/namespaces/default/pods?limit=500');
      // A list is not long-running: it takes the HTTP/1.1 keep-alive agent whatever the API server offers (forward.ts).
      expect(seen.httpVersion).toBe('1.1');
      expect(seen.headers.authorization).toBe(`Bearer ${RELAY_SA_TOKEN}`);
      const identityHeaders = [];
      for (let i = 0; i < seen.rawHeaders.length; i += 2) {
        const name = seen.rawHeaders[i]!.toLowerCase();
        if (name.startsWith('impersonate-') || name === 'authorization') identityHeaders.push([name, seen.rawHeaders[i + 1]]);
      }
      await until(() => recordFor('/api/v1/namespaces/default/pods').length > 0, 2_000, 'the audit record');
      const requestId = recordFor('/api/v1/namespaces/default/pods').at(-1)?.requestId;
      // Order of distinct header names is not meaningful; the values of Impersonate-Group keep theirs.
      const byName = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
      expect(identityHeaders.sort(byName)).toEqual([
        ['authorization', `Bearer ${RELAY_SA_TOKEN}`],
        ['impersonate-user', 'agent:deployer'],
        ['impersonate-group', 'acme/sre'],
        ['impersonate-group', 'acme/platform'],
        ['impersonate-extra-kube-relay.dev%2ftoken-id', expect.any(String)],
        ['impersonate-extra-kube-relay.dev%2frequest-id', requestId],
      ].sort(byName));
      expect(JSON.stringify(seen.rawHeaders)).not.toContain(token);
    });

    it('receives paths, query strings, bodies and content types unchanged', async () => {
      const protobuf = Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0xff, 0xfe, 0x00, 0x01]);
      const target = '/apis/apps/v1/namespaces/team-a/deployments/web?fieldManager=kubectl-client-side-apply&dryRun=All&x=%E2%9C%93';
      const answer = await request(`${stack.relay.url}${target}`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/vnd.kubernetes.protobuf', accept: 'application/vnd.kubernetes.protobuf' },
        body: protobuf,
        ca: stack.caPem,
      });
      expect(answer.status).toBe(200);
      const seen = stack.fake.lastRequest()!;
      expect(seen.method).toBe('PATCH');
      expect(seen.url).toBe(target);
      expect(seen.body.equals(protobuf)).toBe(true);
      expect(seen.headers['content-type']).toBe('application/vnd.kubernetes.protobuf');
      expect(seen.headers.accept).toBe('application/vnd.kubernetes.protobuf');
    });

    it('keeps a chunked DELETE body intact (no Content-Length from the client)', async () => {
      const body = JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Foreground' });
      // Over HTTP/2 a body of unknown length is DATA frames with no Content-Length.
      const req = streamingRequest(`${stack.relay.url}/api/v1/namespaces/default/pods/web`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(clientProtocol === 'h2' ? {} : { 'transfer-encoding': 'chunked' }) },
        ca: stack.caPem,
        protocol: clientProtocol,
      });
      req.write(body.slice(0, 10));
      setTimeout(() => req.end(body.slice(10)), 20);
      const answer = await req.response;
      answer.body.resume();
      expect(answer.status).toBe(200);
      const seen = stack.fake.lastRequest()!;
      expect(seen.method).toBe('DELETE');
      expect(seen.body.toString()).toBe(body);
    });

    it('streams a large request body through without changing a byte', async () => {
      const body = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
      const answer = await request(`${stack.relay.url}/api/v1/namespaces/default/configmaps`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        ca: stack.caPem,
      });
      expect(answer.status).toBe(200);
      expect(stack.fake.lastRequest()!.body.equals(body)).toBe(true);
      const record = await stack.awaitRecord('/api/v1/namespaces/default/configmaps');
      expect(record.bytesIn).toBe(body.length);
      expect(record.verb).toBe('create');
    });
  });

  describe('refusals never reach the API server', () => {
    it.each([
      ['no token', {}, 401, 'missing-token'],
      ['a token that is not a JWT', { authorization: 'Bearer nonsense' }, 401, 'malformed-token'],
      ['an unsigned token', { authorization: `Bearer ${Buffer.from('{"alg":"none","kid":"k"}').toString('base64url')}.e30.` }, 401, 'algorithm-not-allowed'],
    ])('answers %s with 401 and a Kubernetes Status', async (_name, headers, status, reason) => {
      const before = upstreamRequestsTo('/api/v1/namespaces/default/secrets').length;
      const answer = await request(`${stack.relay.url}/api/v1/namespaces/default/secrets`, { headers, ca: stack.caPem });
      expect(answer.status).toBe(status);
      expect(answer.json()).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Unauthorized', code: 401 });
      // The relay's own readiness checks may reach the API server meanwhile; the refused request must not.
      expect(upstreamRequestsTo('/api/v1/namespaces/default/secrets')).toHaveLength(before);
      if (mode === 'tunnel') {
        // The hub refused it before anything entered the tunnel: the relay never saw it.
        expect(stack.auditRecords().some((r) => r.reason === reason)).toBe(false);
        return;
      }
      await until(() => stack.auditRecords().some((r) => r.reason === reason), 2_000, 'the audit record');
      const record = stack.auditRecords().filter((r) => r.reason === reason).at(-1)!;
      expect(record).toMatchObject({ decision: 'denied-by-relay', status, user: null, resource: 'secrets', verb: 'list' });
    });

    it.each(['Impersonate-User', 'impersonate-group', 'IMPERSONATE-UID', 'Impersonate-Extra-scopes'])(
      'answers a client sending %s with 403 (kubectl --as and friends)',
      async (header) => {
        const before = stack.fake.requests.length;
        const answer = await get('/api/v1/namespaces/default/pods', { [header]: 'system:admin' });
        expect(answer.status).toBe(403);
        expect(answer.json()).toMatchObject({ kind: 'Status', reason: 'Forbidden', code: 403 });
        expect(stack.fake.requests.length).toBe(before);
      },
    );

    // HTTP/2 has no Connection header (RFC 9113 §8.2.2: a stream carrying one is malformed, and Node's client will not send it).
    if (clientProtocol === 'http/1.1') it('refuses Connection: Impersonate-User (the hop-by-hop trick) instead of forwarding either header', async () => {
      const before = stack.fake.requests.length;
      const answer = await get('/api/v1/pods', { connection: 'keep-alive, Impersonate-User', 'impersonate-user': 'system:admin' });
      expect(answer.status).toBe(403);
      expect(stack.fake.requests.length).toBe(before);
    });

    it('does not pass X-Remote-* or X-Forwarded-For, and audits the real source address', async () => {
      const answer = await get('/api/v1/namespaces/default/pods/web', { 'x-remote-user': 'admin', 'x-forwarded-for': '203.0.113.9', forwarded: 'for=203.0.113.9' });
      expect(answer.status).toBe(200);
      const seen = stack.fake.lastRequest()!;
      expect(Object.keys(seen.headers).filter((h) => h.startsWith('x-remote') || h.startsWith('x-forwarded') || h === 'forwarded')).toEqual([]);
      const record = await stack.awaitRecord('/api/v1/namespaces/default/pods/web', (r) => r.verb === 'get');
      expect(record.sourceIp).toMatch(/127\.0\.0\.1$/);
      expect(record).toMatchObject({ verb: 'get', namespace: 'default', resource: 'pods', name: 'web', decision: 'allowed', status: 200 });
    });

    it('refuses an h2c upgrade with 400 before contacting the API server', async () => {
      const before = stack.fake.requests.length;
      const answer = await rawUpgrade('/api/v1/namespaces/default/pods', 'h2c', []);
      expect(answer.head).toMatch(/^HTTP\/1\.1 400/);
      expect(stack.fake.requests.length).toBe(before);
    });

    it('counts refusals by reason in the metrics and is ready on the admin listener', async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${stack.relay.adminPort}/metrics`)).text();
      if (mode === 'direct') expect(metrics).toMatch(/kube_relay_authentication_failures_total\{reason="missing-token"\} [1-9]/);
      else expect(metrics).not.toMatch(/kube_relay_authentication_failures_total\{reason="missing-token"\}/); // the hub refused those
      expect(metrics).toMatch(/kube_relay_requests_total\{cluster="prod-eu",verb="list",code="200",decision="allowed"\} [1-9]/);
      expect((await fetch(`http://127.0.0.1:${stack.relay.adminPort}/readyz`)).status).toBe(200);
      expect((await get('/metrics')).status).toBe(200);
      expect(stack.fake.lastRequest()!.url).toBe('/metrics');
    });
  });

  describe('streaming', () => {
    it('answers a watch at once, before its first event, as kube-apiserver flushes the headers', async () => {
      const watchArrived = stack.fake.nextWatch();
      const req = streamingRequest(`${stack.relay.url}/api/v1/namespaces/default/pods?watch=1`, { headers: { authorization: `Bearer ${token}` }, ca: stack.caPem, protocol: clientProtocol });
      req.end();
      await watchArrived;
      // From the moment the API server has the watch: its headers, flushed at once, are due within 2 s.
      const response = await Promise.race([req.response, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no response headers within 2 s of an idle watch')), 2_000))]);
      req.destroy();
      expect(response.status).toBe(200);
    });

    it('delivers each watch event before the next one is sent upstream, and a client abort closes the upstream watch', async () => {
      const received: string[] = [];
      let onLine: (() => void) | undefined;
      const req = streamingRequest(`${stack.relay.url}/api/v1/namespaces/default/pods?watch=true&resourceVersion=10`, { headers: { authorization: `Bearer ${token}` }, ca: stack.caPem, protocol: clientProtocol });
      void req.response.then(({ body }) => {
        let buffered = '';
        body.on('data', (chunk: Buffer) => {
          buffered += chunk.toString('utf8');
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          received.push(...lines);
          if (lines.length > 0) onLine?.();
        });
        body.on('error', () => undefined);
      });
      req.end();
      const watch = await stack.fake.nextWatch();
      for (let i = 1; i <= 3; i++) {
        const arrived = new Promise<void>((resolve) => (onLine = resolve));
        await watch.send({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: `pod-${i}` } } });
        await arrived;
        expect(received.map((line) => (JSON.parse(line) as { object: { metadata: { name: string } } }).object.metadata.name)).toEqual(
          Array.from({ length: i }, (_, j) => `pod-${j + 1}`),
        );
      }
      req.destroy();
      await watch.closed;
      await until(() => recordFor('/api/v1/namespaces/default/pods').some((r) => r.verb === 'watch'), 2_000, 'the watch audit record');
    });

    // Declared only against an HTTP/2 API server (an HTTP/1.1 one opens a connection per watch by design).
    if (options.upstream === 'h2') it('carries many concurrent watches on one HTTP/2 connection to the API server', async () => {
      const clients = Array.from({ length: 12 }, (_, i) => watchOver(stack.relay.url, stack.caPem, `/api/v1/namespaces/many-${i}/pods?watch=1`, token));
      const watches = await Promise.all(clients.map(() => stack.fake.nextWatch()));
      expect(watches.map((w) => new URL(w.url, 'https://x').pathname).sort()).toEqual(clients.map((_, i) => `/api/v1/namespaces/many-${i}/pods`).sort());
      expect(stack.fake.requests.filter((r) => r.url.includes('/namespaces/many-')).map((r) => r.httpVersion)).toEqual(Array(12).fill('2.0'));
      expect(stack.fake.openSessions()).toBe(1);
      await Promise.all(watches.map((w, i) => w.send(podEvent(`p${i}`))));
      await until(() => clients.every((c) => c.body().includes('"ADDED"')), 10_000, 'an event on every watch');
      watches.forEach((w) => w.end());
      expect(await Promise.all(clients.map((c) => c.ended))).toEqual(Array(12).fill('complete'));
    });

    it('passes a WebSocket exec session (v5.channel.k8s.io, bearer subprotocol) both ways and audits it once', async () => {
      const target = '/api/v1/namespaces/default/pods/web/exec?command=cat&container=app&stdin=true&stdout=true';
      const bearer = BEARER_SUBPROTOCOL_PREFIX + Buffer.from(token).toString('base64url');
      const socket = new WebSocket(`${stack.relay.url.replace('https', 'wss')}${target}`, ['v5.channel.k8s.io', bearer], { ca: stack.caPem, perMessageDeflate: false });
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
      expect(socket.protocol).toBe('v5.channel.k8s.io');
      const stdout: Buffer[] = [];
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.on('message', (data: Buffer) => {
        if (data[0] === 1) stdout.push(data.subarray(1));
      });
      socket.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello through the relay\n')]));
      await until(() => Buffer.concat(stdout).toString() === 'hello through the relay\n', 5_000, 'the echo');
      socket.send(Buffer.from([255, 0]));
      await closed;

      const seen = stack.fake.requests.filter((r) => r.url === target).at(-1)!;
      // Upgrades go over HTTP/1.1 whatever the API server offers (DESIGN §3.5).
      expect(seen.httpVersion).toBe('1.1');
      expect(seen.headers['sec-websocket-protocol']).toBe('v5.channel.k8s.io');
      expect(seen.headers['impersonate-user']).toBe('agent:deployer');
      expect(seen.headers.authorization).toBe(`Bearer ${RELAY_SA_TOKEN}`);
      await until(() => recordFor('/api/v1/namespaces/default/pods/web/exec').length === 1, 3_000, 'the session record');
      const [record] = recordFor('/api/v1/namespaces/default/pods/web/exec');
      expect(record).toMatchObject({ verb: 'exec', status: 101, decision: 'allowed', command: ['cat'], container: 'app', user: 'agent:deployer' });
      expect(record!.protocol).toContain('v5.channel.k8s.io');
      expect(record!.bytesIn).toBeGreaterThan(24);
      expect(record!.bytesOut).toBeGreaterThan(24);
      expect(Date.parse(record!.endedAt!)).toBeGreaterThanOrEqual(Date.parse(record!.startedAt!));
    });

    it('passes a raw SPDY/3.1 upgrade (kubectl port-forward over SPDY is a POST) and audits it once', async () => {
      const path = '/api/v1/namespaces/default/pods/web/portforward?ports=8080';
      const answer = await rawUpgrade(path, 'SPDY/3.1', [`Authorization: Bearer ${token}`, 'X-Stream-Protocol-Version: portforward.k8s.io'], 'POST', Buffer.from('spdy-bytes-out'));
      expect(answer.head).toMatch(/^HTTP\/1\.1 101/);
      expect(answer.head.toLowerCase()).toContain('x-stream-protocol-version: portforward.k8s.io');
      expect(answer.rest.toString()).toBe('spdy-bytes-out');
      await until(() => recordFor('/api/v1/namespaces/default/pods/web/portforward').length === 1, 3_000, 'the session record');
      expect(recordFor('/api/v1/namespaces/default/pods/web/portforward')[0]).toMatchObject({ verb: 'portforward', status: 101, ports: ['8080'], method: 'POST' });
    });
    it('keeps a half-closed upgraded stream open the other way: the client ends its side and still gets every byte back (echo | nc)', async () => {
      const payload = Buffer.alloc(300 * 1024, 'h'); // more than one tunnel window
      const answer = await rawUpgrade('/api/v1/namespaces/default/pods/web/portforward?ports=8080', 'SPDY/3.1', [`Authorization: Bearer ${token}`, 'X-Stream-Protocol-Version: portforward.k8s.io'], 'POST', payload, { halfClose: true });
      expect(answer.head).toMatch(/^HTTP\/1\.1 101/);
      expect(answer.rest.length).toBe(payload.length);
      expect(answer.endedCleanly).toBe(true);
    });

    it('gets a slow client every byte of an exec whose command exits at once (head -c): the relay never ends the upstream first (issue 14)', async () => {
      // More than the kernel's socket buffers along the path hold: part of the answer is still in the relay's
      // (and the tunnel's) own buffers when the upstream closes, and must be flushed, not dropped.
      const payload = randomBytes(16 * 1024 * 1024);
      const path = `/api/v1/namespaces/default/pods/web/exec?command=head&command=-c&command=${payload.length}&container=app&stdin=true&stdout=true`;
      const answer = await slowReaderUpgrade(path, [`Authorization: Bearer ${token}`, 'X-Stream-Protocol-Version: v4.channel.k8s.io'], payload);
      expect(answer.head).toMatch(/^HTTP\/1\.1 101/);
      expect({ bytes: answer.bytes, digest: answer.digest }).toEqual({ bytes: payload.length, digest: sha256(payload) });
      expect(answer.endedCleanly).toBe(true);
      // The fake closed the session itself, after its last byte; nothing of the relay's closed it earlier.
      expect(stack.fake.requests.filter((r) => r.url === path).at(-1)?.closedByClient).toBe(false);
    });
  });

  describe('audit trail', () => {
    it('writes every DESIGN §5 field for a request', async () => {
      await get('/api/v1/namespaces/kube-system/configmaps/cluster-info?resourceVersion=0', { 'kubectl-command': 'kubectl get', 'kubectl-session': 'session-1' });
      const record = await stack.awaitRecord('/api/v1/namespaces/kube-system/configmaps/cluster-info');
      for (const field of ['time', 'requestId', 'cluster', 'mode', 'user', 'groups', 'tokenId', 'sourceIp', 'userAgent', 'method', 'path', 'query', 'verb', 'namespace', 'resource', 'subresource', 'name', 'status', 'decision', 'durationMs', 'bytesIn', 'bytesOut']) {
        expect(record, field).toHaveProperty(field);
      }
      expect(record).toMatchObject({
        cluster: 'prod-eu',
        mode,
        user: 'agent:deployer',
        groups: ['acme/sre', 'acme/platform'],
        method: 'GET',
        query: 'resourceVersion=0',
        verb: 'get',
        namespace: 'kube-system',
        resource: 'configmaps',
        name: 'cluster-info',
        subresource: '',
        status: 200,
        decision: 'allowed',
        kubectlCommand: 'kubectl get',
        kubectlSession: 'session-1',
      });
      expect(record.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(record.bytesOut).toBeGreaterThan(0);
    });

    it('never contains a token or the relay credential', () => {
      const text = readFileSync(stack.auditFile, 'utf8');
      expect(text.length).toBeGreaterThan(0);
      expect(text).not.toContain(token.split('.')[2]!);
      expect(text).not.toContain(RELAY_SA_TOKEN);
      expect(text).not.toContain('krl_agent_');
    });
  });

  /** Sends one upgrade request on a raw TLS socket and returns the response head and whatever bytes followed. */
  /** An upgrade on a raw TLS socket; with `halfClose`, the client ends its side after the payload and reads until the relay ends. */
  function rawUpgrade(
    path: string,
    protocol: string,
    extraHeaders: string[],
    method = 'GET',
    payload?: Buffer,
    options: { halfClose?: boolean } = {},
  ): Promise<{ head: string; rest: Buffer; endedCleanly: boolean }> {
    return new Promise((resolve, reject) => {
      const url = new URL(stack.relay.url);
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.caPem, servername: 'localhost' }, () => {
        socket.write([`${method} ${url.pathname.replace(/\/$/, '')}${path} HTTP/1.1`, `Host: ${url.host}`, 'Connection: Upgrade', `Upgrade: ${protocol}`, ...extraHeaders, '', ''].join('\r\n'));
      });
      let buffer = Buffer.alloc(0);
      let head: string | undefined;
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (head === undefined) {
          const end = buffer.indexOf('\r\n\r\n');
          if (end === -1) return;
          head = buffer.subarray(0, end).toString('latin1');
          buffer = buffer.subarray(end + 4);
          if (head.startsWith('HTTP/1.1 101') && payload) {
            if (options.halfClose) socket.end(payload);
            else socket.write(payload);
          } else if (!head.startsWith('HTTP/1.1 101')) {
            socket.destroy();
            resolve({ head, rest: buffer, endedCleanly: false });
            return;
          }
        }
        if (payload && buffer.length >= payload.length && !options.halfClose) {
          socket.destroy();
          resolve({ head: head!, rest: buffer, endedCleanly: false });
        }
      });
      let ended = false;
      socket.on('end', () => (ended = true));
      socket.on('error', reject);
      socket.on('close', () => resolve({ head: head ?? '', rest: buffer, endedCleanly: ended }));
    });
  }

  /**
   * A SPDY upgrade through the relay whose client sends `payload` (and never
   * ends its side, as kubectl's SPDY exec does not) and reads nothing for a
   * while, so the answer backs up through the relay (and the tunnel); then
   * reads to the end.
   */
  function slowReaderUpgrade(path: string, extraHeaders: string[], payload: Buffer): Promise<{ head: string; bytes: number; digest: string; endedCleanly: boolean }> {
    return new Promise((resolve, reject) => {
      const url = new URL(stack.relay.url);
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.caPem, servername: 'localhost' }, () => {
        socket.write([`POST ${url.pathname.replace(/\/$/, '')}${path} HTTP/1.1`, `Host: ${url.host}`, 'Connection: Upgrade', 'Upgrade: SPDY/3.1', ...extraHeaders, '', ''].join('\r\n'));
      });
      const hash = createHash('sha256');
      let bytes = 0;
      let buffer = Buffer.alloc(0);
      let head: string | undefined;
      let ended = false;
      socket.on('data', (chunk: Buffer) => {
        if (head !== undefined) {
          hash.update(chunk);
          bytes += chunk.length;
          return;
        }
        buffer = Buffer.concat([buffer, chunk]);
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        head = buffer.subarray(0, end).toString('latin1');
        const rest = buffer.subarray(end + 4);
        hash.update(rest);
        bytes += rest.length;
        if (!head.startsWith('HTTP/1.1 101')) return;
        socket.write(payload);
        socket.pause();
        setTimeout(() => socket.resume(), 500);
      });
      socket.on('end', () => (ended = true));
      socket.on('error', reject);
      socket.on('close', () => resolve({ head: head ?? '', bytes, digest: hash.digest('hex'), endedCleanly: ended }));
    });
  }

  describe('revocation (DESIGN §2)', () => {
    it('refuses a revoked agent within one poll (direct) or push (tunnel) and ends its open watch with an ERROR event', async () => {
      const handle = await stack.registry();
      const key = await handle.registry.createAgent('short-lived', 'acme', ['sre']);
      await handle.close();
      const agentToken = await stack.token(key);
      const client = watchOver(stack.relay.url, stack.caPem, '/api/v1/namespaces/default/pods?watch=1', agentToken);
      const watch = await stack.fake.nextWatch();
      await watch.send(podEvent('a'));
      await until(() => client.body().includes('"a"'), 5_000, 'the event');

      const revoke = await stack.registry();
      await revoke.registry.revokeAgent('short-lived');
      await revoke.close();
      // Ended, not cut: kubectl get -w prints the Status instead of stopping without a word.
      expect(await client.ended).toBe('complete');
      expect(client.lines()).toEqual([podEvent('a'), { type: 'ERROR', object: expect.objectContaining({ kind: 'Status', status: 'Failure', code: 401, reason: 'Unauthorized' }) }]);
      await watch.closed;
      const answer = await request(`${stack.relay.url}/api/v1/namespaces/default/pods`, { headers: { authorization: `Bearer ${agentToken}` }, ca: stack.caPem });
      expect(answer.status).toBe(401);
      // Through the tunnel the watch was ended by the revocation the hub pushed; the hub, which learnt it first,
      // refuses the new request before it enters the tunnel.
      if (mode === 'tunnel') return;
      await until(() => stack.auditRecords().some((r) => r.reason === 'agent-revoked'), 2_000, 'the refusal record');
      expect(stack.auditRecords().find((r) => r.reason === 'agent-revoked')).toMatchObject({ user: 'agent:short-lived', decision: 'denied-by-relay', status: 401 });
    }, 20_000);

    it("cut inside an event, a revoked agent's watch gets the rest of that event, nothing after it, then the ERROR event", async () => {
      const handle = await stack.registry();
      const key = await handle.registry.createAgent('cut-mid-event', 'acme', ['sre']);
      await handle.close();
      const agentToken = await stack.token(key);
      const client = watchOver(stack.relay.url, stack.caPem, '/api/v1/namespaces/default/pods?watch=true', agentToken);
      const watch = await stack.fake.nextWatch();
      const second = `${JSON.stringify(podEvent('second'))}\n`;
      await watch.write(`${JSON.stringify(podEvent('first'))}\n${second.slice(0, 25)}`);
      await until(() => client.body().endsWith(second.slice(0, 25)), 5_000, 'the partial event');
      // As the revocation feed (direct) or the hub's push (tunnel) would tell the relay.
      stack.relay.revocations.apply([{ user: 'agent:cut-mid-event', revokedAt: new Date().toISOString() }]);
      await watch.write(second.slice(25) + `${JSON.stringify(podEvent('third'))}\n`).catch(() => undefined);
      expect(await client.ended).toBe('complete');
      expect(client.lines()).toEqual([podEvent('first'), podEvent('second'), { type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code: 401, reason: 'Unauthorized' }) }]);
      await watch.closed;
    });
  });
}
