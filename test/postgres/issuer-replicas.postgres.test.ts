/**
 * Several issuer replicas on one PostgreSQL store (issue 15): separate data
 * directories, one pepper, each replica's own signing key, one JWKS listing
 * them all, revocations seen by every replica, and a store migrated from
 * SQLite keeping every key.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { requestToken } from '../../src/client/token.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper, PepperMismatchError } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { loadOrCreateCa } from '../../src/tls/local-ca.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/http.js';
import { createDatabase } from './server.js';

const postgres = inject('postgres');
const PEPPER = 'a-pepper-shared-by-every-replica-0123456789';

function replica(storeUrl: string, dataDir: string, pepperFile: string): Promise<RunningIssuer> {
  return startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    storeUrl,
    pepperFile,
    audit: { file: path.join(dataDir, 'hub-audit.jsonl') },
    log: createLogger('error'),
  });
}

describe('two issuer replicas on one PostgreSQL store', () => {
  let storeUrl: string;
  let shared: string;
  let dirA: string;
  let dirB: string;
  let a: RunningIssuer;
  let b: RunningIssuer;
  let agentKey: string;
  let pepperFile: string;

  beforeAll(async () => {
    storeUrl = await createDatabase(postgres);
    shared = await mkdtemp(path.join(tmpdir(), 'kube-relay-replicas-'));
    pepperFile = path.join(shared, 'pepper');
    await writeFile(pepperFile, PEPPER, { mode: 0o600 });
    // Both data directories get the same CA, so one trust covers both listeners.
    dirA = path.join(shared, 'a');
    dirB = path.join(shared, 'b');
    const ca = loadOrCreateCa(dirA);
    mkdirSync(path.join(dirB, 'tls'), { recursive: true, mode: 0o700 });
    copyFileSync(ca.certPath, path.join(dirB, 'tls', 'ca.crt'));
    copyFileSync(path.join(dirA, 'tls', 'ca.key'), path.join(dirB, 'tls', 'ca.key'));
    const store = await openStore({ dataDir: dirA, storeUrl });
    const registry = new Registry(store, Buffer.from(PEPPER));
    agentKey = await registry.createAgent('deployer', 'acme', ['sre']);
    await registry.createCluster('prod-eu', 'acme');
    await store.close();
    [a, b] = await Promise.all([replica(storeUrl, dirA, pepperFile), replica(storeUrl, dirB, pepperFile)]);
  }, 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  const caPem = () => readFileSync(path.join(dirA, 'tls', 'ca.crt'), 'utf8');
  const jwksOf = async (issuer: RunningIssuer) => (await (await fetchWithCa({ ca: caPem() })(`${issuer.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] };

  it("each replica signs with its own key, and each replica's JWKS lists both", async () => {
    // A replica's first key signs once every peer and relay can have read it (PROPAGATION_MS, about 41 s).
    const mint = (issuer: RunningIssuer) => requestToken({ issuer: issuer.url, cluster: 'prod-eu', apiKey: agentKey, issuerCa: caPem() });
    let fromA: string | undefined;
    let fromB: string | undefined;
    await until(async () => (fromA = (await mint(a).catch(() => undefined))?.token) !== undefined, 90_000, 'a token from replica A');
    await until(async () => (fromB = (await mint(b).catch(() => undefined))?.token) !== undefined, 90_000, 'a token from replica B');
    const kidA = decodeProtectedHeader(fromA!).kid;
    const kidB = decodeProtectedHeader(fromB!).kid;
    expect(kidA).not.toBe(kidB);
    for (const issuer of [a, b]) {
      const jwks = await jwksOf(issuer);
      expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([kidA, kidB]));
      expect(jwks.keys.every((k) => k.d === undefined)).toBe(true);
    }
    // A token minted by A verifies against the keys fetched from B.
    const keysFromB = createLocalJWKSet((await jwksOf(b)) as never);
    await expect(jwtVerify(fromA!, keysFromB, { audience: 'prod-eu' })).resolves.toBeTruthy();
  }, 200_000);

  it('an agent revoked through one replica is listed by the other', async () => {
    const store = await openStore({ dataDir: dirA, storeUrl });
    const registry = new Registry(store, Buffer.from(PEPPER));
    await registry.createAgent('leaver', 'acme', ['sre']);
    await registry.revokeAgent('leaver');
    await store.close();
    const feed = (await (await fetchWithCa({ ca: caPem() })(`${b.url}/v1/revocations`)).json()) as { items: { user: string }[] };
    expect(feed.items.map((i) => i.user)).toContain('agent:leaver');
  });

  it('a replica with another pepper refuses to start, saying why', async () => {
    const otherPepper = path.join(shared, 'other-pepper');
    await writeFile(otherPepper, 'a-different-pepper-of-enough-length', { mode: 0o600 });
    await expect(replica(storeUrl, path.join(shared, 'c'), otherPepper)).rejects.toThrow(PepperMismatchError);
  });

  it('a replica without an explicit pepper refuses to start (a data-directory pepper would differ per replica)', async () => {
    await expect(
      startIssuer({ dataDir: path.join(shared, 'd'), listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, storeUrl, log: createLogger('error') }),
    ).rejects.toThrow(/need one pepper: set KUBE_RELAY_PEPPER or --pepper-file/);
  });
});

describe('kube-relay store migrate', () => {
  it('moves an SQLite issuer to PostgreSQL without re-keying: its API keys work on the new store', async () => {
    const source = await mkdtemp(path.join(tmpdir(), 'kube-relay-migrate-'));
    const created = await runCli(['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--data', source]);
    expect(created.code, created.stderr).toBe(0);
    await runCli(['cluster', 'create', 'prod-eu', '--org', 'acme', '--data', source]);
    const target = await createDatabase(postgres);
    const migrated = await runCli(['store', 'migrate', '--from', source, '--to', target]);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stderr).toMatch(/copied 1 agents, 1 clusters/);
    expect(migrated.stderr).not.toContain(postgres.password);
    const listed = await runCli(['agent', 'list', '--store-url', target, '--pepper-file', path.join(source, 'pepper')]);
    expect(listed.stdout).toMatch(/deployer\s+acme\s+sre\s+active/);
    const store = await openStore({ dataDir: source, storeUrl: target });
    try {
      expect((await new Registry(store, loadOrCreatePepper(source, {})).agentForKey(created.stdout.trim()))?.name).toBe('deployer');
    } finally {
      await store.close();
    }
    const again = await runCli(['store', 'migrate', '--from', source, '--to', target]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('is not empty');
  });

  it('refuses, without making one up, when the source pepper is not where it looks', async () => {
    const source = await mkdtemp(path.join(tmpdir(), 'kube-relay-migrate-nopepper-'));
    await runCli(['cluster', 'create', 'prod-eu', '--org', 'acme', '--data', source]);
    const { renameSync, existsSync } = await import('node:fs');
    renameSync(path.join(source, 'pepper'), path.join(source, 'pepper.elsewhere'));
    const refused = await runCli(['store', 'migrate', '--from', source, '--to', await createDatabase(postgres)]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('has no pepper file: give the pepper the SQLite issuer ran with (--pepper-file or KUBE_RELAY_PEPPER)');
    expect(existsSync(path.join(source, 'pepper'))).toBe(false);
    const given = await runCli(['store', 'migrate', '--from', source, '--to', await createDatabase(postgres), '--pepper-file', path.join(source, 'pepper.elsewhere')]);
    expect(given.code, given.stderr).toBe(0);
    expect(given.stderr).toContain(`--pepper-file ${path.join(source, 'pepper.elsewhere')}`);
  });

  it('an issuer on an unreachable store exits 1 naming the URL without its password', async () => {
    const url = new URL(postgres.url);
    url.port = '1';
    const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-unreachable-'));
    await writeFile(path.join(dir, 'pepper'), PEPPER);
    const result = await runCli(['issuer', '--listen', '127.0.0.1:0', '--store-url', url.toString(), '--pepper-file', path.join(dir, 'pepper'), '--data', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`postgres://${postgres.user}:redacted@127.0.0.1:1/`);
    expect(result.stderr).not.toContain(postgres.password);
  });
});
