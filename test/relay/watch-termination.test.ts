/**
 * A JSON watch the relay ends itself ends with a final ERROR event at an
 * event boundary, then a clean end (watch-termination.ts), on a loopback
 * upstream and a proxy that pipes it through as http-proxy does.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubernetesStatus } from '../../src/request-stages/errors.js';
import { finalWatchStatus, isJsonWatchResponse, WatchTermination } from '../../src/relay/watch-termination.js';
import { until } from '../helpers/http.js';

const REVOKED = kubernetesStatus(401, 'the agent was revoked: kube-relay ended this watch');
const event = (name: string) => `${JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', metadata: { name } } })}\n`;
const finalLine = `${JSON.stringify({ type: 'ERROR', object: REVOKED })}\n`;

interface UpstreamWatch {
  write(bytes: string): void;
  end(): void;
  destroy(): void;
  closed: Promise<void>;
}

let upstreamServer: http.Server;
let proxyServer: http.Server;
const upstreamWatches: UpstreamWatch[] = [];
const terminations: WatchTermination[] = [];
let graceMs = 5_000;

beforeAll(async () => {
  upstreamServer = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    upstreamWatches.push({
      write: (bytes) => res.write(bytes),
      end: () => res.end(),
      destroy: () => res.destroy(),
      closed: new Promise((resolve) => res.on('close', () => resolve())),
    });
  });
  proxyServer = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const upstreamPort = (upstreamServer.address() as AddressInfo).port;
    http.get({ port: upstreamPort, host: '127.0.0.1', path: req.url, agent: false }, (upstream) => {
      terminations.push(new WatchTermination(upstream, res, graceMs));
      res.writeHead(upstream.statusCode!, upstream.headers);
      upstream.pipe(res);
    });
  });
  await Promise.all([upstreamServer, proxyServer].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))));
});

afterAll(async () => {
  await Promise.all([upstreamServer, proxyServer].map((server) => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve())))));
});

/** A watch through the proxy: the body as it arrives, and whether the response ended cleanly (chunked terminator) or was cut. */
async function openWatch(): Promise<{ upstream: UpstreamWatch; termination: WatchTermination; body: () => string; ended: Promise<'complete' | 'cut'> }> {
  const before = upstreamWatches.length;
  let body = '';
  const ended = new Promise<'complete' | 'cut'>((resolve) => {
    const req = http.get({ port: (proxyServer.address() as AddressInfo).port, host: '127.0.0.1', path: '/api/v1/pods?watch=1', agent: false }, (res) => {
      res.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      res.on('error', () => undefined);
      res.on('close', () => resolve(res.complete ? 'complete' : 'cut'));
    });
    req.on('error', () => resolve('cut'));
  });
  await until(() => upstreamWatches.length > before && terminations.length > before, 5_000, 'the watch to reach the upstream');
  return { upstream: upstreamWatches[before]!, termination: terminations[before]!, body: () => body, ended };
}

describe('a JSON watch the relay ends', () => {
  it('gets the final ERROR event right after the last complete event, then a clean end, and the upstream watch is closed', async () => {
    const watch = await openWatch();
    watch.upstream.write(event('a'));
    watch.upstream.write(event('b'));
    await until(() => watch.body() === event('a') + event('b'), 5_000, 'both events');
    watch.termination.end(REVOKED);
    expect(await watch.ended).toBe('complete');
    expect(watch.body()).toBe(event('a') + event('b') + finalLine);
    await watch.upstream.closed;
  });

  it('cut inside an event: gets the rest of that event, nothing after it, then the final event', async () => {
    const watch = await openWatch();
    const second = event('second');
    watch.upstream.write(event('first') + second.slice(0, 20));
    await until(() => watch.body().length === event('first').length + 20, 5_000, 'the partial event');
    watch.termination.end(REVOKED);
    // The rest of the event and a whole further one arrive together: only the rest is forwarded.
    watch.upstream.write(second.slice(20) + event('third'));
    expect(await watch.ended).toBe('complete');
    expect(watch.body()).toBe(event('first') + second + finalLine);
    for (const line of watch.body().trimEnd().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    await watch.upstream.closed;
  });

  it('cut inside an event that never ends: cut without a final event once the grace period is over', async () => {
    graceMs = 200;
    try {
      const watch = await openWatch();
      watch.upstream.write(event('first') + '{"type":"ADDED","obj');
      await until(() => watch.body().endsWith('"obj'), 5_000, 'the partial event');
      watch.termination.end(REVOKED);
      expect(await watch.ended).toBe('cut');
      expect(watch.body()).not.toContain('ERROR');
      await watch.upstream.closed;
    } finally {
      graceMs = 5_000;
    }
  });

  it('cut inside an event the upstream then breaks off: cut without a final event', async () => {
    const watch = await openWatch();
    watch.upstream.write('{"type":"ADDED","obj');
    await until(() => watch.body().endsWith('"obj'), 5_000, 'the partial event');
    watch.termination.end(REVOKED);
    watch.upstream.destroy();
    expect(await watch.ended).toBe('cut');
    expect(watch.body()).not.toContain('ERROR');
  });

  it('ended twice writes one final event', async () => {
    const watch = await openWatch();
    watch.upstream.write(event('a'));
    await until(() => watch.body() === event('a'), 5_000, 'the event');
    watch.termination.end(REVOKED);
    watch.termination.end(finalWatchStatus('max-stream-duration'));
    expect(await watch.ended).toBe('complete');
    expect(watch.body()).toBe(event('a') + finalLine);
  });
});

describe('which answers take a final event', () => {
  const answer = (statusCode: number, headers: Record<string, string>) => ({ statusCode, headers });
  it.each([
    ['watch', 200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, true],
    ['watch', 200, { 'content-type': 'Application/JSON; charset=utf-8' }, true],
    ['watch', 200, { 'content-type': 'application/vnd.kubernetes.protobuf;stream=watch' }, false],
    ['watch', 200, { 'content-type': 'application/json', 'content-length': '120' }, false],
    ['watch', 403, { 'content-type': 'application/json' }, false],
    ['get', 200, { 'content-type': 'application/json' }, false],
    ['get', 200, { 'content-type': 'text/plain' }, false],
  ])('a %s answered %d with %j: %s', (verb, statusCode, headers, expected) => {
    expect(isJsonWatchResponse(verb, answer(statusCode, headers))).toBe(expected);
  });
});

describe('the final Status says why', () => {
  it('a revoked agent: 401 Unauthorized', () => {
    expect(finalWatchStatus('agent-revoked')).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 401, reason: 'Unauthorized', message: expect.stringContaining('revoked') });
  });

  it('the maximum stream duration: 504 Timeout', () => {
    expect(finalWatchStatus('max-stream-duration')).toMatchObject({ kind: 'Status', status: 'Failure', code: 504, reason: 'Timeout', message: expect.stringContaining('--max-stream-duration') });
  });
});
