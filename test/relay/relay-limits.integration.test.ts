/** Upgrade fallback and the maximum stream duration, on a stack whose API server refuses upgrades. */
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack({ fake: { rejectUpgradesWith: 400 }, relay: { maxStreamDurationMs: 1_000 } });
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
