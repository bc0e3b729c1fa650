/**
 * Attacks on the web console (issue 20): a forged form without the page's CSRF token, or with
 * another session's, does nothing; a session id fixed before sign-in is not the one after; a
 * cookie replayed after sign-out, after the admin key is rotated or after the idle timeout opens
 * nothing and the form it carries is not done; `next` cannot send a signed-in admin elsewhere;
 * guessing keys is braked as on the admin API; the store holds digests, not session ids.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { ConsoleClient, visibleText } from '../helpers/console-client.js';

/** Long enough for a sign-in and a page view on a busy machine, short enough to wait out. */
const IDLE_TIMEOUT_MS = 4_000;
let issuer: RunningIssuer;
let ca: Buffer;
let dataDir: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-console-attacks-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  keys.rotated = (await ops.createAdmin(registry, OPERATOR, { name: 'rotated', org: 'acme' })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!);
});
afterAll(async () => {
  await issuer?.close();
});

const client = () => new ConsoleClient(issuer.url, ca);
const clusterNames = async () => {
  const res = await new ConsoleClient(issuer.url, ca).get('/ui/sign-in'); // a fresh visitor: no session of the attacker's
  expect(res.status).toBe(200);
  const { fetchWithCa } = await import('../../src/https-fetch.js');
  const listed = (await (await fetchWithCa({ ca })(`${issuer.url}/v1/clusters`, { headers: { authorization: `Bearer ${keys.root}` } })).json()) as { items: { name: string }[] };
  return listed.items.map((cluster) => cluster.name);
};

describe('attacks on the web console', () => {
  it('a form without the CSRF token, or with another session\'s, is refused and does nothing', async () => {
    const victim = client();
    await victim.signIn(keys.root!);
    await victim.get('/ui/clusters');
    const attacker = client();
    await attacker.signIn(keys.root!);
    await attacker.get('/ui/clusters');
    const theirs = attacker.csrf!;
    for (const forged of [{ _csrf: '' }, { _csrf: theirs }, { _csrf: 'a'.repeat(64) }]) {
      const page = await victim.post('/ui/clusters', { name: 'forged', org: 'acme', ...forged });
      expect(page.status).toBe(403);
      expect(visibleText(page.html)).toMatch(/not sent from a page of this console/);
    }
    expect(await clusterNames()).not.toContain('forged');
  });

  it('a session id planted before sign-in is not the one after it', async () => {
    const browser = client();
    await browser.get('/ui/sign-in');
    const before = browser.cookie;
    expect((await browser.post('/ui/sign-in', { key: keys.root! })).status).toBe(303);
    const after = browser.cookie;
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
  });

  it('a cookie kept after sign-out opens nothing', async () => {
    const browser = client();
    await browser.signIn(keys.root!);
    await browser.get('/ui/clusters');
    const kept = browser.cookie;
    const csrf = browser.csrf!;
    const out = await browser.post('/ui/sign-out');
    expect(out.status).toBe(303);
    expect(out.location).toBe('/ui/sign-in?reason=signed-out');
    const replay = client();
    replay.cookie = kept;
    expect((await replay.get('/ui/clusters')).status).toBe(303);
    expect((await replay.post('/ui/clusters', { _csrf: csrf, name: 'after-sign-out', org: 'acme' })).status).not.toBe(201);
    expect(await clusterNames()).not.toContain('after-sign-out');
  });

  it('rotating the admin key ends its console sessions at once', async () => {
    const browser = client();
    await browser.signIn(keys.rotated!);
    expect((await browser.get('/ui/clusters')).status).toBe(200);
    const store = await openStore({ dataDir });
    await new Registry(store, loadOrCreatePepper(dataDir, {})).rotateAdminKey('rotated');
    await store.close();
    const page = await browser.post('/ui/clusters', { name: 'after-rotation' });
    expect(page.status).toBe(303);
    expect(page.location).toBe('/ui/sign-in?reason=key-changed');
    expect(await clusterNames()).not.toContain('after-rotation');
  });

  it('a session idle past the timeout ends: back to sign-in, the form not done', async () => {
    // A second replica of the same store with a short idle timeout: the rest of this file keeps the default.
    const hasty = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, consoleIdleTimeoutMs: IDLE_TIMEOUT_MS, log: createLogger('error') });
    try {
      const browser = new ConsoleClient(hasty.url, ca);
      await browser.signIn(keys.root!);
      expect((await browser.get('/ui/clusters')).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, IDLE_TIMEOUT_MS + 1_000));
      const page = await browser.post('/ui/clusters', { name: 'after-idle', org: 'acme' });
      expect(page.status).toBe(303);
      expect(page.location).toBe('/ui/sign-in?reason=expired');
      expect(visibleText((await browser.get(page.location!)).html)).toMatch(/nothing you sent after that was done/);
    } finally {
      await hasty.close();
    }
    expect(await clusterNames()).not.toContain('after-idle');
  });

  it('next= cannot send a signed-in admin to another site', async () => {
    for (const next of ['https://evil.example/ui/x', '//evil.example/ui/', '/ui//evil.example', '/\\evil.example', 'javascript:alert(1)']) {
      const browser = client();
      await browser.get(`/ui/sign-in?next=${encodeURIComponent(next)}`);
      const page = await browser.post(`/ui/sign-in?next=${encodeURIComponent(next)}`, { key: keys.root! });
      expect(page.status, next).toBe(303);
      expect(page.location, next).toBe('/ui/clusters');
    }
  });

  it('the store keeps digests of session ids, never the ids', async () => {
    const browser = client();
    await browser.signIn(keys.root!);
    const cookie = browser.cookie;
    const sessionId = /^__Host-kube-relay-console=s%3A([^.]+)\./.exec(cookie ?? '')?.[1];
    expect(sessionId).toBeDefined();
    const db = new Database(path.join(dataDir, 'issuer.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT id_digest, data FROM console_sessions').all() as { id_digest: string; data: string }[];
      expect(rows.length).toBeGreaterThan(0);
      expect(JSON.stringify(rows)).not.toContain(sessionId!);
      expect(JSON.stringify(rows)).not.toContain(keys.root!);
    } finally {
      db.close();
    }
  });

  it('guessing admin keys at sign-in is braked like the admin API: 429 with Retry-After', async () => {
    let last = 0;
    let retryAfter: string | null = null;
    for (let attempt = 0; attempt < 40 && last !== 429; attempt++) {
      const page = await client().signIn(`krl_admin_${randomBytes(24).toString('base64url')}`); // each guess its own prefix: the address brake
      last = page.status;
      retryAfter = page.headers.get('retry-after');
    }
    expect(last).toBe(429);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    // The brakes are the admin API's own: a guess at sign-in costs the same budget there.
    const { fetchWithCa } = await import('../../src/https-fetch.js');
    const api = await fetchWithCa({ ca })(`${issuer.url}/v1/clusters`, { headers: { authorization: `Bearer krl_admin_${randomBytes(24).toString('base64url')}` } });
    expect(api.status).toBe(429);
  });
});
