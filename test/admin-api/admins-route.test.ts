/**
 * /v1/admins on the issuer's real HTTPS listener (issue 16 items 1–3: the remote `kube-relay
 * admin` goes through it): an all-orgs admin makes admins of any org or of all orgs; an org admin
 * makes, lists, rotates and revokes its own org's admins only (another org's admin is 404, an
 * all-orgs admin 403 to create and absent from its list); a rotated or revoked admin key is
 * refused at once; bodies are validated; every change is an audit record with the admin as object.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
let auditFile: string;
const keys: Record<string, string> = {};

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-admins-route-'));
  auditFile = `${dataDir}/audit.jsonl`;
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});
afterAll(async () => {
  await issuer?.close();
});

async function call(method: string, pathname: string, key: string | undefined, body?: unknown) {
  const res = await fetch(`${issuer.url}${pathname}`, {
    method,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, unknown> & { items?: { name: string; org: string | null }[] } };
}

describe('/v1/admins', () => {
  it('an all-orgs admin creates an org admin, shown with its key once; the key works at once', async () => {
    const created = await call('POST', '/v1/admins', keys.root, { name: 'acme-admin', org: 'acme' });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toEqual({ name: 'acme-admin', org: 'acme', createdAt: expect.any(String), adminKey: expect.stringMatching(/^krl_admin_/) });
    keys.acme = created.body.adminKey as string;
    expect((await call('GET', '/v1/admins/acme-admin', keys.acme)).body).toEqual({ name: 'acme-admin', org: 'acme', createdAt: created.body.createdAt });
    const allOrgs = await call('POST', '/v1/admins', keys.root, { name: 'ops', allOrgs: true });
    expect(allOrgs.status, allOrgs.text).toBe(201);
    expect(allOrgs.body.org).toBeNull();
  });

  it("an org admin creates admins of its own org (org may be left out), never of another org or of all orgs", async () => {
    const created = await call('POST', '/v1/admins', keys.acme, { name: 'acme-ci' });
    expect(created.status, created.text).toBe(201);
    expect(created.body.org).toBe('acme');
    keys.acmeCi = created.body.adminKey as string;
    const otherOrg = await call('POST', '/v1/admins', keys.acme, { name: 'x1', org: 'globex' });
    expect(otherOrg.status).toBe(403);
    expect(otherOrg.body).toEqual({ error: 'forbidden', message: 'an admin of org "acme" creates admins in org "acme" only, not in "globex"' });
    const everyOrg = await call('POST', '/v1/admins', keys.acme, { name: 'x2', allOrgs: true });
    expect(everyOrg.status).toBe(403);
    expect(everyOrg.body.message).toMatch(/cannot create an all-orgs admin/);
  });

  it("an org admin lists only its org's admins and gets 404 for any other admin, as for a missing one", async () => {
    expect((await call('GET', '/v1/admins', keys.acme)).body.items!.map((a) => a.name)).toEqual(['acme-admin', 'acme-ci']);
    expect((await call('GET', '/v1/admins', keys.root)).body.items!.map((a) => `${a.name}:${a.org}`)).toEqual(['acme-admin:acme', 'acme-ci:acme', 'globex-admin:globex', 'ops:null', 'root:null']);
    expect((await call('GET', '/v1/admins?org=globex', keys.root)).body.items!.map((a) => a.name)).toEqual(['globex-admin']);
    for (const name of ['globex-admin', 'root', 'nobody']) {
      for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['POST', '/keys']] as const) {
        const res = await call(method, `/v1/admins/${name}${suffix}`, keys.acme);
        expect(res.status, `${method} ${name}${suffix}`).toBe(404);
        expect(res.body).toEqual({ error: 'not-found', message: `no admin named "${name}"; see kube-relay admin list` });
      }
    }
    expect((await call('POST', '/v1/admins', keys.acme, { name: 'globex-admin' })).status).toBe(409);
  });

  it('a rotated key is refused at once and the new one works; a revoked admin is refused', async () => {
    const rotated = await call('POST', '/v1/admins/acme-ci/keys', keys.acme);
    expect(rotated.status, rotated.text).toBe(200);
    expect((await call('GET', '/v1/agents', keys.acmeCi)).status).toBe(401);
    expect((await call('GET', '/v1/agents', rotated.body.adminKey as string)).status).toBe(200);
    const revoked = await call('DELETE', '/v1/admins/acme-ci', keys.acme);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).toMatch(/^\d{4}-/);
    const refused = await call('GET', '/v1/agents', rotated.body.adminKey as string);
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('admin-revoked');
  });

  it.each([
    [{ name: 'a', org: 'acme', allOrgs: true }, /^an admin is either of one org \(org\) or of all orgs \(allOrgs\), not both$/],
    [{ name: 'a', allOrgs: 'yes' }, /^field "allOrgs" must be true or false, not "yes"$/],
    [{ name: 'a', teams: ['x'] }, /^unknown field "teams": POST \/v1\/admins takes name, org, allOrgs$/],
    [{ name: 'A', org: 'acme' }, /^admin name "A" is not a DNS label/],
  ])('POST /v1/admins %j: 422', async (body, message) => {
    const res = await call('POST', '/v1/admins', keys.root, body);
    expect(res.status, res.text).toBe(422);
    expect(res.body).toEqual({ error: 'invalid', message: expect.stringMatching(message) });
  });

  it('every change is an admin record whose object is the admin (org null for all orgs), without a key', async () => {
    const deadline = Date.now() + 5000;
    let records: Record<string, unknown>[] = [];
    while (records.length < 5 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      records = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.kind === 'admin');
    }
    expect(records.map((r) => `${r.admin} ${r.action} ${JSON.stringify(r.object)}`)).toEqual([
      'root create {"kind":"admin","name":"acme-admin","org":"acme"}',
      'root create {"kind":"admin","name":"ops","org":null}',
      'acme-admin create {"kind":"admin","name":"acme-ci","org":"acme"}',
      'acme-admin rotate-key {"kind":"admin","name":"acme-ci","org":"acme"}',
      'acme-admin revoke {"kind":"admin","name":"acme-ci","org":"acme"}',
    ]);
    const trail = readFileSync(auditFile, 'utf8');
    for (const key of Object.values(keys)) expect(trail).not.toContain(key);
    expect(trail).not.toContain('krl_admin_');
  });
});
