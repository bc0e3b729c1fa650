/**
 * Attacks on the issuer's own endpoints (issue 14): guessing API keys at
 * `/v1/token`, and reading the whole revocation history from
 * `/v1/revocations`.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let dataDir: string;
let issuer: RunningIssuer;
let ca: string;
let agentKey: string;
const logLines: string[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-issuer-abuse-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  agentKey = await registry.createAgent('deployer', 'acme', ['sre']);
  await registry.createAgent('long-gone', 'acme', ['sre']);
  await store.revokeAgent('long-gone', new Date(Date.now() - 3_600_000));
  await registry.createAgent('just-gone', 'acme', ['sre']);
  await registry.revokeAgent('just-gone');
  await registry.createCluster('prod-eu', 'acme');
  await store.close();
  issuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    adminListen: { host: '127.0.0.1', port: 0 },
    audit: { file: `${dataDir}/hub-audit.jsonl` },
    log: createLogger('info', {}, (line) => logLines.push(line)),
  });
  ca = readFileSync(issuer.caFile!, 'utf8');
});

afterAll(async () => {
  await issuer?.close();
});

/** POST /v1/token from a chosen loopback address (127.0.0.0/8 is all loopback on Linux). */
function postToken(key: string, localAddress = '127.0.0.1'): Promise<{ status: number; retryAfter?: string; body: { error?: string; message?: string } }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer.url}/v1/token`, {
      method: 'POST',
      ca,
      agent: false,
      localAddress,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}), body: JSON.parse(text) }));
    });
    req.end(JSON.stringify({ cluster: 'prod-eu' }));
  });
}

const guess = (i: number) => `krl_agent_${String(i).padStart(6, '0')}${'A'.repeat(37)}`;

describe('/v1/token brute force (issue 14: 1 881 guesses/s, no limit)', () => {
  it('one address guessing gets 429 with Retry-After after a small burst, and is told before its key is checked', async () => {
    const startedAt = Date.now();
    const answers = [];
    for (let i = 0; i < 80; i++) answers.push(await postToken(guess(i), '127.0.0.2'));
    const elapsedS = (Date.now() - startedAt) / 1000;
    const checked = answers.filter((a) => a.status === 401).length;
    const slowed = answers.filter((a) => a.status === 429);
    // A burst of 20, then one forgiven per second.
    expect(checked).toBeLessThanOrEqual(20 + Math.ceil(elapsedS) + 1);
    expect(slowed.length).toBeGreaterThanOrEqual(80 - (20 + Math.ceil(elapsedS) + 1));
    expect(slowed[0]!.body.error).toBe('too-many-failures');
    expect(Number(slowed[0]!.retryAfter)).toBeGreaterThanOrEqual(1);
    // Even the right key waits while its address is slowed down.
    expect((await postToken(agentKey, '127.0.0.2')).status).toBe(429);
    // Another address is not affected.
    expect((await postToken(agentKey, '127.0.0.3')).status).toBe(200);
    const warned = logLines.filter((line) => line.includes('being slowed down'));
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(logLines.join('\n')).not.toContain(guess(0).slice(10));
  });

  it('the same key prefix tried from many addresses is slowed down too', async () => {
    const sameKey = `krl_agent_SAMEPREFIX${'B'.repeat(34)}`;
    const statuses = [];
    for (let i = 0; i < 16; i++) statuses.push((await postToken(sameKey, `127.0.1.${i + 1}`)).status);
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(12)).toEqual([429, 429, 429, 429]);
  });

  it('counts the refusals in kube_relay_token_refusals_total{reason="too-many-failures"}', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${issuer.adminPort}/metrics`)).text();
    const count = Number(/kube_relay_token_refusals_total\{reason="too-many-failures"\} (\d+)/.exec(metrics)?.[1]);
    expect(count).toBeGreaterThanOrEqual(40);
  });
});

describe('/v1/revocations (issue 14: since=1970 listed every agent ever revoked)', () => {
  it('reaches back at most ten minutes whatever since asks', async () => {
    const body = await new Promise<{ items: { user: string }[] }>((resolve, reject) => {
      https.get(`${issuer.url}/v1/revocations?since=1970-01-01T00:00:00Z`, { ca, agent: false }, (answer) => {
        let text = '';
        answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
        answer.on('end', () => resolve(JSON.parse(text)));
      }).on('error', reject);
    });
    expect(body.items.map((item) => item.user)).toEqual(['agent:just-gone']);
  });
});
