/**
 * Grant operations (issue 17, DESIGN §11): a grant joins a cluster and a grantee of one org;
 * another org's cluster, agent or grant is "not found"; roles are the built-in set (cluster-admin
 * only when confirmed); namespaces are DNS labels; expiry is positive and within the limit; a
 * duplicate names the grant that exists; an expired grant is listed as expired and may be
 * granted again; nothing is stored when a check fails.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Caller, OPERATOR } from '../../src/control/caller.js';
import * as grants from '../../src/control/grants.js';
import * as ops from '../../src/control/operations.js';
import { grantState } from '../../src/grants/grant.js';
import { ForbiddenError, InvalidInputError, NotFoundError, Registry } from '../../src/issuer/registry.js';
import { AlreadyExistsError, type IssuerStore, openStore } from '../../src/issuer/store.js';

const acmeAdmin: Caller = { kind: 'admin', name: 'acme-admin', org: 'acme' };
const limits = { maxDurationMs: grants.DEFAULT_MAX_GRANT_DURATION_MS };

let store: IssuerStore;
let registry: Registry;

beforeEach(async () => {
  store = await openStore({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-grants-')) });
  registry = new Registry(store, Buffer.alloc(32, 7));
  await ops.createAgent(registry, OPERATOR, { name: 'acme-bot', org: 'acme', teams: ['sre'] });
  await ops.createAgent(registry, OPERATOR, { name: 'globex-bot', org: 'globex', teams: ['ops'] });
  await ops.createCluster(registry, OPERATOR, { name: 'acme-prod', org: 'acme' });
  await ops.createCluster(registry, OPERATOR, { name: 'globex-prod', org: 'globex' });
});
afterEach(async () => {
  await store.close();
});

const refusal = (promise: Promise<unknown>) => promise.then(() => undefined, (err: Error) => err);

describe('granting', () => {
  it('a grant to an agent or a group of the cluster\'s org is stored pending, with who made it', async () => {
    const toAgent = await grants.createGrant(registry, acmeAdmin, { cluster: 'acme-prod', agent: 'acme-bot', role: 'view' }, limits);
    expect(toAgent).toMatchObject({ id: expect.stringMatching(/^[a-z0-9]{12}$/), cluster: 'acme-prod', org: 'acme', grantee: { kind: 'agent', name: 'acme-bot' }, role: 'view', createdBy: 'admin:acme-admin', applied: { state: 'pending' } });
    const toGroup = await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'exec', namespace: 'web', expiresInMs: 3_600_000 }, limits);
    expect(toGroup).toMatchObject({ grantee: { kind: 'group', name: 'acme/sre' }, namespace: 'web', createdBy: 'operator' });
    expect(toGroup.expiresAt!.getTime() - toGroup.createdAt.getTime()).toBe(3_600_000);
    expect(grants.subjectOf(toAgent.grantee)).toEqual({ kind: 'User', name: 'agent:acme-bot' });
    expect(grants.subjectOf(toGroup.grantee)).toEqual({ kind: 'Group', name: 'acme/sre' });
  });

  it.each([
    ['another org\'s cluster', { cluster: 'globex-prod', agent: 'acme-bot', role: 'view' }, NotFoundError, /^no cluster named "globex-prod"/],
    ['another org\'s agent', { cluster: 'acme-prod', agent: 'globex-bot', role: 'view' }, NotFoundError, /^no agent named "globex-bot"/],
    ['another org\'s group', { cluster: 'acme-prod', group: 'globex/ops', role: 'view' }, ForbiddenError, /a grant joins a cluster and a grantee of one org/],
    ['both grantees', { cluster: 'acme-prod', agent: 'acme-bot', group: 'acme/sre', role: 'view' }, InvalidInputError, /not both/],
    ['no grantee', { cluster: 'acme-prod', role: 'view' }, InvalidInputError, /needs a grantee/],
    ['a malformed group', { cluster: 'acme-prod', group: 'acme', role: 'view' }, InvalidInputError, /is not ORG\/TEAM/],
    ['an unknown role', { cluster: 'acme-prod', agent: 'acme-bot', role: 'superuser' }, InvalidInputError, /^role "superuser" is not grantable on cluster "acme-prod": use one of cluster-admin, admin, edit, view, logs, exec, port-forward, read-only/],
    ['cluster-admin unconfirmed', { cluster: 'acme-prod', agent: 'acme-bot', role: 'cluster-admin' }, InvalidInputError, /--i-understand-cluster-admin/],
    ['a bad namespace', { cluster: 'acme-prod', agent: 'acme-bot', role: 'view', namespace: 'Web_1' }, InvalidInputError, /is not a Kubernetes namespace name/],
    ['an expiry in the past', { cluster: 'acme-prod', agent: 'acme-bot', role: 'view', expiresInMs: -1 }, InvalidInputError, /positive duration/],
    ['an expiry beyond the limit', { cluster: 'acme-prod', agent: 'acme-bot', role: 'view', expiresInMs: 31 * 86_400_000 }, InvalidInputError, /at most 30d on this issuer/],
  ])('%s is refused and nothing is stored', async (_case, request, type, message) => {
    const err = await refusal(grants.createGrant(registry, acmeAdmin, request, limits));
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    expect(await store.listGrants()).toEqual([]);
  });

  it('cluster-admin is granted once confirmed; a revoked agent or cluster gets none', async () => {
    expect((await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', agent: 'acme-bot', role: 'cluster-admin', confirmClusterAdmin: true }, limits)).role).toBe('cluster-admin');
    await ops.revokeAgent(registry, OPERATOR, 'acme-bot');
    expect((await refusal(grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', agent: 'acme-bot', role: 'view' }, limits)))?.message).toMatch(/^agent "acme-bot" was revoked/);
    await ops.revokeCluster(registry, OPERATOR, 'acme-prod');
    expect((await refusal(grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view' }, limits)))?.message).toMatch(/^cluster "acme-prod" was revoked/);
  });

  it('a duplicate is refused naming the grant that exists; once that one expired, granting again replaces it', async () => {
    let now = new Date(1_000_000);
    const clock = { ...limits, now: () => now };
    const first = await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view', expiresInMs: 60_000 }, clock);
    const again = await refusal(grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view' }, clock));
    expect(again).toBeInstanceOf(AlreadyExistsError);
    expect(again!.message).toBe(`grant ${first.id} already gives role view to group acme/sre on cluster acme-prod: remove it first to change its expiry`);
    // Another namespace or role is another grant.
    await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view', namespace: 'web' }, clock);
    now = new Date(1_000_000 + 60_000);
    expect(grantState((await store.findGrant(first.id))!, now)).toBe('expired');
    const renewed = await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view' }, clock);
    expect(renewed.id).not.toBe(first.id);
    expect(await store.findGrant(first.id)).toBeUndefined();
  });
});

describe('listing and removing', () => {
  it("an org admin lists and removes its org's grants only; another org's grant is not found", async () => {
    const acme = await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', agent: 'acme-bot', role: 'view' }, limits);
    const globex = await grants.createGrant(registry, OPERATOR, { cluster: 'globex-prod', agent: 'globex-bot', role: 'edit' }, limits);
    expect((await grants.listGrants(registry, acmeAdmin)).items.map((g) => g.id)).toEqual([acme.id]);
    expect((await grants.listGrants(registry, OPERATOR)).items.map((g) => g.id).sort()).toEqual([acme.id, globex.id].sort());
    expect((await grants.listGrants(registry, OPERATOR, { cluster: 'globex-prod' })).items.map((g) => g.id)).toEqual([globex.id]);
    expect((await grants.listGrants(registry, OPERATOR, { agent: 'acme-bot' })).items.map((g) => g.id)).toEqual([acme.id]);
    expect(await refusal(grants.listGrants(registry, acmeAdmin, { cluster: 'globex-prod' }))).toBeInstanceOf(NotFoundError);
    const across = await refusal(grants.removeGrant(registry, acmeAdmin, globex.id));
    expect(across).toBeInstanceOf(NotFoundError);
    expect(across!.message).toBe(`no grant "${globex.id}"; see kube-relay grant list`);
    expect(await store.findGrant(globex.id)).toBeDefined();
    expect((await grants.removeGrant(registry, acmeAdmin, acme.id)).id).toBe(acme.id);
    expect(await store.findGrant(acme.id)).toBeUndefined();
    expect(await refusal(grants.removeGrant(registry, acmeAdmin, acme.id))).toBeInstanceOf(NotFoundError);
  });

  it('pages by id with continue', async () => {
    for (const ns of ['a', 'b', 'c']) await grants.createGrant(registry, OPERATOR, { cluster: 'acme-prod', group: 'acme/sre', role: 'view', namespace: ns }, limits);
    const first = await grants.listGrants(registry, OPERATOR, { limit: 2 });
    const second = await grants.listGrants(registry, OPERATOR, { limit: 2, continue: first.continue });
    expect(first.items).toHaveLength(2);
    expect(second.items).toHaveLength(1);
    expect(second.continue).toBeUndefined();
    expect(new Set([...first.items, ...second.items].map((g) => g.namespace))).toEqual(new Set(['a', 'b', 'c']));
  });
});
