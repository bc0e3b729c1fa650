/**
 * Resource limits an attacker would probe (issue 7), in both modes: headers
 * and bodies trickled in (slow-loris) are cut with a 408 Status, and one
 * agent opening thousands of long-running requests gets a 429 Status past
 * its quota while its first ones keep working.
 */
import https from 'node:https';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/http.js';
import { expectExactlyAgentIdentity, sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const HEADERS_TIMEOUT_MS = 600;
const REQUEST_TIMEOUT_MS = 2_000;
const STREAMS_PER_AGENT = 1_500;
const WATCHES = 2_000;
/**
 * Watches waiting for their answer at any moment. Opening all 2000 at once overflows the listen backlog (Node's
 * default, 511): on a loaded machine the kernel then resets some connections before TLS starts (SYN cookies that
 * fail validation, seen as "read ECONNRESET"), which says nothing about the relay's quota.
 */
const CONNECTING_AT_ONCE = 100;

describe.each(['direct', 'tunnel'] as const)('limits, %s mode', (mode) => {
  let stack: Stack;
  let token: string;

  beforeAll(async () => {
    const limits = { headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS };
    stack = await startStack({ mode, relay: { limits, maxStreamsPerAgent: STREAMS_PER_AGENT }, issuer: { limits } });
    token = await stack.token();
  });

  afterAll(async () => {
    await stack?.close();
  });

  /** Opens a TLS connection, writes `parts` one by one `gapMs` apart, and returns what comes back and when. */
  function trickle(parts: string[], gapMs: number): Promise<{ answer: string; afterMs: number }> {
    const url = new URL(stack.relay.url);
    const startedAt = Date.now();
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.caPem }, () => {
        let next = 0;
        const write = () => {
          if (next < parts.length && !socket.destroyed) socket.write(parts[next++]!);
          if (next < parts.length) setTimeout(write, gapMs).unref();
        };
        write();
      });
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
      socket.on('close', () => resolve({ answer, afterMs: Date.now() - startedAt }));
      // A part written just as the server hangs up fails with EPIPE or ECONNRESET: the answer is what counts.
      socket.on('error', (err) => (answer === '' ? reject(err) : undefined));
    });
  }

  const base = () => new URL(stack.relay.url).pathname.replace(/\/$/, '');
  const host = () => new URL(stack.relay.url).host;

  it('cuts a client that trickles its headers (slow-loris) with 408 and a Status', async () => {
    const lines = [`GET ${base()}/api/v1/namespaces/default/pods HTTP/1.1\r\n`, `Host: ${host()}\r\n`, ...Array.from({ length: 50 }, (_, i) => `X-Slow-${i}: a\r\n`)];
    const before = stack.fake.requests.length;
    const { answer, afterMs } = await trickle(lines, 100);
    // Cut while the client was still trickling (it would take 5 s), which only the headers deadline does.
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"kind":"Status"');
    expect(afterMs).toBeLessThan(lines.length * 100);
    expect(stack.fake.requests.length).toBe(before);
  });

  it('cuts a client that trickles its body with 408, and the API server sees its request aborted', async () => {
    const head = `POST ${base()}/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`;
    const parts = [head, ...Array.from({ length: 100 }, () => '{')];
    const { answer, afterMs } = await trickle(parts, 100);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"kind":"Status"');
    expect(afterMs).toBeLessThan(parts.length * 100); // cut mid-body, by the request deadline
    // The relay streams bodies, so the request had started upstream; it must not linger there.
    const upstream = stack.fake.requests.filter((r) => r.url === '/api/v1/namespaces/default/configmaps').at(-1);
    if (upstream) await until(() => upstream.closedByClient, 3_000, 'the upstream request to be aborted');
  });

  it('leaves a slow but steady body alone when it completes within the request deadline', async () => {
    const body = '{"kind":"ConfigMap"}';
    const head = `POST ${base()}/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const { answer, afterMs } = await trickle([head, ...body.match(/.{1,5}/g)!], 100);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    // ...and closes the connection as the client asked, rather than after the 5 s keep-alive timeout.
    expect(afterMs).toBeLessThan(4_000);
  });

  it('judges each pipelined request on one connection on its own: a refusal in the middle forwards nothing of it', async () => {
    const line = (target: string, extra = '') => `GET ${base()}${target} HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\n${extra}`;
    const pipelined =
      `${line('/api/v1/namespaces/pipe-1/pods')}\r\n` +
      `${line('/api/v1/namespaces/pipe-2/secrets', 'Impersonate-User: system:admin\r\n')}\r\n` +
      `${line('/api/v1/namespaces/pipe-3/pods', 'Connection: close\r\n')}\r\n`;
    const before = stack.fake.requests.length;
    const { answer } = await trickle([pipelined], 0);
    expect([...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]))).toEqual([200, 403, 200]);
    const upstream = stack.fake.requests.slice(before).filter((r) => r.url.includes('/pipe-'));
    // Node hands pipelined requests over as they are parsed, so they may reach the API server in any order; the answers keep theirs.
    expect(upstream.map((r) => r.url).sort()).toEqual(['/api/v1/namespaces/pipe-1/pods', '/api/v1/namespaces/pipe-3/pods']);
    for (const seen of upstream) expectExactlyAgentIdentity(seen, 'agent:deployer', ['acme/platform', 'acme/sre']);
  });

  type WatchAnswer = { close: () => void } | { refusal: string } | { failure: string };

  /** One watch, resolved once it is answered: admitted (200, and it stays open) or refused (with its body), or failed. */
  function openWatch(agent: https.Agent): Promise<WatchAnswer> {
    return new Promise((resolve) => {
      const req = https.get(`${stack.relay.url}/api/v1/namespaces/default/pods?watch=1`, { ca: stack.caPem, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode === 200) {
          res.on('error', () => undefined);
          resolve({ close: () => req.destroy() });
          return;
        }
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ refusal: `${res.statusCode} ${body}` }));
      });
      // Recorded rather than thrown, so that every watch is answered and closed before the test reports it.
      req.on('error', (err) => resolve({ failure: `a watch failed instead of being answered: ${err.message}` }));
    });
  }

  it(`gives one agent ${STREAMS_PER_AGENT} long-running requests of ${WATCHES} and a 429 Status for the rest; the first keep working, and slots come back`, async () => {
    // A fresh 60-second token: on a loaded machine the earlier tests and this one's 2000 watches take a good part of a minute.
    token = await stack.token();
    const agent = new https.Agent({ maxSockets: Infinity, keepAlive: false });
    const answers: WatchAnswer[] = [];
    try {
      // A sliding window of CONNECTING_AT_ONCE watches waiting for their answer; admitted ones stay open, so the agent
      // still holds all it was given at once when the last one is refused.
      let started = 0;
      const openInTurn = async () => {
        while (started < WATCHES) {
          started++;
          answers.push(await openWatch(agent));
        }
      };
      await Promise.all(Array.from({ length: CONNECTING_AT_ONCE }, openInTurn));

      expect(answers.flatMap((answer) => ('failure' in answer ? [answer.failure] : []))).toEqual([]);
      const opened = answers.flatMap((answer) => ('close' in answer ? [answer] : []));
      const refusals = answers.flatMap((answer) => ('refusal' in answer ? [answer.refusal] : []));
      expect(opened).toHaveLength(STREAMS_PER_AGENT);
      expect(refusals).toHaveLength(WATCHES - STREAMS_PER_AGENT);
      expect(refusals.every((r) => r.startsWith('429 ') && r.includes('"kind":"Status"') && r.includes('long-running'))).toBe(true);
      // Short requests are not long-running: the agent can still list while it holds its quota.
      expect((await sendRaw({ url: stack.relay.url, ca: stack.caPem }, `GET ${base()}/api/v1/namespaces/default/pods HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)).status).toBe(200);
      // Refused requests never reached the API server.
      const watchesUpstream = stack.fake.requests.filter((r) => r.url === '/api/v1/namespaces/default/pods?watch=1' && !r.closedByClient).length;
      expect(watchesUpstream).toBe(STREAMS_PER_AGENT);

      for (const watch of opened.slice(0, 10)) watch.close();
      await until(
        async () => (await sendRaw({ url: stack.relay.url, ca: stack.caPem }, `GET ${base()}/api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\n\r\n`, { headOnly: true })).status === 200,
        15_000,
        'a slot to come back',
      );
    } finally {
      for (const answer of answers) if ('close' in answer) answer.close();
      agent.destroy();
    }
  }, 120_000);
});
