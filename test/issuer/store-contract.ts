/**
 * What every engine behind IssuerStore must do (DESIGN §9). Run against
 * SQLite in `npm test` (store.sqlite.test.ts) and against a real PostgreSQL
 * server in `npm run test:postgres` (test/postgres/store.postgres.test.ts).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyStore } from '../../src/issuer/store/copy.js';
import { migrate, SCHEMA_VERSION, SchemaTooNewError } from '../../src/issuer/store/migrations.js';
import { openEngine, openStore, type StoreLocation } from '../../src/issuer/store/open.js';
import { sqlStore } from '../../src/issuer/store/sql-store.js';
import { AlreadyExistsError, type IssuerStore, type RelayConnection } from '../../src/issuer/store/types.js';
import { auditRecord } from '../helpers/audit-records.js';

/** A relay connection as a hub replica records it, from `at` on, heard of then. */
function connection(id: string, at: number, overrides: Partial<RelayConnection> = {}): RelayConnection {
  return { id, cluster: 'prod-eu', hubReplica: 'hub-a', mode: 'tunnel', relayVersion: '0.1.0', connectedAt: new Date(at), lastHeardAt: new Date(at), heartbeatMs: 10_000, ready: true, ...overrides };
}

export function describeStoreContract(engineName: string, newLocation: () => Promise<StoreLocation>): void {
  const withStore = async (use: (store: IssuerStore) => Promise<void>) => {
    const store = await openStore(await newLocation());
    try {
      await use(store);
    } finally {
      await store.close();
    }
  };

  describe(`the issuer store on ${engineName}`, () => {
    it('creates, finds and lists agents; a name is unique', () =>
      withStore(async (store) => {
        await store.createAgent({ name: 'deployer', org: 'acme', teams: ['sre', 'platform'] }, 'hash-1');
        await store.createAgent({ name: 'auditor', org: 'acme', teams: ['sec'] }, 'hash-2');
        expect(await store.findAgent('deployer')).toMatchObject({ name: 'deployer', org: 'acme', teams: ['sre', 'platform'] });
        expect((await store.findAgent('deployer'))!.createdAt).toBeInstanceOf(Date);
        expect(await store.findAgent('deployer')).not.toHaveProperty('apiKeyHash');
        expect(await store.findAgentByKeyHash('hash-2')).toMatchObject({ name: 'auditor', apiKeyHash: 'hash-2' });
        expect(await store.findAgentByKeyHash('nope')).toBeUndefined();
        expect((await store.listAgents()).map((a) => a.name)).toEqual(['auditor', 'deployer']);
        await expect(store.createAgent({ name: 'deployer', org: 'acme', teams: ['x'] }, 'hash-3')).rejects.toThrow(AlreadyExistsError);
        await expect(store.createAgent({ name: 'other', org: 'acme', teams: ['x'] }, 'hash-1')).rejects.toThrow(AlreadyExistsError);
      }));

    it('stores grants: one per cluster, grantee, role and namespace (cluster-wide counts as one namespace); lists by org, cluster and grantee, in id order', () =>
      withStore(async (store) => {
        const base = { cluster: 'prod', org: 'acme', role: 'view', createdAt: new Date(5_000), createdBy: 'operator' };
        await store.createGrant({ ...base, id: 'bbbbbbbbbbbb', grantee: { kind: 'group', name: 'acme/sre' } });
        await store.createGrant({ ...base, id: 'aaaaaaaaaaaa', grantee: { kind: 'agent', name: 'bot' }, namespace: 'web', expiresAt: new Date(9_000) });
        await store.createGrant({ ...base, id: 'cccccccccccc', cluster: 'other', org: 'globex', grantee: { kind: 'agent', name: 'g' } });
        expect(await store.findGrant('aaaaaaaaaaaa')).toEqual({ ...base, id: 'aaaaaaaaaaaa', grantee: { kind: 'agent', name: 'bot' }, namespace: 'web', expiresAt: new Date(9_000), applied: { state: 'pending' } });
        expect(await store.findGrant('bbbbbbbbbbbb')).not.toHaveProperty('namespace');
        await expect(store.createGrant({ ...base, id: 'dddddddddddd', grantee: { kind: 'group', name: 'acme/sre' } })).rejects.toThrow(AlreadyExistsError);
        await store.createGrant({ ...base, id: 'eeeeeeeeeeee', grantee: { kind: 'group', name: 'acme/sre' }, namespace: 'web' });
        expect((await store.findSameGrant({ cluster: 'prod', grantee: { kind: 'group', name: 'acme/sre' }, role: 'view', namespace: undefined }))?.id).toBe('bbbbbbbbbbbb');
        expect(await store.findSameGrant({ cluster: 'prod', grantee: { kind: 'group', name: 'acme/sre' }, role: 'edit', namespace: undefined })).toBeUndefined();
        expect((await store.listGrants()).map((g) => g.id)).toEqual(['aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccccccccccc', 'eeeeeeeeeeee']);
        expect((await store.listGrants({ org: 'acme', after: 'aaaaaaaaaaaa', limit: 1 })).map((g) => g.id)).toEqual(['bbbbbbbbbbbb']);
        expect((await store.listGrants({ cluster: 'other' })).map((g) => g.id)).toEqual(['cccccccccccc']);
        expect((await store.listGrants({ grantee: { kind: 'group', name: 'acme/sre' } })).map((g) => g.id)).toEqual(['bbbbbbbbbbbb', 'eeeeeeeeeeee']);
        await store.reportGrantStates('prod', [{ id: 'aaaaaaaaaaaa', state: 'failed', reason: 'namespace web does not exist' }, { id: 'cccccccccccc', state: 'applied' }], new Date(7_000));
        expect((await store.findGrant('aaaaaaaaaaaa'))!.applied).toEqual({ state: 'failed', reason: 'namespace web does not exist', at: new Date(7_000) });
        // A relay reports only on its own cluster's grants.
        expect((await store.findGrant('cccccccccccc'))!.applied).toEqual({ state: 'pending' });
        await store.setGrantableRoles('prod', ['team-debugger', 'db-reader'], new Date(8_000));
        await store.setGrantableRoles('prod', ['db-reader'], new Date(9_000));
        expect(await store.grantableRoles('prod')).toEqual([{ name: 'db-reader', reportedAt: new Date(9_000) }]);
        expect(await store.grantableRoles('other')).toEqual([]);
        expect(await store.deleteGrant('bbbbbbbbbbbb')).toBe(true);
        expect(await store.deleteGrant('bbbbbbbbbbbb')).toBe(false);
        expect(await store.findGrant('bbbbbbbbbbbb')).toBeUndefined();
      }));

    it('replaces an active key only, and revoking twice keeps the first time', () =>
      withStore(async (store) => {
        await store.createAgent({ name: 'bot', org: 'acme', teams: ['sre'] }, 'old');
        expect(await store.replaceAgentKey('bot', 'new')).toBe(true);
        expect(await store.findAgentByKeyHash('old')).toBeUndefined();
        expect((await store.findAgentByKeyHash('new'))?.name).toBe('bot');
        expect(await store.replaceAgentKey('nobody', 'x')).toBe(false);
        const first = new Date(1_700_000_000_000);
        expect(await store.revokeAgent('bot', first)).toBe(true);
        expect(await store.revokeAgent('bot', new Date(1_800_000_000_000))).toBe(true);
        expect((await store.findAgent('bot'))!.revokedAt).toEqual(first);
        expect(await store.replaceAgentKey('bot', 'newer')).toBe(false);
        expect(await store.revokeAgent('nobody', first)).toBe(false);
      }));

    it('lists revocations since a time, oldest first', () =>
      withStore(async (store) => {
        for (const name of ['a', 'b', 'c']) await store.createAgent({ name, org: 'acme', teams: ['t'] }, `h-${name}`);
        await store.revokeAgent('b', new Date(2_000));
        await store.revokeAgent('a', new Date(3_000));
        await store.revokeAgent('c', new Date(1_000));
        expect(await store.revocationsSince(new Date(2_000))).toEqual([
          { subject: 'agent:b', revokedAt: new Date(2_000) },
          { subject: 'agent:a', revokedAt: new Date(3_000) },
        ]);
      }));

    it("keeps one policy per agent and per team, replaced whole, and gives an agent its own and its teams' only", () =>
      withStore(async (store) => {
        const at = new Date(1_700_000_000_000);
        const own = { subject: { kind: 'agent' as const, name: 'deployer' }, org: 'acme', policy: { readOnly: true, deny: [{ verbs: ['delete'], resources: ['pods'], namespaces: ['kube-system'] }] }, updatedAt: at, updatedBy: 'operator' };
        const sre = { subject: { kind: 'team' as const, name: 'acme/sre' }, org: 'acme', policy: { rate: { perSecond: 2.5, burst: 5 } }, updatedAt: at, updatedBy: 'admin:acme-admin' };
        await store.setPolicy(own);
        await store.setPolicy(sre);
        await store.setPolicy({ ...sre, subject: { kind: 'team', name: 'globex/sre' }, org: 'globex' });
        // An agent and a team may share a name: the kind is half the key.
        await store.setPolicy({ ...sre, subject: { kind: 'agent', name: 'acme/dev' } });
        expect(await store.findPolicy({ kind: 'agent', name: 'deployer' })).toEqual(own);
        expect(await store.findPolicy({ kind: 'team', name: 'deployer' })).toBeUndefined();
        expect(await store.policiesFor('deployer', ['acme/sre', 'acme/dev', 'acme/sre'])).toEqual([own, sre]);
        expect(await store.policiesFor('nobody', [])).toEqual([]);
        const replaced = { ...own, policy: { maxStreams: 0 }, updatedAt: new Date(at.getTime() + 1), updatedBy: 'admin:root' };
        await store.setPolicy(replaced);
        expect(await store.findPolicy({ kind: 'agent', name: 'deployer' })).toEqual(replaced);
        expect(await store.deletePolicy({ kind: 'agent', name: 'deployer' })).toBe(true);
        expect(await store.deletePolicy({ kind: 'agent', name: 'deployer' })).toBe(false);
        expect(await store.policiesFor('deployer', ['acme/sre'])).toEqual([sre]);
      }));

    it('gives token cuts in the revocation feed with revoked agents, in time order, each cut kept at its latest', () =>
      withStore(async (store) => {
        for (const name of ['a', 'b']) await store.createAgent({ name, org: 'acme', teams: ['t'] }, `h-${name}`);
        await store.revokeAgent('a', new Date(2_000));
        await store.cutTokens(['agent:b', 'agent:c', 'agent:b'], new Date(3_000));
        await store.cutTokens(['agent:c'], new Date(1_000));
        await store.cutTokens(['agent:d'], new Date(1_500));
        await store.cutTokens([], new Date(9_000));
        expect(await store.revocationsSince(new Date(2_000))).toEqual([
          { subject: 'agent:a', revokedAt: new Date(2_000) },
          { subject: 'agent:b', revokedAt: new Date(3_000) },
          { subject: 'agent:c', revokedAt: new Date(3_000) },
        ]);
        expect((await store.revocationsSince(new Date(0))).map((r) => r.subject)).toEqual(['agent:d', 'agent:a', 'agent:b', 'agent:c']);
        await store.cutTokens(['agent:a'], new Date(4_000));
        expect(await store.revocationsSince(new Date(3_500))).toEqual([{ subject: 'agent:a', revokedAt: new Date(4_000) }]);
      }));

    it('keeps clusters like agents', () =>
      withStore(async (store) => {
        await store.createCluster({ name: 'prod-eu', org: 'acme' }, 'c-hash');
        expect(await store.findCluster('prod-eu')).toMatchObject({ name: 'prod-eu', org: 'acme' });
        expect(await store.findClusterByKeyHash('c-hash')).toMatchObject({ name: 'prod-eu', connectorKeyHash: 'c-hash' });
        await expect(store.createCluster({ name: 'prod-eu', org: 'globex' }, 'other')).rejects.toThrow(AlreadyExistsError);
        expect(await store.replaceClusterKey('prod-eu', 'c-new')).toBe(true);
        expect(await store.findClusterByKeyHash('c-hash')).toBeUndefined();
        expect(await store.revokeCluster('prod-eu', new Date(5_000))).toBe(true);
        expect((await store.listClusters())[0]!.revokedAt).toEqual(new Date(5_000));
      }));

    it('keeps admins of one org and of all orgs: a name and a key hash are unique, keys are replaced while active, revoking twice keeps the first time', () =>
      withStore(async (store) => {
        await store.createAdmin({ name: 'acme-admin', org: 'acme' }, 'a-hash');
        await store.createAdmin({ name: 'root' }, 'r-hash');
        await store.createAdmin({ name: 'globex-admin', org: 'globex' }, 'g-hash');
        expect(await store.findAdmin('acme-admin')).toMatchObject({ name: 'acme-admin', org: 'acme' });
        expect(await store.findAdmin('acme-admin')).not.toHaveProperty('keyHash');
        expect((await store.findAdmin('acme-admin'))!.createdAt).toBeInstanceOf(Date);
        const root = await store.findAdmin('root');
        expect(root).toMatchObject({ name: 'root' });
        expect(root).not.toHaveProperty('org');
        expect(await store.findAdminByKeyHash('r-hash')).toMatchObject({ name: 'root', keyHash: 'r-hash' });
        expect(await store.findAdminByKeyHash('nope')).toBeUndefined();
        expect(await store.findAdmin('nobody')).toBeUndefined();
        await expect(store.createAdmin({ name: 'root', org: 'acme' }, 'other')).rejects.toThrow(AlreadyExistsError);
        await expect(store.createAdmin({ name: 'second' }, 'a-hash')).rejects.toThrow(AlreadyExistsError);
        expect((await store.listAdmins()).map((a) => a.name)).toEqual(['acme-admin', 'globex-admin', 'root']);
        // An org's list never holds the all-orgs admins.
        expect((await store.listAdmins({ org: 'acme' })).map((a) => a.name)).toEqual(['acme-admin']);
        expect(await store.replaceAdminKey('acme-admin', 'a-new')).toBe(true);
        expect(await store.findAdminByKeyHash('a-hash')).toBeUndefined();
        expect((await store.findAdminByKeyHash('a-new'))?.name).toBe('acme-admin');
        expect(await store.replaceAdminKey('nobody', 'x')).toBe(false);
        const first = new Date(1_700_000_000_000);
        expect(await store.revokeAdmin('acme-admin', first)).toBe(true);
        expect(await store.revokeAdmin('acme-admin', new Date(1_800_000_000_000))).toBe(true);
        expect((await store.findAdmin('acme-admin'))!.revokedAt).toEqual(first);
        expect((await store.findAdminByKeyHash('a-new'))!.revokedAt).toEqual(first);
        expect(await store.replaceAdminKey('acme-admin', 'a-newer')).toBe(false);
        expect(await store.revokeAdmin('nobody', first)).toBe(false);
      }));

    it('lists one page at a time, in name order, of one org when asked', () =>
      withStore(async (store) => {
        for (const [name, org] of [['e', 'acme'], ['a', 'acme'], ['c', 'globex'], ['b', 'acme'], ['d', 'globex']] as const) {
          await store.createAgent({ name, org, teams: ['t'] }, `agent-${name}`);
          await store.createCluster({ name, org }, `cluster-${name}`);
          await store.createAdmin({ name, org }, `admin-${name}`);
        }
        for (const list of [store.listAgents.bind(store), store.listClusters.bind(store), store.listAdmins.bind(store)]) {
          expect((await list({ limit: 2 })).map((x) => x.name)).toEqual(['a', 'b']);
          expect((await list({ after: 'b', limit: 2 })).map((x) => x.name)).toEqual(['c', 'd']);
          expect((await list({ after: 'd', limit: 2 })).map((x) => x.name)).toEqual(['e']);
          expect((await list({ org: 'acme', after: 'a' })).map((x) => x.name)).toEqual(['b', 'e']);
          expect((await list({ org: 'globex', limit: 1 })).map((x) => x.name)).toEqual(['c']);
          expect(await list({ org: 'initech' })).toEqual([]);
        }
      }));

    it("keeps each signer's newest public keys in order, even when added within one millisecond, and lists only live signers'", () =>
      withStore(async (store) => {
        const at = new Date(1_700_000_000_000);
        for (const kid of ['a1', 'a2', 'a3']) await store.publishSigningKey({ kid, signer: 'replica-a', publicJwk: `{"x":"${kid}"}`, createdAt: at }, 2);
        await store.publishSigningKey({ kid: 'b1', signer: 'replica-b', publicJwk: '{"x":"b1"}', createdAt: at }, 2);
        await store.touchSigner('replica-a', new Date(10_000));
        await store.touchSigner('replica-b', new Date(5_000));
        await store.touchSigner('replica-b', new Date(20_000));
        const live = await store.publicSigningKeys(new Date(9_000));
        expect(live.map((k) => k.kid).sort()).toEqual(['a2', 'a3', 'b1']);
        const a = live.filter((k) => k.signer === 'replica-a');
        expect(a.map((k) => k.kid)).toEqual(['a3', 'a2']);
        expect(a[0]!.createdAt.getTime()).toBeGreaterThan(a[1]!.createdAt.getTime());
        expect(a[0]).toMatchObject({ publicJwk: '{"x":"a3"}' });
        expect((await store.publicSigningKeys(new Date(15_000))).map((k) => k.kid)).toEqual(['b1']);
      }));

    it('keeps relay connections whole, live while heard within three heartbeats, and closed for good', () =>
      withStore(async (store) => {
        const t = 1_700_000_000_000;
        await store.saveRelayConnections([
          connection('c-b', t + 5, { hubReplica: 'hub-b', mode: 'direct', relayVersion: undefined, ready: false, notReadyReason: 'waiting for the Kubernetes API server' }),
          connection('c-a', t),
          connection('c-other', t, { cluster: 'staging' }),
        ]);
        const live = await store.liveRelayConnections('prod-eu', new Date(t + 1_000));
        expect(live.map((c) => c.id)).toEqual(['c-a', 'c-b']);
        expect(live[0]).toEqual(connection('c-a', t));
        expect(live[1]).toEqual({ ...connection('c-b', t + 5, { hubReplica: 'hub-b', mode: 'direct', ready: false, notReadyReason: 'waiting for the Kubernetes API server' }), relayVersion: undefined });
        expect(live[1]).not.toHaveProperty('relayVersion');

        // A change of readiness is the same row written again.
        await store.saveRelayConnections([connection('c-b', t + 5, { hubReplica: 'hub-b', mode: 'direct', relayVersion: undefined, ready: true, lastHeardAt: new Date(t + 6) })]);
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 1_000)))[1]).toMatchObject({ ready: true, lastHeardAt: new Date(t + 6) });
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 1_000)))[1]).not.toHaveProperty('notReadyReason');

        // Three heartbeats after it was last heard of, a connection counts no more.
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 30_000))).map((c) => c.id)).toEqual(['c-a', 'c-b']);
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 30_001))).map((c) => c.id)).toEqual(['c-b']);
        expect(await store.liveRelayConnections('prod-eu', new Date(t + 30_007))).toEqual([]);
        await store.touchRelayConnections(['c-a', 'no-such-connection'], new Date(t + 25_000));
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 40_000))).map((c) => c.id)).toEqual(['c-a']);

        // Closed: no longer live, not refreshed, and no later write of an open state reopens it.
        await store.saveRelayConnections([connection('c-a', t, { lastHeardAt: new Date(t + 26_000), disconnectedAt: new Date(t + 26_000) })]);
        await store.touchRelayConnections(['c-a'], new Date(t + 27_000));
        await store.saveRelayConnections([connection('c-a', t, { lastHeardAt: new Date(t + 28_000) })]);
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 28_000))).map((c) => c.id)).toEqual(['c-b']);
        // The cluster's last end: c-a's close, later than c-b's last heartbeat (t + 6) until c-b is heard of again.
        expect(await store.relayConnectionsEndedAt('prod-eu')).toEqual(new Date(t + 26_000));
        await store.saveRelayConnections([connection('c-b', t + 5, { hubReplica: 'hub-b', mode: 'direct', ready: true, lastHeardAt: new Date(t + 27_500) })]);
        expect(await store.relayConnectionsEndedAt('prod-eu')).toEqual(new Date(t + 27_500));
        expect(await store.relayConnectionsEndedAt('staging')).toEqual(new Date(t));
        expect(await store.relayConnectionsEndedAt('never-connected')).toBeUndefined();
      }));

    it('refreshes and saves thousands of relay connections in one call each', () =>
      withStore(async (store) => {
        const t = 1_700_000_000_000;
        const many = Array.from({ length: 1_237 }, (_, i) => connection(`c-${String(i).padStart(4, '0')}`, t));
        await store.saveRelayConnections(many);
        await store.touchRelayConnections(many.map((c) => c.id), new Date(t + 20_000));
        const live = await store.liveRelayConnections('prod-eu', new Date(t + 45_000));
        expect(live).toHaveLength(1_237);
        expect(live.every((c) => c.lastHeardAt.getTime() === t + 20_000)).toBe(true);
      }));

    it("purges ended relay connections, keeping each cluster's latest and every live one", () =>
      withStore(async (store) => {
        const t = 1_700_000_000_000;
        await store.saveRelayConnections([
          connection('old-closed', t, { disconnectedAt: new Date(t + 1_000) }),
          connection('old-stale', t, { lastHeardAt: new Date(t + 2_000) }),
          connection('latest-closed', t, { disconnectedAt: new Date(t + 3_000) }),
          connection('live', t + 500_000),
          connection('staging-only', t, { cluster: 'staging', disconnectedAt: new Date(t + 1_000) }),
        ]);
        expect(await store.purgeRelayConnections(new Date(t + 400_000))).toBe(3);
        expect(await store.relayConnectionsEndedAt('staging')).toEqual(new Date(t + 1_000));
        expect((await store.liveRelayConnections('prod-eu', new Date(t + 500_000))).map((c) => c.id)).toEqual(['live']);
        // With the live one gone, the cluster's last end is what is left to say when it was last connected.
        await store.saveRelayConnections([connection('live', t + 500_000, { disconnectedAt: new Date(t + 600_000) })]);
        expect(await store.purgeRelayConnections(new Date(t + 700_000))).toBe(0);
        expect(await store.relayConnectionsEndedAt('prod-eu')).toEqual(new Date(t + 600_000));
      }));

    it("ends an agent's open sessions at its revocation, leaves ended ones be, and starts a new one for what comes after", () =>
      withStore(async (store) => {
        const cluster = { name: 'prod-eu', org: 'acme' };
        const t = 1_800_000_000_000;
        await store.ingestAudit(cluster, [auditRecord('leaver', 'prod-eu', t), auditRecord('leaver', 'prod-eu', t + 3_600_000), auditRecord('stayer', 'prod-eu', t + 3_600_000)]);
        const revokedAt = new Date(t + 3_660_000);
        expect(await store.endAgentSessions('leaver', revokedAt)).toBe(1);
        const [latest, earliest] = await store.listSessions({ agent: 'leaver', limit: 10 });
        expect(latest!.endedAt).toEqual(revokedAt);
        expect(earliest!.endedAt).toBeUndefined(); // it ended by its gap an hour before
        expect((await store.listSessions({ agent: 'stayer', limit: 10 }))[0]!.endedAt).toBeUndefined();
        await store.ingestAudit(cluster, [auditRecord('leaver', 'prod-eu', t + 3_700_000, { decision: 'denied', status: 401 })]);
        const after = await store.listSessions({ agent: 'leaver', limit: 10 });
        expect(after).toHaveLength(3);
        expect(after[0]!.id).not.toBe(latest!.id);
        expect(after[0]!.refusals).toBe(1);
        expect((await store.findSession(latest!.id))!.requests).toBe(1);
      }));

    it('keeps console sessions by digest until they expire, replaced whole, touched without their data, deleted and pruned', () =>
      withStore(async (store) => {
        const t = 1_800_000_000_000;
        await store.saveConsoleSession('digest-a', '{"admin":"root"}', t + 60_000);
        await store.saveConsoleSession('digest-b', '{"csrfToken":"x"}', t + 1_000);
        expect(await store.findConsoleSession('digest-a', t)).toBe('{"admin":"root"}');
        expect(await store.findConsoleSession('digest-b', t + 1_000)).toBeUndefined(); // expired at its expiry
        await store.saveConsoleSession('digest-a', '{"admin":"root","lastActiveMs":1}', t + 60_000);
        await store.touchConsoleSession('digest-a', t + 120_000);
        expect(await store.findConsoleSession('digest-a', t + 90_000)).toBe('{"admin":"root","lastActiveMs":1}');
        expect(await store.pruneConsoleSessions(t + 100_000)).toBe(1); // b only
        await store.deleteConsoleSession('digest-a');
        expect(await store.findConsoleSession('digest-a', t)).toBeUndefined();
        expect(await store.pruneConsoleSessions(t + 200_000)).toBe(0);
      }));

    it('settings: the first writer wins', () =>
      withStore(async (store) => {
        expect(await store.setting('pepper-check')).toBeUndefined();
        expect(await store.initSetting('pepper-check', 'first')).toBe('first');
        expect(await store.initSetting('pepper-check', 'second')).toBe('first');
        expect(await store.setting('pepper-check')).toBe('first');
      }));

    it('migrates once: a second start applies nothing, and two starting together apply each version once', async () => {
      const location = await newLocation();
      const [a, b] = await Promise.all([openEngine(location), openEngine(location)]);
      try {
        const [fromA, fromB] = await Promise.all([migrate(a), migrate(b)]);
        expect([...fromA, ...fromB].sort()).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
        expect(await migrate(a)).toEqual([]);
        const versions = await a.query<{ version: number | string }>('SELECT version FROM kube_relay_schema ORDER BY version');
        expect(versions.map((v) => Number(v.version))).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('refuses a store whose schema is newer than this code knows, with a sentence', async () => {
      const location = await newLocation();
      const engine = await openEngine(location);
      try {
        await migrate(engine);
        await engine.execute('INSERT INTO kube_relay_schema (version, name, applied_at) VALUES (?, ?, ?)', [SCHEMA_VERSION + 1, 'from the future', 0]);
      } finally {
        await engine.close();
      }
      await expect(openStore(location)).rejects.toThrow(SchemaTooNewError);
      await expect(openStore(location)).rejects.toThrow(/schema version \d+, newer than this kube-relay knows/);
    });

    it('receives a whole SQLite store with store migrate, key hashes and all, and refuses to migrate into a store that is not empty', async () => {
      const sourceDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-source-'));
      const source = await openEngine({ dataDir: sourceDir });
      await migrate(source);
      const sourceStore = sqlStore(source);
      await sourceStore.createAgent({ name: 'deployer', org: 'acme', teams: ['sre'] }, 'agent-hash');
      await sourceStore.createCluster({ name: 'prod-eu', org: 'acme' }, 'cluster-hash');
      await sourceStore.revokeAgent('deployer', new Date(9_000));
      await sourceStore.publishSigningKey({ kid: 'k1', signer: 'replica-a', publicJwk: '{}', createdAt: new Date(1_000) }, 2);
      await sourceStore.touchSigner('replica-a', new Date(2_000));
      await sourceStore.initSetting('pepper-check', 'check');
      await sourceStore.createAdmin({ name: 'root' }, 'admin-hash');
      await sourceStore.createGrant({ id: 'aaaaaaaaaaaa', cluster: 'prod-eu', org: 'acme', grantee: { kind: 'agent', name: 'deployer' }, role: 'view', createdAt: new Date(1), createdBy: 'operator' });
      await sourceStore.saveRelayConnections([connection('c-1', 1_000, { disconnectedAt: new Date(5_000) })]);
      await sourceStore.setPolicy({ subject: { kind: 'team', name: 'acme/sre' }, org: 'acme', policy: { readOnly: true }, updatedAt: new Date(6_000), updatedBy: 'operator' });
      await sourceStore.cutTokens(['agent:deployer'], new Date(7_000));
      // More records than copyStore reads at a time, so the copy pages through them.
      await sourceStore.ingestAudit({ name: 'prod-eu', org: 'acme' }, Array.from({ length: 1_001 }, (_, i) => auditRecord('deployer', 'prod-eu', 10_000 + i * 100)));
      const targetEngine = await openEngine(await newLocation());
      try {
        await migrate(targetEngine);
        expect(await copyStore(source, targetEngine)).toEqual({ agents: 1, clusters: 1, admins: 1, public_signing_keys: 1, signers: 1, store_settings: 1, relay_connections: 1, grants: 1, grantable_roles: 0, policies: 1, token_cuts: 1, sessions: 1, audit_records: 1_001 });
        const target = sqlStore(targetEngine);
        expect(await target.findAgentByKeyHash('agent-hash')).toMatchObject({ name: 'deployer', revokedAt: new Date(9_000) });
        expect(await target.findClusterByKeyHash('cluster-hash')).toMatchObject({ name: 'prod-eu' });
        expect((await target.publicSigningKeys(new Date(0))).map((k) => k.kid)).toEqual(['k1']);
        expect(await target.setting('pepper-check')).toBe('check');
        expect(await target.findAdminByKeyHash('admin-hash')).toMatchObject({ name: 'root' });
        expect(await target.findGrant('aaaaaaaaaaaa')).toMatchObject({ role: 'view', grantee: { kind: 'agent', name: 'deployer' } });
        expect(await target.relayConnectionsEndedAt('prod-eu')).toEqual(new Date(5_000));
        expect(await target.policiesFor('deployer', ['acme/sre'])).toMatchObject([{ subject: { kind: 'team', name: 'acme/sre' }, policy: { readOnly: true } }]);
        expect(await target.revocationsSince(new Date(6_500))).toEqual([{ subject: 'agent:deployer', revokedAt: new Date(7_000) }, { subject: 'agent:deployer', revokedAt: new Date(9_000) }]);
        expect((await target.listSessions({ agent: 'deployer', limit: 10 })).map((session) => session.requests)).toEqual([1_001]);
        await expect(copyStore(source, targetEngine)).rejects.toThrow(/is not empty/);
      } finally {
        await source.close();
        await targetEngine.close();
      }
    });
  });
}
