import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchWithCa } from '../../src/https-fetch.js';
import { createLogger } from '../../src/log.js';
import { Registry } from '../../src/issuer/registry.js';
import { checkPepper, loadOrCreatePepper, PepperMismatchError } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { KeyNotReadyError, PROPAGATION_MS, SIGNER_TIMEOUT_MS, SigningKeys } from '../../src/issuer/signing-keys.js';
import { openStore } from '../../src/issuer/store.js';
import { until } from '../helpers/http.js';

let dataDir: string;
let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
let agentKey: string;
let revokedKey: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-issuer-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  agentKey = await registry.createAgent('deployer', 'acme', ['sre', 'platform']);
  revokedKey = await registry.createAgent('old-bot', 'acme', ['sre']);
  await registry.revokeAgent('old-bot');
  await registry.createCluster('prod-eu', 'acme');
  await registry.createCluster('other-org-cluster', 'globex');
  await registry.createCluster('retired', 'acme');
  await registry.revokeCluster('retired');
  await store.close();
  issuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: `${dataDir}/hub-audit.jsonl` },
    log: createLogger('error'),
  });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});

afterAll(async () => {
  await issuer.close();
});

async function postToken(key: string | undefined, body: unknown) {
  const res = await fetch(`${issuer.url}/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

describe('issuer over HTTPS with the data directory CA (DESIGN §3.1)', () => {
  it('serves HTTPS trusted by <data>/tls/ca.crt and keeps the CA key 0600', () => {
    expect(issuer.caFile).toBe(path.join(dataDir, 'tls', 'ca.crt'));
    expect(statSync(path.join(dataDir, 'tls', 'ca.key')).mode & 0o777).toBe(0o600);
  });

  it('refuses connections from clients that do not trust the CA', async () => {
    await expect(fetchWithCa()(`${issuer.url}/.well-known/jwks.json`)).rejects.toThrow();
  });
});

describe('POST /v1/token', () => {
  it('mints a 60 s ES256 token with exactly the agent claims', async () => {
    const { status, body } = await postToken(agentKey, { cluster: 'prod-eu' });
    expect(status).toBe(200);
    const header = decodeProtectedHeader(body.token!);
    expect(header.alg).toBe('ES256');
    expect(header.kid).toEqual(expect.any(String));
    const claims = decodeJwt(body.token!);
    expect(Object.keys(claims).sort()).toEqual(['aud', 'exp', 'groups', 'iat', 'iss', 'jti', 'nbf', 'sub']);
    expect(claims).toMatchObject({ iss: issuer.url, sub: 'agent:deployer', aud: 'prod-eu', groups: ['acme/sre', 'acme/platform'] });
    expect(claims.exp! - claims.iat!).toBe(60);
    expect(claims.nbf).toBe(claims.iat);
    expect(new Date(body.expiresAt!).getTime()).toBe(claims.exp! * 1000);
    const jwks = (await (await fetch(`${issuer.url}/.well-known/jwks.json`)).json()) as { keys: object[] };
    await expect(jwtVerify(body.token!, createLocalJWKSet(jwks as never), { issuer: issuer.url, audience: 'prod-eu' })).resolves.toBeTruthy();
  });

  it('gives unique token ids', async () => {
    const a = decodeJwt((await postToken(agentKey, { cluster: 'prod-eu' })).body.token!);
    const b = decodeJwt((await postToken(agentKey, { cluster: 'prod-eu' })).body.token!);
    expect(a.jti).not.toBe(b.jti);
  });

  it.each([
    ['no API key', undefined, { cluster: 'prod-eu' }, 401, 'missing-api-key'],
    ['an unknown API key', 'krl_agent_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', { cluster: 'prod-eu' }, 401, 'invalid-api-key'],
    ['a connector key instead of an API key', 'krl_cluster_x', { cluster: 'prod-eu' }, 401, 'invalid-api-key'],
    ['an unknown cluster', 'AGENT', { cluster: 'nowhere' }, 404, 'unknown-cluster'],
    ['a cluster of another org', 'AGENT', { cluster: 'other-org-cluster' }, 403, 'cluster-of-another-org'],
    ['a revoked cluster', 'AGENT', { cluster: 'retired' }, 403, 'cluster-revoked'],
    ['a body without a cluster', 'AGENT', {}, 400, 'invalid-request'],
    ['a body that is not JSON', 'AGENT', 'cluster=prod-eu', 400, 'invalid-request'],
  ])('answers %s with a JSON error', async (_name, key, body, status, code) => {
    const res = await postToken(key === 'AGENT' ? agentKey : key, body);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(code);
    expect(res.body.message).toEqual(expect.any(String));
  });

  it('refuses a revoked agent with 403', async () => {
    const res = await postToken(revokedKey, { cluster: 'prod-eu' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('agent-revoked');
  });
});

describe('discovery, keys and revocations', () => {
  it('publishes the OIDC discovery document', async () => {
    const doc = (await (await fetch(`${issuer.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(doc.issuer).toBe(issuer.url);
    expect(doc.jwks_uri).toBe(`${issuer.url}/.well-known/jwks.json`);
  });

  it('keeps the current and previous key in the JWKS after a rotation made by another process, and signs with the new one', async () => {
    const before = (await (await fetch(`${issuer.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
    const store = await openStore({ dataDir });
    const keys = new SigningKeys(store, dataDir, 0);
    const newKid = await keys.rotate();
    const newest = await keys.rotate();
    await store.close();
    const jwks = async () => (await (await fetch(`${issuer.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] };
    // The running issuer reads the store every few seconds.
    await until(async () => (await jwks()).keys.map((k) => k.kid).join() === [newest, newKid].join(), 15_000, 'the rotated keys in the JWKS');
    expect((await jwks()).keys.every((k) => k.d === undefined)).toBe(true);
    expect(before.keys.map((k) => k.kid)).not.toContain(newest);
    const { body } = await postToken(agentKey, { cluster: 'prod-eu' });
    expect(decodeProtectedHeader(body.token!).kid).toBe(newest);
  });

  it('orders rotations made within the same millisecond: the last one signs, the first one goes', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-keys-'));
    const store = await openStore({ dataDir: dir });
    const sameInstant = Date.parse('2026-01-01T00:00:00Z');
    const keys = new SigningKeys(store, dir, 0, () => sameInstant);
    const kids = [await keys.rotate(), await keys.rotate(), await keys.rotate()];
    expect((await keys.current()).kid).toBe(kids[2]);
    expect(keys.jwks().keys.map((key) => key.kid)).toEqual([kids[2], kids[1]]);
    await store.close();
  });

  it('keeps private keys in the data directory only (0600), never in the store', async () => {
    const files = readdirSync(path.join(dataDir, 'signing-keys')).filter((name) => name.endsWith('.jwk'));
    expect(files.length).toBeGreaterThanOrEqual(1);
    for (const name of files) {
      const file = path.join(dataDir, 'signing-keys', name);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const { privateJwk } = JSON.parse(readFileSync(file, 'utf8')) as { privateJwk: { d: string } };
      expect(readFileSync(path.join(dataDir, 'issuer.db')).includes(Buffer.from(privateJwk.d))).toBe(false);
    }
    expect(statSync(path.join(dataDir, 'signing-keys')).mode & 0o777).toBe(0o700);
  });

  it('where replicas share a store, a new key signs only once every replica can have read it, and the first key makes the replica wait', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-keys-'));
    const store = await openStore({ dataDir: dir });
    let now = Date.parse('2026-01-01T00:00:00Z');
    const keys = new SigningKeys(store, dir, PROPAGATION_MS, () => now);
    const first = await keys.rotate();
    expect(keys.ready).toBe(false);
    await expect(keys.current()).rejects.toThrow(KeyNotReadyError);
    expect(keys.jwks().keys.map((k) => k.kid)).toEqual([first]);
    now += PROPAGATION_MS;
    expect((await keys.current()).kid).toBe(first);
    const second = await keys.rotate();
    expect((await keys.current()).kid).toBe(first);
    now += PROPAGATION_MS;
    expect((await keys.current()).kid).toBe(second);
    await store.close();
  });

  it("lists every live replica's keys and drops a replica gone for longer than the signer timeout", async () => {
    const dirA = await mkdtemp(path.join(tmpdir(), 'kube-relay-keys-a-'));
    const dirB = await mkdtemp(path.join(tmpdir(), 'kube-relay-keys-b-'));
    let now = Date.parse('2026-01-01T00:00:00Z');
    const store = await openStore({ dataDir: dirA });
    const a = new SigningKeys(store, dirA, 0, () => now);
    const b = new SigningKeys(store, dirB, 0, () => now);
    const kidA = await a.rotate();
    const kidB = await b.rotate();
    expect(a.signer).not.toBe(b.signer);
    await a.refresh();
    expect(a.jwks().keys.map((k) => k.kid).sort()).toEqual([kidA, kidB].sort());
    now += SIGNER_TIMEOUT_MS + 1;
    await a.refresh();
    expect(a.jwks().keys.map((k) => k.kid)).toEqual([kidA]);
    await store.close();
  });

  it('lists recently revoked agents at /v1/revocations', async () => {
    const feed = (await (await fetch(`${issuer.url}/v1/revocations`)).json()) as { items: { user: string; revokedAt: string }[] };
    expect(feed.items.map((i) => i.user)).toEqual(['agent:old-bot']);
    expect(Number.isNaN(Date.parse(feed.items[0]!.revokedAt))).toBe(false);
  });
});

