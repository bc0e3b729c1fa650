/**
 * Admin key authentication for the admin API (issue 16): only a live admin key passes; agent and
 * connector keys, unknown and revoked keys are refused with 401, counted in the brakes /v1/token
 * uses, and past the budget refused with 429 and Retry-After before the key is looked at. No
 * refusal and no log line carries the key.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { authenticateAdmin } from '../../src/admin-api/authenticate.js';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { AuthFailureBrakes } from '../../src/issuer/failure-limiter.js';
import { Registry } from '../../src/issuer/registry.js';
import { type IssuerStore, openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';

let store: IssuerStore;
let registry: Registry;
let logged: string;
let clock: number;
const log = () => createLogger('debug', {}, (line: string) => (logged += line));

beforeEach(async () => {
  store = await openStore({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-admin-auth-')) });
  registry = new Registry(store, Buffer.alloc(32, 9));
  logged = '';
  clock = 1_000_000;
});
afterEach(async () => {
  await store.close();
});

const brakes = (burst = 20) => new AuthFailureBrakes({ address: { burst, refillMs: 1_000 }, keyPrefix: { burst: 100, refillMs: 1_000 } }, () => clock);
const bearer = (key: string) => `Bearer ${key}`;

describe('authenticateAdmin', () => {
  it('gives the caller of an org admin key and of an all-orgs admin key', async () => {
    const acme = await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' });
    const root = await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true });
    const deps = { registry, brakes: brakes(), log: log() };
    expect(await authenticateAdmin(deps, { address: '10.0.0.1', authorization: bearer(acme.adminKey) })).toEqual({ ok: true, caller: { kind: 'admin', name: 'acme-admin', org: 'acme' } });
    const rootAuth = await authenticateAdmin(deps, { address: '10.0.0.1', authorization: bearer(root.adminKey) });
    expect(rootAuth).toEqual({ ok: true, caller: { kind: 'admin', name: 'root' } });
  });

  it('refuses a missing, unknown, agent, connector, rotated-away and revoked key with 401, and never echoes the key', async () => {
    const { apiKey } = await ops.createAgent(registry, OPERATOR, { name: 'bot', org: 'acme', teams: ['sre'] });
    const { connectorKey } = await ops.createCluster(registry, OPERATOR, { name: 'prod', org: 'acme' });
    const rotated = await ops.createAdmin(registry, OPERATOR, { name: 'rotated', org: 'acme' });
    await ops.rotateAdminKey(registry, OPERATOR, 'rotated');
    const revoked = await ops.createAdmin(registry, OPERATOR, { name: 'leaver', org: 'acme' });
    await ops.revokeAdmin(registry, OPERATOR, 'leaver');
    const deps = { registry, brakes: brakes(), log: log() };
    const cases: [string | undefined, string][] = [
      [undefined, 'missing-admin-key'],
      ['Basic dXNlcjpwYXNz', 'missing-admin-key'],
      [bearer('krl_admin_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), 'invalid-admin-key'],
      [bearer(apiKey), 'invalid-admin-key'],
      [bearer(connectorKey), 'invalid-admin-key'],
      [bearer(rotated.adminKey), 'invalid-admin-key'],
      [bearer(revoked.adminKey), 'admin-revoked'],
    ];
    for (const [authorization, error] of cases) {
      const result = await authenticateAdmin(deps, { address: '10.0.0.2', authorization });
      expect(result, authorization).toMatchObject({ ok: false, status: 401, error });
      if (authorization) expect(JSON.stringify(result)).not.toContain(authorization.split(' ')[1]);
    }
    expect(await authenticateAdmin(deps, { address: '10.0.0.2', authorization: bearer(revoked.adminKey) })).toMatchObject({ message: expect.stringMatching(/^admin "leaver" was revoked at /) });
    for (const key of [apiKey, connectorKey, rotated.adminKey, revoked.adminKey]) expect(logged).not.toContain(key);
  });

  it('counts failures like /v1/token: past the budget 429 with Retry-After, even for a good key, until the budget refills', async () => {
    const good = await ops.createAdmin(registry, OPERATOR, { name: 'good', org: 'acme' });
    const deps = { registry, brakes: brakes(3), log: log() };
    for (let i = 0; i < 3; i++) {
      expect(await authenticateAdmin(deps, { address: '10.0.0.3', authorization: bearer(`krl_admin_guess${i}`) })).toMatchObject({ status: 401 });
    }
    const braked = await authenticateAdmin(deps, { address: '10.0.0.3', authorization: bearer(good.adminKey) });
    expect(braked).toMatchObject({ ok: false, status: 429, error: 'too-many-failures', headers: { 'retry-after': '1' } });
    expect(JSON.stringify(braked)).not.toContain(good.adminKey);
    expect(logged).toContain('admin requests with wrong admin keys are being slowed down');
    expect(logged).not.toContain('krl_admin_guess');
    // Another address is not braked; successes cost nothing.
    for (let i = 0; i < 5; i++) expect(await authenticateAdmin(deps, { address: '10.0.0.4', authorization: bearer(good.adminKey) })).toMatchObject({ ok: true });
    clock += 1_000;
    expect(await authenticateAdmin(deps, { address: '10.0.0.3', authorization: bearer(good.adminKey) })).toMatchObject({ ok: true });
  });
});
