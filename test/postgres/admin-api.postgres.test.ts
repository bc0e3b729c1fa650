/**
 * The admin API and the remote CLI on the PostgreSQL store (issue 16's "both store engines"):
 * two issuer replicas share one store, so an admin's change through one replica is what the
 * other answers at once; org isolation holds across replicas; a rotated admin key is refused by
 * both; and the remote CLI prints what the local CLI prints on the same store (`--store-url`).
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { fetchWithCa } from '../../src/https-fetch.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { loadOrCreateCa } from '../../src/tls/local-ca.js';
import { runCli } from '../helpers/cli.js';
import { createDatabase } from './server.js';

const postgres = inject('postgres');

let storeUrl: string;
let root: string;
let pepperFile: string;
let a: RunningIssuer;
let b: RunningIssuer;
let caPem: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  storeUrl = await createDatabase(postgres);
  root = await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-pg-'));
  pepperFile = path.join(root, 'pepper');
  await writeFile(pepperFile, 'a-pepper-shared-by-every-replica-0123456789', { mode: 0o600 });
  const dirA = path.join(root, 'a');
  const dirB = path.join(root, 'b');
  const ca = loadOrCreateCa(dirA);
  mkdirSync(path.join(dirB, 'tls'), { recursive: true, mode: 0o700 });
  copyFileSync(ca.certPath, path.join(dirB, 'tls', 'ca.crt'));
  copyFileSync(path.join(dirA, 'tls', 'ca.key'), path.join(dirB, 'tls', 'ca.key'));
  caPem = readFileSync(ca.certPath, 'utf8');
  for (const [name, scope] of [['root', ['--all-orgs']], ['acme-admin', ['--org', 'acme']], ['globex-admin', ['--org', 'globex']]] as const) {
    const created = await runCli(['admin', 'create', name, ...scope, ...store()]);
    expect(created.code, created.stderr).toBe(0);
    keys[name] = created.stdout.trim();
    await writeFile(path.join(root, `${name}.admin-key`), `${keys[name]}\n`, { mode: 0o600 });
  }
  const replica = (dataDir: string) => startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, storeUrl, pepperFile, log: createLogger('error') });
  [a, b] = await Promise.all([replica(dirA), replica(dirB)]);
}, 60_000);
afterAll(async () => {
  await a?.close();
  await b?.close();
});

function store(): string[] {
  return ['--store-url', storeUrl, '--pepper-file', pepperFile, '--data', path.join(root, 'cli')];
}

function through(issuer: RunningIssuer, admin: string): string[] {
  return ['--issuer', issuer.url, '--issuer-ca-file', path.join(root, 'a', 'tls', 'ca.crt'), '--admin-key-file', path.join(root, `${admin}.admin-key`)];
}

async function call(issuer: RunningIssuer, method: string, pathname: string, key: string, body?: unknown) {
  const res = await fetchWithCa({ ca: caPem })(`${issuer.url}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { items?: { name: string }[] } };
}

describe('the admin API on PostgreSQL, through two replicas', () => {
  it('what an admin creates through one replica the other serves at once; another org gets 404 on both', async () => {
    const created = await call(a, 'POST', '/v1/agents', keys['acme-admin']!, { name: 'task-1', teams: ['agents'] });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await call(b, 'GET', '/v1/agents/task-1', keys['acme-admin']!)).body).toEqual({ name: 'task-1', org: 'acme', teams: ['agents'], createdAt: created.body.createdAt });
    for (const issuer of [a, b]) {
      const across = await call(issuer, 'GET', '/v1/agents/task-1', keys['globex-admin']!);
      expect(across).toEqual({ status: 404, body: { error: 'not-found', message: 'no agent named "task-1"; see kube-relay agent list' } });
      expect((await call(issuer, 'GET', '/v1/agents', keys['globex-admin']!)).body.items).toEqual([]);
    }
    expect((await call(b, 'POST', '/v1/agents', keys['globex-admin']!, { name: 'task-1', teams: ['x'] })).status).toBe(409);
  });

  it('pages of a list follow each other across replicas', async () => {
    for (const name of ['p1', 'p2', 'p3']) expect((await call(a, 'POST', '/v1/clusters', keys.root!, { name, org: 'acme' })).status).toBe(201);
    const first = await call(a, 'GET', '/v1/clusters?limit=2', keys.root!);
    const second = await call(b, 'GET', `/v1/clusters?limit=2&continue=${first.body.continue as string}`, keys.root!);
    expect([...first.body.items!, ...second.body.items!].map((c) => c.name)).toEqual(['p1', 'p2', 'p3']);
    expect(second.body.continue).toBeUndefined();
  });

  it('an admin key rotated through one replica is refused by both at once', async () => {
    const rotated = await call(b, 'POST', '/v1/admins/globex-admin/keys', keys.root!);
    expect(rotated.status).toBe(200);
    for (const issuer of [a, b]) {
      expect((await call(issuer, 'GET', '/v1/agents', keys['globex-admin']!)).status).toBe(401);
      expect((await call(issuer, 'GET', '/v1/agents', rotated.body.adminKey as string)).status).toBe(200);
    }
  });

  it.each([[['agent', 'list']], [['cluster', 'list', '-o', 'json']], [['admin', 'list']], [['agent', 'revoke', 'nobody']]])(
    'the remote CLI prints what the local CLI prints on the store: %j',
    async (command) => {
      const local = await runCli([...command, ...store()]);
      for (const issuer of [a, b]) expect(await runCli([...command, ...through(issuer, 'root')])).toEqual(local);
      expect(local.stdout + local.stderr).toMatch(/task-1|p1|acme-admin|no agent named "nobody"/);
    },
  );
});
