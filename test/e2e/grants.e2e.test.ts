/**
 * Central grants on the real kube-apiserver (issue 17): a grant made on the issuer is in force
 * through the relay within 10 s and gone within 10 s of its removal or expiry; namespaces scope
 * it; a custom role labelled grantable can be granted and an unlabelled one cannot; a binding
 * kube-relay did not create is left alone and its grant reported failed; a relay that was away
 * converges when it comes back and repairs a deleted binding; of two replicas one reconciles and
 * the other takes over when it is shut down; the relay's identity cannot bind a role outside the chart's
 * centralGrants.roles. The relay's identity is exactly what the chart installs with
 * centralGrants.enabled. Convergence times are printed for the closing note.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as grants from '../../src/control/grants.js';
import { InvalidInputError } from '../../src/issuer/registry.js';
import { until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl, chartTemplate, relayIdentityFromChart, serviceAccountKubeconfig } from './cluster/bootstrap.js';
import { CLUSTER_NAME, type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const helm = inject('helm');
const admin = (args: string[], input?: string) => adminKubectl(cluster, args, input);
const limits = { maxDurationMs: grants.DEFAULT_MAX_GRANT_DURATION_MS };
const RELEASE = 'kube-relay-grants';
const BINDABLE = ['view', 'edit', 'kube-relay-exec', 'e2e-debugger'];
const LEASE = { leaseDurationMs: 6_000, renewDeadlineMs: 4_000, retryPeriodMs: 1_000 };
let grantsKubeconfig: string;
let kubectl: string;

beforeAll(() => {
  kubectl = kubectlBinary('1.33');
  admin(['apply', '-f', '-'], relayIdentityFromChart(helm, RELEASE, ['--set', 'centralGrants.enabled=true', '--set', `centralGrants.roles={${BINDABLE.join(',')}}`]));
  admin(['apply', '-f', '-'], chartTemplate(helm, ['--show-only', 'templates/access-roles.yaml']));
  admin(['create', 'namespace', 'e2e-other']);
  grantsKubeconfig = serviceAccountKubeconfig(cluster, RELEASE, path.join(cluster.dir, 'grants-relay.kubeconfig'));
});
afterAll(() => {
  admin(['delete', 'namespace', 'e2e-other', '--ignore-not-found', '--wait=false']);
});

async function can(kubeconfig: string, args: string[]): Promise<boolean> {
  const result = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'auth', 'can-i', ...args]);
  return result.stdout.trim() === 'yes';
}

/** Waits for `condition` and returns how long it took, in seconds. */
async function timed(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  await until(condition, timeoutMs, what);
  return (Date.now() - started) / 1000;
}

const measured: string[] = [];

