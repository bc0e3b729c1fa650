/**
 * Policy operations (issue 19 item 1, DESIGN §13): an org admin manages the policies of its own
 * org's agents and teams only (another org's agent is "not found", another org's team 403); set
 * replaces the whole policy and an empty one clears it; an agent's effective policy is its own
 * merged with each of its teams' (and no other org's team of the same name); `now` cuts exactly
 * the live agents the policy applies to, and those cuts are in the revocation feed.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Caller, OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import * as policies from '../../src/control/policies.js';
import { policyView } from '../../src/control/views.js';
import { ForbiddenError, InvalidInputError, NotFoundError, Registry } from '../../src/issuer/registry.js';
import { type IssuerStore, openStore } from '../../src/issuer/store.js';
import { parseDenyRule } from '../../src/policy/policy.js';

const acmeAdmin: Caller = { kind: 'admin', name: 'acme-admin', org: 'acme' };
const rule = parseDenyRule;

let store: IssuerStore;
let registry: Registry;

beforeEach(async () => {
  store = await openStore({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-policies-')) });
  registry = new Registry(store, Buffer.alloc(32, 7));
  await ops.createAgent(registry, OPERATOR, { name: 'a-sre', org: 'acme', teams: ['sre'] });
  await ops.createAgent(registry, OPERATOR, { name: 'a-both', org: 'acme', teams: ['sre', 'dev'] });
  await ops.createAgent(registry, OPERATOR, { name: 'a-dev', org: 'acme', teams: ['dev'] });
  await ops.createAgent(registry, OPERATOR, { name: 'a-gone', org: 'acme', teams: ['sre'] });
  await ops.revokeAgent(registry, OPERATOR, 'a-gone');
  await ops.createAgent(registry, OPERATOR, { name: 'g-sre', org: 'globex', teams: ['sre'] });
});
afterEach(async () => {
  await store.close();
});

const refusal = (promise: Promise<unknown>) => promise.then(() => undefined, (err: Error) => err);

describe('who may manage which policy', () => {
  it("an org admin sets and reads its org's agents' and teams' policies, recorded as its change", async () => {
    const at = new Date(1_700_000_000_000);
    const agent = await policies.setPolicy(registry, acmeAdmin, { agent: 'a-sre' }, { readOnly: true }, {}, at);
    expect(agent).toMatchObject({ subject: { kind: 'agent', name: 'a-sre' }, org: 'acme', policy: { readOnly: true }, updatedAt: at, updatedBy: 'admin:acme-admin' });
    const team = await policies.setPolicy(registry, acmeAdmin, { team: 'acme/sre' }, { maxStreams: 2 }, {}, at);
    expect(team).toMatchObject({ subject: { kind: 'team', name: 'acme/sre' }, org: 'acme', policy: { maxStreams: 2 } });
    expect(team).not.toHaveProperty('effective');
    expect((await policies.getPolicy(registry, acmeAdmin, { team: 'acme/sre' })).policy).toEqual({ maxStreams: 2 });
  });

  it.each([
    ["another org's agent is not found", { agent: 'g-sre' }, NotFoundError, /^no agent named "g-sre"; see kube-relay agent list$/],
    ['a missing agent is not found', { agent: 'nobody' }, NotFoundError, /^no agent named "nobody"/],
    ["another org's team is forbidden", { team: 'globex/sre' }, ForbiddenError, /^team "globex\/sre" is of org "globex": admin "acme-admin" of org "acme" manages the policies of its own org's agents and teams only$/],
    ['a team that is not ORG/TEAM', { team: 'sre' }, InvalidInputError, /^team "sre" is not ORG\/TEAM/],
    ['both subjects', { agent: 'a-sre', team: 'acme/sre' }, InvalidInputError, /not both/],
    ['no subject', {}, InvalidInputError, /needs a subject/],
  ])('%s, on set, show and clear alike, and nothing is stored', async (_case, subject, type, message) => {
    for (const attempt of [
      policies.setPolicy(registry, acmeAdmin, subject, { readOnly: true }, { now: true }),
      policies.getPolicy(registry, acmeAdmin, subject),
      policies.clearPolicy(registry, acmeAdmin, subject, { now: true }),
    ]) {
      const err = await refusal(attempt);
      expect(err).toBeInstanceOf(type);
      expect(err!.message).toMatch(message);
    }
    expect(await store.policiesFor('g-sre', ['globex/sre'])).toEqual([]);
    expect(await store.revocationsSince(new Date(0))).toEqual([{ subject: 'agent:a-gone', revokedAt: expect.any(Date) }]);
  });

  it("the operator and an all-orgs admin manage every org's", async () => {
    await policies.setPolicy(registry, OPERATOR, { team: 'globex/sre' }, { dryRun: true });
    const root: Caller = { kind: 'admin', name: 'root' };
    expect((await policies.setPolicy(registry, root, { agent: 'g-sre' }, { readOnly: true })).updatedBy).toBe('admin:root');
    expect((await policies.getPolicy(registry, root, { agent: 'g-sre' })).effective).toEqual({ readOnly: true, dryRun: true });
  });
});

describe('set replaces, clear removes', () => {
  it('a set replaces the whole policy; an empty one is a clear; a subject without one reads as empty', async () => {
    await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { readOnly: true, deny: [rule('delete:pods@kube-system')], maxStreams: 4 });
    const replaced = await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { rate: { perSecond: 5, burst: 10 } });
    expect(replaced.policy).toEqual({ rate: { perSecond: 5, burst: 10 } });
    expect((await store.findPolicy({ kind: 'agent', name: 'a-sre' }))!.policy).toEqual({ rate: { perSecond: 5, burst: 10 } });
    const emptied = await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { readOnly: false, deny: [] });
    expect(emptied).toEqual({ subject: { kind: 'agent', name: 'a-sre' }, org: 'acme', policy: {}, effective: {} });
    expect(await store.findPolicy({ kind: 'agent', name: 'a-sre' })).toBeUndefined();
    // Clearing what is not there is no error.
    expect((await policies.clearPolicy(registry, OPERATOR, { team: 'acme/sre' })).policy).toEqual({});
    expect(policyView(await policies.getPolicy(registry, OPERATOR, { team: 'acme/dev' }))).toEqual({
      subject: { kind: 'team', name: 'acme/dev' },
      org: 'acme',
      policy: { readOnly: false, dryRun: false, deny: [], rate: null, maxStreams: null },
      updatedAt: null,
      updatedBy: null,
    });
  });

  it('deny rules are stored as --deny reads them back, each once', async () => {
    const set = await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { deny: [rule('delete,delete:pods@*'), rule('delete:pods'), rule('get:secrets@a,b')] });
    expect(policyView(set).policy.deny).toEqual(['delete:pods', 'get:secrets@a,b']);
  });

  it.each([
    ['a rate of none a second', { rate: { perSecond: 0, burst: 1 } }, /^rate "0" must be requests a second/],
    ['a burst that is no whole number', { rate: { perSecond: 5, burst: 1.5 } }, /^burst "1.5" must be a whole number/],
    ['a negative max-streams', { maxStreams: -1 }, /^max-streams must be a whole number/],
    ['a deny rule with a verb Kubernetes has not', { deny: [{ verbs: ['remove'], resources: ['pods'] }] }, /^verb "remove" in a deny rule is not a Kubernetes verb/],
    ['too many deny rules', { deny: Array.from({ length: 65 }, (_, i) => rule(`get:r${i}`)) }, /at most 64 deny rules/],
  ])('%s is refused with the policy\'s sentence and nothing is stored', async (_case, policy, message) => {
    await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { readOnly: true });
    const err = await refusal(policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, policy, { now: true }));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err!.message).toMatch(message);
    expect((await store.findPolicy({ kind: 'agent', name: 'a-sre' }))!.policy).toEqual({ readOnly: true });
    expect((await store.revocationsSince(new Date(0))).map((r) => r.subject)).toEqual(['agent:a-gone']);
  });

  it('a revoked agent gets no policy, but its policy can be cleared', async () => {
    await policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { readOnly: true });
    await ops.revokeAgent(registry, OPERATOR, 'a-sre');
    expect((await refusal(policies.setPolicy(registry, OPERATOR, { agent: 'a-sre' }, { dryRun: true })))?.message).toMatch(/^agent "a-sre" was revoked at .*: it gets no token a policy could apply to$/);
    expect((await policies.clearPolicy(registry, OPERATOR, { agent: 'a-sre' })).policy).toEqual({});
  });
});

describe('the effective policy', () => {
  it("merges an agent's own with each of its two teams', the stricter winning, and no other org's team of the same name", async () => {
    await policies.setPolicy(registry, OPERATOR, { agent: 'a-both' }, { deny: [rule('delete:pods')], rate: { perSecond: 10, burst: 20 } });
    await policies.setPolicy(registry, OPERATOR, { team: 'acme/sre' }, { readOnly: true, rate: { perSecond: 5, burst: 30 } });
    await policies.setPolicy(registry, OPERATOR, { team: 'acme/dev' }, { maxStreams: 3, deny: [rule('create:pods/exec'), rule('delete:pods')] });
    await policies.setPolicy(registry, OPERATOR, { team: 'globex/sre' }, { dryRun: true, maxStreams: 0 });
    const agent = (await registry.findAgent('a-both'))!;
    const effective = await policies.effectivePolicy(registry, agent);
    expect(effective).toEqual({ readOnly: true, deny: [rule('delete:pods'), rule('create:pods/exec')], rate: { perSecond: 5, burst: 20 }, maxStreams: 3 });
    const shown = await policies.getPolicy(registry, acmeAdmin, { agent: 'a-both' });
    expect(shown.policy).toEqual({ deny: [rule('delete:pods')], rate: { perSecond: 10, burst: 20 } });
    expect(shown.effective).toEqual(effective);
    // An agent with no policy of its own carries its team's; one whose teams have none carries nothing.
    expect(await policies.effectivePolicy(registry, (await registry.findAgent('a-dev'))!)).toEqual({ maxStreams: 3, deny: [rule('create:pods/exec'), rule('delete:pods')] });
    await policies.clearPolicy(registry, OPERATOR, { team: 'acme/dev' });
    expect(await policies.effectivePolicy(registry, (await registry.findAgent('a-dev'))!)).toEqual({});
  });
});

describe('now: the tokens of the agents it applies to are cut', () => {
  const later = () => new Date(Date.now() + 60_000);

  it("a team's change cuts its org's live agents of that team, and no one else; the feed says so", async () => {
    const at = later();
    const set = await policies.setPolicy(registry, acmeAdmin, { team: 'acme/sre' }, { readOnly: true }, { now: true }, at);
    expect(set.tokensCut).toEqual({ at, agents: ['a-both', 'a-sre'] });
    expect(await store.revocationsSince(at)).toEqual([
      { subject: 'agent:a-both', revokedAt: at },
      { subject: 'agent:a-sre', revokedAt: at },
    ]);
  });

  it("an agent's change cuts that agent only; a change without now cuts nothing; a later cut replaces an earlier one", async () => {
    const first = later();
    await policies.setPolicy(registry, OPERATOR, { agent: 'a-dev' }, { dryRun: true }, {}, first);
    expect(await store.revocationsSince(first)).toEqual([]);
    const cut = await policies.setPolicy(registry, OPERATOR, { agent: 'a-dev' }, { dryRun: true, maxStreams: 1 }, { now: true }, first);
    expect(cut.tokensCut).toEqual({ at: first, agents: ['a-dev'] });
    const second = new Date(first.getTime() + 5_000);
    const cleared = await policies.clearPolicy(registry, OPERATOR, { agent: 'a-dev' }, { now: true }, second);
    expect(cleared.tokensCut).toEqual({ at: second, agents: ['a-dev'] });
    expect(await store.revocationsSince(first)).toEqual([{ subject: 'agent:a-dev', revokedAt: second }]);
    // A revoked agent's tokens are refused already: nothing to cut.
    expect((await policies.clearPolicy(registry, OPERATOR, { agent: 'a-gone' }, { now: true }, second)).tokensCut).toEqual({ at: second, agents: [] });
  });
});
