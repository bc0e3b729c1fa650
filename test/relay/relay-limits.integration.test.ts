/** Upgrade fallback and the maximum stream duration, on a stack whose API server refuses upgrades. */
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../../src/log.js';
import { startRelay } from '../../src/relay/server.js';
import { request } from '../helpers/http.js';
import { RELAY_SA_TOKEN, type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let token: string;
const logLines: string[] = [];

beforeAll(async () => {
  stack = await startStack({
    fake: { rejectUpgradesWith: 400 },
    relay: { maxStreamDurationMs: 1_000, adminListen: { host: '127.0.0.1', port: 0 } },
    relayLog: createLogger('debug', {}, (line) => logLines.push(line)),
  });
  token = await stack.token();
});

afterAll(async () => {
  await stack?.close();
});

describe('upgrades the API server refuses (DESIGN §3.5)', () => {
  it('returns the non-101 answer as the API server gave it, so kubectl can fall back to SPDY', async () => {
    const socket = new WebSocket(`${stack.relay.url.replace('https', 'wss')}/api/v1/namespaces/default/pods/web/exec?command=ls`, ['v5.channel.k8s.io'], {
      ca: stack.caPem,
      headers: { authorization: `Bearer ${token}` },
    });
    const status = await new Promise<number>((resolve, reject) => {
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      socket.on('open', () => reject(new Error('the upgrade should have been refused')));
      socket.on('error', () => undefined);
    });
    socket.terminate();
    expect(status).toBe(400);
    expect(stack.fake.lastRequest()!.upgrade).toBe(true);
  });
});

describe('maximum stream duration (DESIGN §3.6)', () => {
  it('cuts a watch that outlives --max-stream-duration', async () => {
    const startedAt = Date.now();
    const ended = new Promise<void>((resolve) => {
      const req = https.request(`${stack.relay.url}/api/v1/namespaces/default/pods?watch=1`, { headers: { authorization: `Bearer ${token}` }, ca: stack.caPem, agent: false });
      req.on('response', (res) => {
        res.resume();
        res.on('close', () => resolve());
        res.on('error', () => resolve());
      });
      req.on('error', () => resolve());
      req.end();
    });
    const watch = await stack.fake.nextWatch();
    await ended;
    await watch.closed;
    const elapsed = Date.now() - startedAt;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(5_000);
  });
});

describe('logs', () => {
  it('never contain a token, an API key or the relay credential, even at debug level', async () => {
    await request(`${stack.relay.url}/api/v1/pods`, { headers: { authorization: `Bearer ${token}` }, ca: stack.caPem });
    await request(`${stack.relay.url}/api/v1/pods`, { headers: { authorization: `Bearer ${token}x` }, ca: stack.caPem });
    await request(`${stack.relay.url}/api/v1/pods`, { headers: { authorization: `Bearer ${token}`, 'impersonate-user': 'admin' }, ca: stack.caPem });
    const text = logLines.join('');
    expect(text).toContain('request refused');
    expect(text).not.toContain(token.split('.')[2]!);
    expect(text).not.toContain(RELAY_SA_TOKEN);
    expect(text).not.toContain(stack.agentKey);
  });
});

describe('readiness (admin listener)', () => {
  it('is ready with keys loaded and the API server answering', async () => {
    const res = await fetch(`http://127.0.0.1:${stack.relay.adminPort}/readyz`);
    expect(res.status).toBe(200);
  });

  it('is not ready while the API server cannot be reached, and says what it waits for', async () => {
    const relay = await startRelay({
      mode: 'direct',
      cluster: 'prod-eu',
      issuer: stack.issuer.url,
      dataDir: stack.dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      issuerCa: stack.caPem,
      upstream: { server: new URL('https://127.0.0.1:1'), tls: { rejectUnauthorized: true }, authorization: () => 'Bearer x', description: 'nowhere' },
      adminListen: { host: '127.0.0.1', port: 0 },
      maxStreamDurationMs: 0,
      pollRevocations: false,
      log: createLogger('error'),
      audit: { file: `${stack.dataDir}/unready-audit.jsonl` },
    });
    try {
      const res = await fetch(`http://127.0.0.1:${relay.adminPort}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain('the Kubernetes API server');
      expect((await fetch(`http://127.0.0.1:${relay.adminPort}/healthz`)).status).toBe(200);
    } finally {
      await relay.close();
    }
  });
});