for (const mode of ['direct', 'tunnel'] as const) {
  describe(`${mode} mode`, () => {
    let relay: RelayUnderTest;
    let reader: string;

    beforeAll(async () => {
      relay = await startRelayFor(cluster, mode, { centralGrants: { kubeconfig: grantsKubeconfig, lease: LEASE } });
      reader = await relay.agent(`reader-${mode}`, ['readers']);
    });
    afterAll(async () => {
      await relay?.close();
      process.stderr.write(`grants e2e (${mode}): ${measured.splice(0).join('; ')}\n`);
    });

    const add = (request: Omit<grants.GrantRequest, 'cluster'>) => relay.withRegistry((registry) => grants.createGrant(registry, OPERATOR, { cluster: CLUSTER_NAME, ...request }, limits));
    const remove = (id: string) => relay.withRegistry((registry) => grants.removeGrant(registry, OPERATOR, id));
    const stateOf = (id: string) => relay.withRegistry(async (registry) => (await grants.getGrant(registry, OPERATOR, id)).applied);

    it('a group grant of view lets the agent list pods within 10 s, not delete them; removal takes it away within 10 s', async () => {
      // Bindings an earlier relay of this cluster left behind have no grant here: this relay's first pass deletes them.
      await until(() => admin(['get', 'clusterrolebindings,rolebindings', '-A', '-l', 'app.kubernetes.io/managed-by=kube-relay', '-o', 'name']).trim() === '', 15_000, 'no managed binding without a grant');
      expect(await can(reader, ['list', 'pods', '-n', 'e2e'])).toBe(false);
      const grant = await add({ group: 'acme/readers', role: 'view' });
      const applied = await timed(() => can(reader, ['list', 'pods', '-n', 'e2e']), 10_000, 'view to take effect');
      measured.push(`add ${applied.toFixed(1)} s`);
      const pods = await runKubectl(kubectl, ['--kubeconfig', reader, 'get', 'pods', '-n', 'e2e', '-o', 'name']);
      expect(pods.stdout).toContain('pod/web');
      expect(await can(reader, ['delete', 'pods', '-n', 'e2e'])).toBe(false);
      await until(async () => (await stateOf(grant.id)).state === 'applied', 10_000, 'the grant to be reported applied');
      await remove(grant.id);
      const removed = await timed(async () => !(await can(reader, ['list', 'pods', '-n', 'e2e'])), 10_000, 'view to be taken away');
      measured.push(`remove ${removed.toFixed(1)} s`);
    });

    it('a namespaced grant works in its namespace and nowhere else; exec grants exec and only that', async () => {
      const scoped = await add({ agent: `reader-${mode}`, role: 'edit', namespace: 'e2e' });
      const exec = await add({ group: 'acme/readers', role: 'exec', namespace: 'e2e-other' });
      try {
        await until(() => can(reader, ['delete', 'pods', '-n', 'e2e']), 10_000, 'edit in e2e');
        expect(await can(reader, ['delete', 'pods', '-n', 'e2e-other'])).toBe(false);
        expect(await can(reader, ['list', 'pods', '--all-namespaces'])).toBe(false);
        await until(() => can(reader, ['create', 'pods', '--subresource=exec', '-n', 'e2e-other']), 10_000, 'exec in e2e-other');
        expect(await can(reader, ['delete', 'pods', '-n', 'e2e-other'])).toBe(false);
        expect(await can(reader, ['get', 'secrets', '-n', 'e2e-other'])).toBe(false);
      } finally {
        await remove(scoped.id);
        await remove(exec.id);
      }
      await until(async () => !(await can(reader, ['delete', 'pods', '-n', 'e2e'])), 10_000, 'edit to go');
    });

    it('an expiring grant is gone within 10 s of its expiry', async () => {
      const grant = await add({ group: 'acme/readers', role: 'view', expiresInMs: 8_000 });
      await until(() => can(reader, ['list', 'pods', '-n', 'e2e']), 10_000, 'the expiring grant to take effect');
      const expiresAt = grant.expiresAt!.getTime();
      await until(async () => !(await can(reader, ['list', 'pods', '-n', 'e2e'])), 25_000, 'the expired grant to go');
      const afterExpiry = (Date.now() - expiresAt) / 1000;
      measured.push(`expiry ${afterExpiry.toFixed(1)} s after expiresAt`);
      expect(afterExpiry).toBeLessThanOrEqual(10);
    });

    // Direct mode only: the reconciler is the same in both modes; these need a relay restarted or doubled.
    if (mode === 'direct') it('a custom ClusterRole labelled grantable is listed and grantable; an unlabelled one is refused at grant add', async () => {
      admin(['create', 'clusterrole', 'e2e-debugger', '--verb=get,list', '--resource=pods/log']);
      admin(['create', 'clusterrole', 'e2e-unlabelled', '--verb=get', '--resource=pods']);
      admin(['label', 'clusterrole', 'e2e-debugger', 'kube-relay.dev/grantable=true']);
      try {
        await until(async () => (await relay.withRegistry((registry) => grants.listRoles(registry, OPERATOR, CLUSTER_NAME))).custom.some((r) => r.name === 'e2e-debugger'), 15_000, 'the relay to report e2e-debugger');
        const refused = await add({ group: 'acme/readers', role: 'e2e-unlabelled' }).catch((err: Error) => err);
        expect(refused).toBeInstanceOf(InvalidInputError);
        const grant = await add({ group: 'acme/readers', role: 'e2e-debugger' });
        try {
          await until(() => can(reader, ['get', 'pods', '--subresource=log', '-n', 'e2e']), 10_000, 'the custom role to take effect');
        } finally {
          await remove(grant.id);
        }
      } finally {
        admin(['delete', 'clusterrole', 'e2e-debugger', 'e2e-unlabelled', '--ignore-not-found']);
      }
    });

    if (mode === 'direct') it('the relay may not bind a role outside centralGrants.roles: the API server refuses it and the grant says so', async () => {
      const grant = await add({ group: 'acme/readers', role: 'cluster-admin', confirmClusterAdmin: true });
      try {
        await until(async () => (await stateOf(grant.id)).state === 'failed', 15_000, 'the cluster-admin grant to fail');
        expect((await stateOf(grant.id)).reason).toBe('the relay may not bind role cluster-admin: add it to centralGrants.roles');
        expect(admin(['get', 'clusterrolebinding', `kube-relay-${grant.id}`, '--ignore-not-found', '-o', 'name']).trim()).toBe('');
        expect(await can(reader, ['get', 'secrets', '-n', 'e2e'])).toBe(false);
      } finally {
        await remove(grant.id);
      }
    });

    if (mode === 'direct') it('a relay that was away converges when back; a colliding hand-made binding is left alone; a deleted binding comes back', async () => {
      await relay.relay.close();
      const kept = await add({ group: 'acme/readers', role: 'view' });
      const colliding = await add({ agent: `reader-${mode}`, role: 'edit', namespace: 'e2e' });
      admin(['create', 'rolebinding', `kube-relay-${colliding.id}`, '-n', 'e2e', '--clusterrole=view', '--user=someone-else']);
      try {
      const back = Date.now();
      relay.relay = await relay.startReplica({ sameAddress: true });
      await until(() => can(reader, ['list', 'pods', '-n', 'e2e']), 20_000, 'the grant made while away to take effect');
      measured.push(`reconnect ${((Date.now() - back) / 1000).toFixed(1)} s (relay start included)`);
      await until(async () => (await stateOf(colliding.id)).state === 'failed', 15_000, 'the colliding grant to fail');
      expect((await stateOf(colliding.id)).reason).toMatch(/^a RoleBinding named kube-relay-[a-z0-9]{12} in namespace e2e exists that kube-relay did not create/);
      expect(admin(['get', 'rolebinding', `kube-relay-${colliding.id}`, '-n', 'e2e', '-o', 'jsonpath={.subjects[0].name}'])).toBe('someone-else');
      admin(['delete', 'clusterrolebinding', `kube-relay-${kept.id}`]);
      const repaired = await timed(async () => admin(['get', 'clusterrolebinding', `kube-relay-${kept.id}`, '--ignore-not-found', '-o', 'name']).trim() !== '', 15_000, 'the deleted binding to come back');
      measured.push(`drift repaired ${repaired.toFixed(1)} s`);
      } finally {
        admin(['delete', 'rolebinding', `kube-relay-${colliding.id}`, '-n', 'e2e', '--ignore-not-found']);
        await remove(colliding.id);
        await remove(kept.id);
      }
    });

    if (mode === 'direct') it('of two replicas one holds the Lease; when it goes the other takes over and reconciles', async () => {
      const second = await relay.startReplica();
      try {
        const first = relay.relay;
        await until(() => first.centralGrants!.election.isLeader !== second.centralGrants!.election.isLeader, 20_000, 'exactly one leader');
        const [leader, standby] = first.centralGrants!.election.isLeader ? [first, second] : [second, first];
        // A replica that is shut down (a pod deleted: SIGTERM) gives the Lease up; the other takes it at its next try.
        // A leader that dies without a word is replaced once its Lease lapses (test/grants/leader-election.test.ts).
        await leader.close();
        const gone = Date.now();
        await until(() => standby.centralGrants!.election.isLeader, 20_000, 'the standby to take over');
        const takeover = (Date.now() - gone) / 1000;
        measured.push(`takeover ${takeover.toFixed(1)} s`);
        expect(takeover).toBeLessThanOrEqual(LEASE.leaseDurationMs / 1000);
        relay.relay = standby;
        const grant = await add({ group: 'acme/readers', role: 'view' });
        try {
          // The reader's kubeconfig names the first replica's address, which may be the one shut down: ask the cluster.
          await until(() => admin(['get', 'clusterrolebinding', `kube-relay-${grant.id}`, '--ignore-not-found', '-o', 'name']).trim() !== '', 10_000, 'the new leader to reconcile');
          await until(async () => (await stateOf(grant.id)).state === 'applied', 10_000, 'the new leader to report the grant applied');
        } finally {
          await remove(grant.id);
        }
      } finally {
        if (relay.relay !== second) await second.close();
      }
    });
  });
}
