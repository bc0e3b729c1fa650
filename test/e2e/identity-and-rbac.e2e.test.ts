/**
 * What a real kube-apiserver does with the relay's impersonation: the agent
 * is its own principal, RBAC on its groups decides, clients cannot choose
 * another identity, and the cluster's audit log joins ours.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const admin = (args: string[]) => adminKubectl(cluster, args);
describe.each(['direct', 'tunnel'] as const)('%s mode', (mode) => {
  let relay: RelayUnderTest;
  let viewer: string;
  let kubectl: string;

  beforeAll(async () => {
    kubectl = kubectlBinary('1.33');
    relay = await startRelayFor(cluster, mode);
    viewer = await relay.agent('viewer', ['sre', 'oncall']);
    admin(['create', 'clusterrolebinding', `acme-sre-view-${mode}`, '--clusterrole=view', '--group=acme/sre']);
  });

  afterAll(async () => {
    admin(['delete', 'clusterrolebinding', `acme-sre-view-${mode}`, '--ignore-not-found']);
    admin(['delete', 'rolebinding', `acme-oncall-edit-${mode}`, '-n', 'e2e', '--ignore-not-found']);
    await relay?.close();
  });

  describe('identity', () => {
    it('kubectl version through the relay reports the real kube-apiserver built from the module proxy', async () => {
      const result = await runKubectl(kubectl, ['--kubeconfig', viewer, 'version', '-o', 'json']);
      expect(result.code, result.stderr).toBe(0);
      expect((JSON.parse(result.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion).toBe('v1.33.13');
    });

    it('speaks HTTP/2 on both legs with real kubectl and kube-apiserver, as client-go does (issue 21)', async () => {
      const metric = async (port: number, name: string) => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return text.split('\n').filter((line) => line.startsWith(name)).reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
      };
      // The agents' listener: the relay's own (direct mode), or the hub's (tunnel mode; the tunnel is HTTP/1.1 inside).
      const listenerAdmin = mode === 'direct' ? relay.relay.adminPort! : relay.issuer.adminPort!;
      const h2Before = await metric(listenerAdmin, 'kube_relay_listener_requests_total{protocol="h2"}');
      const result = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', 'pods', '-n', 'e2e']);
      expect(result.code, result.stderr).toBe(0);
      expect(await metric(listenerAdmin, 'kube_relay_listener_requests_total{protocol="h2"}')).toBeGreaterThan(h2Before);
      // Upstream, a watch goes over HTTP/2 (a list takes the HTTP/1.1 keep-alive agent, relay/forward.ts): one the API server ends after a second.
      // --raw takes the path from the server's root: through the hub, that is /clusters/<name>/… (the relay URL's path).
      const prefix = new URL(relay.relay.url).pathname.replace(/\/$/, '');
      const watched = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', '--raw', `${prefix}/api/v1/namespaces/e2e/pods?watch=1&timeoutSeconds=1`]);
      expect(watched.code, watched.stderr).toBe(0);
      expect(await metric(relay.relay.adminPort!, 'kube_relay_upstream_http2_sessions')).toBeGreaterThanOrEqual(1);
    });

    it('kubectl auth whoami shows the agent, its <org>/<team> groups and system:authenticated', async () => {
      const result = await runKubectl(kubectl, ['--kubeconfig', viewer, 'auth', 'whoami', '-o', 'json']);
      expect(result.stderr).toBe('');
      const review = JSON.parse(result.stdout) as { status: { userInfo: { username: string; groups: string[]; extra?: Record<string, string[]> } } };
      expect(review.status.userInfo.username).toBe('agent:viewer');
      expect(review.status.userInfo.groups.sort()).toEqual(['acme/oncall', 'acme/sre', 'system:authenticated']);
      expect(Object.keys(review.status.userInfo.extra ?? {}).sort()).toEqual(['kube-relay.dev/request-id', 'kube-relay.dev/token-id']);
    });

    it('refuses kubectl --as and --as-group before anything reaches the cluster', async () => {
      for (const flags of [['--as', 'system:admin'], ['--as-group', 'system:masters', '--as', 'agent:viewer']]) {
        const before = relay.auditRecords().filter((r) => r.reason === 'impersonation-forbidden').length;
        const result = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', 'pods', '-n', 'e2e', ...flags]);
        expect(result.code).not.toBe(0);
        // kubectl fails on discovery, whose errors client-go reports without the Status message ("Forbidden: unknown").
        expect(result.stderr).toContain('Forbidden');
        await until(() => relay.auditRecords().filter((r) => r.reason === 'impersonation-forbidden').length > before, 5_000, 'the refusal record');
      }
      const clusterEvents = readFileSync(cluster.auditLog, 'utf8');
      expect(clusterEvents).not.toContain('"username":"system:admin"');
      expect(clusterEvents).not.toMatch(/"impersonatedUser":\{[^}]*"system:masters"/);
    });
  });

  describe('RBAC on the impersonated identity', () => {
    it('view allows list, forbids delete and secrets; a RoleBinding to edit allows the delete', async () => {
      const list = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', 'pods', '-n', 'e2e', '-o', 'name']);
      expect(list.stderr).toBe('');
      expect(list.stdout).toContain('pod/web');

      const secrets = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', 'secrets', '-n', 'e2e']);
      expect(secrets.code).not.toBe(0);
      expect(secrets.stderr).toMatch(/Forbidden.*"agent:viewer" cannot list resource "secrets"/);

      admin(['run', `scratch-${mode}`, '-n', 'e2e', '--image', 'fake/scratch:1', '--overrides', '{"spec":{"nodeName":"kwok-node-0"}}']);
      const forbiddenDelete = await runKubectl(kubectl, ['--kubeconfig', viewer, 'delete', 'pod', `scratch-${mode}`, '-n', 'e2e', '--wait=false']);
      expect(forbiddenDelete.code).not.toBe(0);
      expect(forbiddenDelete.stderr).toMatch(/Forbidden.*cannot delete resource "pods"/);

      admin(['create', 'rolebinding', `acme-oncall-edit-${mode}`, '-n', 'e2e', '--clusterrole=edit', '--group=acme/oncall']);
      await until(async () => (await runKubectl(kubectl, ['--kubeconfig', viewer, 'auth', 'can-i', 'delete', 'pods', '-n', 'e2e'])).stdout.trim() === 'yes', 10_000, 'the RoleBinding');
      const allowedDelete = await runKubectl(kubectl, ['--kubeconfig', viewer, 'delete', 'pod', `scratch-${mode}`, '-n', 'e2e', '--wait=false', '--grace-period=0', '--force']);
      expect(allowedDelete.code, allowedDelete.stderr).toBe(0);
    });
  });

  describe('audit trails join', () => {
    it("the cluster's audit event for a relayed request carries the agent, the relay's ServiceAccount and our token and request ids", async () => {
      const result = await runKubectl(kubectl, ['--kubeconfig', viewer, 'get', 'pods', 'web', '-n', 'e2e', '-o', 'name']);
      expect(result.code, result.stderr).toBe(0);
      await until(() => relay.auditRecords().some((r) => r.path === '/api/v1/namespaces/e2e/pods/web' && r.user === 'agent:viewer'), 5_000, 'the relay record');
      const ours = relay.auditRecords().filter((r) => r.path === '/api/v1/namespaces/e2e/pods/web' && r.user === 'agent:viewer').at(-1)!;
      type Event = { user: { username: string }; impersonatedUser?: { username: string; groups?: string[]; extra?: Record<string, string[]> }; requestURI: string; stage: string };
      const findTheirs = () =>
        readFileSync(cluster.auditLog, 'utf8')
          .split('\n')
          .filter((line) => line.includes(ours.requestId))
          .map((line) => JSON.parse(line) as Event)
          .find((event) => event.stage === 'ResponseComplete');
      await until(() => findTheirs() !== undefined, 10_000, "the cluster's audit event");
      const theirs = findTheirs()!;
      expect(theirs.user.username).toBe('system:serviceaccount:kube-relay:kube-relay');
      expect(theirs.impersonatedUser?.username).toBe('agent:viewer');
      expect(theirs.impersonatedUser?.extra?.['kube-relay.dev/token-id']).toEqual([ours.tokenId]);
      expect(theirs.impersonatedUser?.extra?.['kube-relay.dev/request-id']).toEqual([ours.requestId]);
      expect(theirs.requestURI).toBe('/api/v1/namespaces/e2e/pods/web');
    });
  });
});
