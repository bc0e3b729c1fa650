/**
 * One reconciliation pass (issue 17 item 3) against an in-memory API server: grants become
 * labelled bindings named kube-relay-<id>; a second pass changes nothing; removed and expired
 * grants lose their bindings; hand edits and deletions of managed bindings are repaired; a
 * binding kube-relay did not create is never touched and its grant is reported failed; custom
 * roles only when labelled grantable; missing namespaces and unbindable roles are reasons.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLUSTER_LABEL, type ClusterGrant, GRANT_LABEL, MANAGED_BY_LABEL, reconcileGrants } from '../../src/grants/reconciler.js';
import { KubeApi } from '../../src/kube-api/client.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';

let fake: FakeRbac;
let api: KubeApi;
const now = new Date('2026-12-01T12:00:00Z');

beforeEach(async () => {
  fake = await startFakeRbac();
  fake.namespaces.add('web');
  api = new KubeApi(fake.upstream);
});
afterEach(async () => {
  await fake.close();
});

const viewForSre: ClusterGrant = { id: 'aaaaaaaaaaaa', role: 'view', subject: { kind: 'Group', name: 'acme/sre' } };
const execInWeb: ClusterGrant = { id: 'bbbbbbbbbbbb', role: 'exec', namespace: 'web', subject: { kind: 'User', name: 'agent:deployer' } };

describe('reconcileGrants', () => {
  it('makes each grant a labelled binding to its ClusterRole, and a second pass changes nothing', async () => {
    const first = await reconcileGrants(api, 'prod', [viewForSre, execInWeb], now);
    expect(first.outcomes).toEqual([{ id: viewForSre.id, state: 'applied' }, { id: execInWeb.id, state: 'applied' }]);
    expect(first.created).toEqual(['ClusterRoleBinding kube-relay-aaaaaaaaaaaa', 'RoleBinding web/kube-relay-bbbbbbbbbbbb']);
    expect(fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa')).toMatchObject({
      kind: 'ClusterRoleBinding',
      metadata: { labels: { [MANAGED_BY_LABEL]: 'kube-relay', [CLUSTER_LABEL]: 'prod', [GRANT_LABEL]: viewForSre.id } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
      subjects: [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'acme/sre' }],
    });
    expect(fake.get('rolebindings/web', 'kube-relay-bbbbbbbbbbbb')).toMatchObject({ roleRef: { name: 'kube-relay-exec' }, subjects: [{ kind: 'User', name: 'agent:deployer' }] });
    const writes = fake.requests.filter((r) => r.method !== 'GET').length;
    const second = await reconcileGrants(api, 'prod', [viewForSre, execInWeb], now);
    expect([second.created, second.updated, second.deleted]).toEqual([[], [], []]);
    expect(fake.requests.filter((r) => r.method !== 'GET').length).toBe(writes);
  });

  it("deletes the bindings of removed and expired grants, and only this cluster's managed ones", async () => {
    fake.put('clusterrolebindings', { metadata: { name: 'someone-elses' }, roleRef: { kind: 'ClusterRole', name: 'view' } });
    fake.put('clusterrolebindings', { metadata: { name: 'kube-relay-zzzzzzzzzzzz', labels: { [MANAGED_BY_LABEL]: 'kube-relay', [CLUSTER_LABEL]: 'other', [GRANT_LABEL]: 'zzzzzzzzzzzz' } }, roleRef: { kind: 'ClusterRole', name: 'view' } });
    const expiring = { ...execInWeb, expiresAt: new Date(now.getTime() + 1000).toISOString() };
    await reconcileGrants(api, 'prod', [viewForSre, expiring], now);
    const later = new Date(now.getTime() + 1000);
    const result = await reconcileGrants(api, 'prod', [expiring], later);
    expect(result.deleted.sort()).toEqual(['ClusterRoleBinding kube-relay-aaaaaaaaaaaa', 'RoleBinding web/kube-relay-bbbbbbbbbbbb']);
    expect(result.outcomes).toEqual([]);
    expect(fake.get('clusterrolebindings', 'someone-elses')).toBeDefined();
    expect(fake.get('clusterrolebindings', 'kube-relay-zzzzzzzzzzzz')).toBeDefined();
  });

  it('repairs drift: a managed binding edited, deleted or pointed at another role', async () => {
    await reconcileGrants(api, 'prod', [viewForSre, execInWeb], now);
    const edited = fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa')!;
    fake.put('clusterrolebindings', { ...edited, subjects: [{ kind: 'Group', name: 'system:authenticated' }] });
    fake.objects.get('rolebindings/web')!.delete('kube-relay-bbbbbbbbbbbb');
    const repaired = await reconcileGrants(api, 'prod', [viewForSre, execInWeb], now);
    expect(repaired.updated).toEqual(['ClusterRoleBinding kube-relay-aaaaaaaaaaaa']);
    expect(repaired.created).toEqual(['RoleBinding web/kube-relay-bbbbbbbbbbbb']);
    expect(fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa')!.subjects).toEqual([{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'acme/sre' }]);
    fake.put('clusterrolebindings', { ...fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa')!, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' } });
    const replaced = await reconcileGrants(api, 'prod', [viewForSre, execInWeb], now);
    expect(replaced.updated).toEqual(['ClusterRoleBinding kube-relay-aaaaaaaaaaaa']);
    expect(fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa')!.roleRef).toMatchObject({ name: 'view' });
  });

  it('leaves a colliding binding it did not create alone and reports the grant failed', async () => {
    const foreign = { metadata: { name: 'kube-relay-aaaaaaaaaaaa', labels: { team: 'platform' } }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' }, subjects: [{ kind: 'User', name: 'alice' }] };
    fake.put('clusterrolebindings', foreign);
    const before = JSON.stringify(fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa'));
    const result = await reconcileGrants(api, 'prod', [viewForSre], now);
    expect(result.outcomes).toEqual([{ id: viewForSre.id, state: 'failed', reason: 'a ClusterRoleBinding named kube-relay-aaaaaaaaaaaa exists that kube-relay did not create; kube-relay leaves it alone: remove or rename it' }]);
    expect(JSON.stringify(fake.get('clusterrolebindings', 'kube-relay-aaaaaaaaaaaa'))).toBe(before);
  });

  it('binds a custom role only while it is labelled grantable, and reports the grantable ones', async () => {
    const custom: ClusterGrant = { id: 'cccccccccccc', role: 'db-reader', subject: { kind: 'Group', name: 'acme/data' } };
    fake.put('clusterroles', { metadata: { name: 'db-reader' } });
    const unlabelled = await reconcileGrants(api, 'prod', [custom], now);
    expect(unlabelled.outcomes[0]).toEqual({ id: custom.id, state: 'failed', reason: 'the cluster has no ClusterRole "db-reader" labelled kube-relay.dev/grantable: "true"' });
    expect(unlabelled.grantableRoles).toEqual([]);
    fake.put('clusterroles', { metadata: { name: 'db-reader', labels: { 'kube-relay.dev/grantable': 'true' } } });
    const labelled = await reconcileGrants(api, 'prod', [custom], now);
    expect(labelled.outcomes[0]).toEqual({ id: custom.id, state: 'applied' });
    expect(labelled.grantableRoles).toEqual(['db-reader']);
  });

  it('says why when the namespace is missing or the relay may not bind the role', async () => {
    fake.unbindable.add('cluster-admin');
    const result = await reconcileGrants(api, 'prod', [{ ...execInWeb, namespace: 'nowhere' }, { id: 'dddddddddddd', role: 'cluster-admin', subject: { kind: 'User', name: 'agent:x' } }], now);
    expect(result.outcomes).toEqual([
      { id: execInWeb.id, state: 'failed', reason: 'namespace nowhere does not exist in the cluster' },
      { id: 'dddddddddddd', state: 'failed', reason: 'the relay may not bind role cluster-admin: add it to centralGrants.roles' },
    ]);
  });
});