describe('secrets at rest (DESIGN §2)', () => {
  it('stores keys only as HMAC-SHA-256 with a pepper kept 0600 outside the database', () => {
    expect(statSync(path.join(dataDir, 'pepper')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dataDir, 'issuer.db')).mode & 0o777).toBe(0o600);
    const db = readFileSync(path.join(dataDir, 'issuer.db'));
    expect(db.includes(Buffer.from(agentKey))).toBe(false);
    expect(db.includes(Buffer.from(agentKey.slice('krl_agent_'.length)))).toBe(false);
  });

  it('issues keys with the krl_ prefixes and at least 32 random bytes', () => {
    expect(agentKey).toMatch(/^krl_agent_[A-Za-z0-9_-]{43,}$/);
  });

  it('does not accept a key under a different pepper, and an issuer with another pepper refuses to start', async () => {
    const store = await openStore({ dataDir });
    try {
      expect(await new Registry(store, Buffer.from('another-pepper-of-enough-length')).agentForKey(agentKey)).toBeUndefined();
      expect((await new Registry(store, loadOrCreatePepper(dataDir, {})).agentForKey(agentKey))?.name).toBe('deployer');
      await expect(checkPepper(store, Buffer.from('another-pepper-of-enough-length'))).rejects.toThrow(PepperMismatchError);
      await expect(checkPepper(store, loadOrCreatePepper(dataDir, {}))).resolves.toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
