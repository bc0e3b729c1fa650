/**
 * The start-up check of central grants' rights (issue 17 item 4): every verb the reconciler and
 * the Lease election use is asked of the API server, and the first one missing is named with the
 * rule that grants it and the chart value that installs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingGrantPermission, requiredGrantPermissions } from '../../src/grants/central-grants.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';

let fake: FakeRbac;
beforeAll(async () => {
  fake = await startFakeRbac();
});
afterAll(async () => {
  await fake.close();
});

describe('missingGrantPermission', () => {
  it('is undefined when every right is held, and asks for each of them', async () => {
    fake.requests.length = 0;
    expect(await missingGrantPermission(fake.upstream, 'kube-relay')).toBeUndefined();
    expect(fake.requests.filter((r) => r.url.endsWith('selfsubjectaccessreviews'))).toHaveLength(requiredGrantPermissions('kube-relay').length);
  });

  it.each([
    ['delete rolebindings', /^central grants need the relay's identity to delete rolebindings, and it may not\. Install the Helm chart with centralGrants\.enabled=true, or add the rule \{apiGroups: \["rbac\.authorization\.k8s\.io"\], resources: \["rolebindings"\], verbs: \["delete"\]\} to a ClusterRole/],
    ['list clusterroles', /to list clusterroles/],
    ['update leases kube-relay', /to update leases in namespace kube-relay, .* to a Role bound/],
  ])('names a missing %s', async (denied, sentence) => {
    fake.denied.clear();
    fake.denied.add(denied);
    expect(await missingGrantPermission(fake.upstream, 'kube-relay')).toMatch(sentence);
  });
});
