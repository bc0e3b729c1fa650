/**
 * The control plane's operations with the caller's identity (issue 16, DESIGN §10): an org admin
 * sees and changes only its org, and another org's objects are answered as missing ones; an
 * all-orgs admin and the operator see every org; lists page with a cursor.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Caller, OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError, Registry } from '../../src/issuer/registry.js';
import { AlreadyExistsError, type IssuerStore, openStore } from '../../src/issuer/store.js';

const acmeAdmin: Caller = { kind: 'admin', name: 'acme-admin', org: 'acme' };
const globexAdmin: Caller = { kind: 'admin', name: 'globex-admin', org: 'globex' };
const root: Caller = { kind: 'admin', name: 'root' };

let store: IssuerStore;
let registry: Registry;

beforeEach(async () => {
  store = await openStore({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-ops-')) });
  registry = new Registry(store, Buffer.alloc(32, 7));
  await ops.createAgent(registry, OPERATOR, { name: 'acme-bot', org: 'acme', teams: ['sre'] });
  await ops.createAgent(registry, OPERATOR, { name: 'globex-bot', org: 'globex', teams: ['ops'] });
  await ops.createCluster(registry, OPERATOR, { name: 'acme-prod', org: 'acme' });
  await ops.createCluster(registry, OPERATOR, { name: 'globex-prod', org: 'globex' });
});
afterEach(async () => {
  await store.close();
});

describe('an org admin', () => {
  it("sees only its org's agents, clusters and admins", async () => {
    await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' });
    await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' });
    await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true });
    expect((await ops.listAgents(registry, acmeAdmin)).items.map((a) => a.name)).toEqual(['acme-bot']);
    expect((await ops.listClusters(registry, globexAdmin)).items.map((c) => c.name)).toEqual(['globex-prod']);
    expect((await ops.listAdmins(registry, acmeAdmin)).items.map((a) => a.name)).toEqual(['acme-admin']);
    expect((await ops.getAgent(registry, acmeAdmin, 'acme-bot')).org).toBe('acme');
  });

  it("gets 'not found' for another org's objects, worded exactly as for a missing one, and changes nothing", async () => {
    const missing = await ops.getAgent(registry, acmeAdmin, 'no-such-bot').catch((err: Error) => err);
    expect(missing).toBeInstanceOf(NotFoundError);
    for (const attempt of [
      () => ops.getAgent(registry, acmeAdmin, 'globex-bot'),
      () => ops.revokeAgent(registry, acmeAdmin, 'globex-bot'),
      () => ops.rotateAgentKey(registry, acmeAdmin, 'globex-bot'),
    ]) {
      const err = await attempt().catch((e: Error) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as Error).message).toBe((missing as Error).message.replace('no-such-bot', 'globex-bot'));
    }
    await expect(ops.revokeCluster(registry, acmeAdmin, 'globex-prod')).rejects.toThrow(NotFoundError);
    await expect(ops.rotateClusterKey(registry, acmeAdmin, 'globex-prod')).rejects.toThrow(NotFoundError);
    await expect(ops.getCluster(registry, acmeAdmin, 'globex-prod')).rejects.toThrow('no cluster named "globex-prod"');
    // Nothing changed for globex: its agent is active and its key unchanged.
    expect((await registry.findAgent('globex-bot'))!.revokedAt).toBeUndefined();
    expect((await registry.findCluster('globex-prod'))!.revokedAt).toBeUndefined();
  });

  it("creates in its own org (the org may be left out) and is refused another org's", async () => {
    const { agent, apiKey } = await ops.createAgent(registry, acmeAdmin, { name: 'acme-new', teams: ['dev'] });
    expect(agent).toMatchObject({ name: 'acme-new', org: 'acme', teams: ['dev'] });
    expect(apiKey).toMatch(/^krl_agent_/);
    expect((await registry.agentForKey(apiKey))?.name).toBe('acme-new');
    await expect(ops.createAgent(registry, acmeAdmin, { name: 'sneaky', org: 'globex', teams: ['x'] })).rejects.toThrow(ForbiddenError);
    await expect(ops.createCluster(registry, acmeAdmin, { name: 'sneaky', org: 'globex' })).rejects.toThrow(ForbiddenError);
    expect(await registry.findAgent('sneaky')).toBeUndefined();
    expect(await registry.findCluster('sneaky')).toBeUndefined();
  });

  it("is told a name is taken by another org without whose it is or when it was revoked", async () => {
    await ops.revokeAgent(registry, OPERATOR, 'globex-bot');
    const err = await ops.createAgent(registry, acmeAdmin, { name: 'globex-bot', teams: ['sre'] }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect((err as Error).message).toBe('the agent name "globex-bot" is taken (agent names are unique across the issuer): choose another name');
    // The operator sees the details.
    await expect(ops.createAgent(registry, OPERATOR, { name: 'globex-bot', org: 'globex', teams: ['sre'] })).rejects.toThrow(/was revoked at \d{4}-/);
  });

  it('revokes and rotates its own objects; the old key stops working', async () => {
    const created = await ops.createAgent(registry, acmeAdmin, { name: 'rotating', teams: ['sre'] });
    const rotated = await ops.rotateAgentKey(registry, acmeAdmin, 'rotating');
    expect(rotated.apiKey).not.toBe(created.apiKey);
    expect(await registry.agentForKey(created.apiKey)).toBeUndefined();
    expect((await registry.agentForKey(rotated.apiKey))?.name).toBe('rotating');
    expect((await ops.revokeAgent(registry, acmeAdmin, 'rotating')).revokedAt).toBeInstanceOf(Date);
    await expect(ops.rotateAgentKey(registry, acmeAdmin, 'rotating')).rejects.toThrow(ConflictError);
    const cluster = await ops.rotateClusterKey(registry, acmeAdmin, 'acme-prod');
    expect(cluster.connectorKey).toMatch(/^krl_cluster_/);
    expect((await ops.revokeCluster(registry, acmeAdmin, 'acme-prod')).revokedAt).toBeInstanceOf(Date);
  });

  it("manages its org's admins only, never all-orgs admins", async () => {
    await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true });
    await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' });
    const deputy = await ops.createAdmin(registry, acmeAdmin, { name: 'acme-deputy' });
    expect(deputy.admin).toMatchObject({ name: 'acme-deputy', org: 'acme' });
    expect(deputy.adminKey).toMatch(/^krl_admin_[A-Za-z0-9_-]{43}$/);
    await expect(ops.createAdmin(registry, acmeAdmin, { name: 'escalate', allOrgs: true })).rejects.toThrow(ForbiddenError);
    await expect(ops.createAdmin(registry, acmeAdmin, { name: 'escalate', org: 'globex' })).rejects.toThrow(ForbiddenError);
    for (const name of ['root', 'globex-admin']) {
      await expect(ops.revokeAdmin(registry, acmeAdmin, name)).rejects.toThrow(`no admin named "${name}"`);
      await expect(ops.rotateAdminKey(registry, acmeAdmin, name)).rejects.toThrow(NotFoundError);
      expect((await registry.findAdmin(name))!.revokedAt).toBeUndefined();
    }
    expect((await ops.rotateAdminKey(registry, acmeAdmin, 'acme-deputy')).adminKey).not.toBe(deputy.adminKey);
    expect((await ops.revokeAdmin(registry, acmeAdmin, 'acme-deputy')).revokedAt).toBeInstanceOf(Date);
  });

  it("may not list another org, even by asking", async () => {
    await expect(ops.listAgents(registry, acmeAdmin, { org: 'globex' })).rejects.toThrow(ForbiddenError);
    expect((await ops.listAgents(registry, acmeAdmin, { org: 'acme' })).items.map((a) => a.name)).toEqual(['acme-bot']);
  });
});

describe('an all-orgs admin and the operator', () => {
  it.each([['an all-orgs admin', root], ['the operator', OPERATOR]] as const)("%s see and change every org's objects, and filter by org", async (_who, caller) => {
    expect((await ops.listAgents(registry, caller)).items.map((a) => a.name)).toEqual(['acme-bot', 'globex-bot']);
    expect((await ops.listAgents(registry, caller, { org: 'globex' })).items.map((a) => a.name)).toEqual(['globex-bot']);
    expect((await ops.getCluster(registry, caller, 'globex-prod')).org).toBe('globex');
    await ops.createAgent(registry, caller, { name: 'made-for-globex', org: 'globex', teams: ['ops'] });
    expect((await ops.revokeAgent(registry, caller, 'globex-bot')).revokedAt).toBeInstanceOf(Date);
    const admin = await ops.createAdmin(registry, caller, { name: 'another-root', allOrgs: true });
    expect(admin.admin).not.toHaveProperty('org');
  });

  it('must name an org, or all orgs for an admin, and not both', async () => {
    await expect(ops.createAgent(registry, root, { name: 'orgless', teams: ['x'] })).rejects.toThrow('an agent needs an org');
    await expect(ops.createCluster(registry, OPERATOR, { name: 'orgless' })).rejects.toThrow('a cluster needs an org');
    await expect(ops.createAdmin(registry, OPERATOR, { name: 'orgless' })).rejects.toThrow(/an admin needs an org \(or allOrgs/);
    await expect(ops.createAdmin(registry, OPERATOR, { name: 'both', org: 'acme', allOrgs: true })).rejects.toThrow(InvalidInputError);
    await expect(ops.createAdmin(registry, OPERATOR, { name: 'Bad_Name', org: 'acme' })).rejects.toThrow(/admin name "Bad_Name" is not a DNS label/);
  });

  it('keep names of revoked admins reserved', async () => {
    await ops.createAdmin(registry, OPERATOR, { name: 'leaver', org: 'acme' });
    await ops.revokeAdmin(registry, OPERATOR, 'leaver');
    await expect(ops.createAdmin(registry, OPERATOR, { name: 'leaver', org: 'acme' })).rejects.toThrow(/admin "leaver" was revoked at .*; names of revoked admins stay reserved/);
    await expect(ops.rotateAdminKey(registry, OPERATOR, 'leaver')).rejects.toThrow(ConflictError);
  });
});

describe('paging', () => {
  it('walks every item once with continue, within one org for an org admin', async () => {
    for (const name of ['a1', 'a2', 'a3', 'a4', 'a5']) await ops.createAgent(registry, OPERATOR, { name, org: 'acme', teams: ['t'] });
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await ops.listAgents(registry, acmeAdmin, { limit: 2, continue: cursor });
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((a) => a.name));
      cursor = page.continue;
      pages += 1;
    } while (cursor !== undefined);
    expect(seen).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'acme-bot']);
    expect(pages).toBe(3);
    // The last page says nothing follows.
    expect((await ops.listAgents(registry, acmeAdmin, { limit: 6 })).continue).toBeUndefined();
  });

  it('refuses a forged continue and a limit out of range, naming them', async () => {
    await expect(ops.listAgents(registry, OPERATOR, { continue: 'not base64!' })).rejects.toThrow(/continue is not one this issuer gave/);
    await expect(ops.listAgents(registry, OPERATOR, { continue: Buffer.from('after:../x').toString('base64url') })).rejects.toThrow(InvalidInputError);
    await expect(ops.listAgents(registry, OPERATOR, { limit: 0 })).rejects.toThrow(/limit must be/);
    await expect(ops.listAgents(registry, OPERATOR, { limit: 1.5 })).rejects.toThrow(/limit must be/);
    expect((await ops.listAgents(registry, OPERATOR, { limit: 10_000 })).items).toHaveLength(2);
  });
});
