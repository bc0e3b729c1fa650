/**
 * The Helm chart (issue 5), with Helm built from the module proxy: lint and
 * template for each mode, clear failures for wrong values, the plain
 * manifests kept in sync, and the whole rendering accepted by a real
 * kube-apiserver (server-side dry run). Grants are applied for real and an
 * agent gets exactly the granted access.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { clusterRoles, renderRbacManifests } from '../../src/rbac/cluster-roles.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const helmBinary = inject('helm');
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CHART = path.join(ROOT, 'deploy', 'helm', 'kube-relay');
const CI_VALUES = { tunnel: path.join(CHART, 'ci', 'tunnel-values.yaml'), direct: path.join(CHART, 'ci', 'direct-values.yaml') };

function helm(args: string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(helmBinary, args, { encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function template(values: string, extra: string[] = []): string {
  const result = helm(['template', 'kube-relay', CHART, '--namespace', 'kube-relay', '-f', values, ...extra]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return result.stdout;
}

const kinds = (rendered: string) => parseAllDocuments(rendered).map((doc) => (doc.toJS() as { kind?: string } | null)?.kind).filter(Boolean);

describe('the chart', () => {
  it.each(['tunnel', 'direct'] as const)('passes helm lint and renders in %s mode', (mode) => {
    const lint = helm(['lint', CHART, '-f', CI_VALUES[mode]]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    const rendered = kinds(template(CI_VALUES[mode]));
    expect(rendered).toContain('Deployment');
    expect(rendered).toContain('ServiceAccount');
    expect(rendered.filter((kind) => kind === 'Secret')).toHaveLength(mode === 'tunnel' ? 1 : 0);
  });

  it('lints with its default values, and renders none: cluster, issuer and connector key have no default, and it says so', () => {
    const lint = helm(['lint', CHART]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    const rendered = helm(['template', 'kube-relay', CHART]);
    expect(rendered.code).not.toBe(0);
    expect(rendered.stderr).toMatch(/(clusterName|issuerUrl|connectorKey \(or existingSecret\)) is required/);
  });

  it.each([
    ['an unknown mode', ['--set', 'mode=bogus'], "at '/mode': value must be one of 'tunnel', 'direct'"],
    ['tunnel mode without a connector key', ['--set', 'connectorKey='], 'connectorKey (or existingSecret) is required in tunnel mode'],
    ['a cluster name that is not a DNS label', ['--set', 'clusterName=Prod_EU'], "at '/clusterName'"],
    ['a grant with an unknown role', ['--set', 'grants[0].group=acme/sre,grants[0].role=god'], "at '/grants/0/role'"],
    ['direct mode without a serving certificate', ['--set', 'mode=direct,tls.existingSecret='], 'tls.existingSecret is required in direct mode'],
    ['a per-agent stream quota of 0', ['--set', 'maxStreamsPerAgent=0'], "at '/maxStreamsPerAgent'"],
    ['a per-agent request cap of 0', ['--set', 'maxRequestsPerAgent=0'], "at '/maxRequestsPerAgent'"],
    ['audit records with nowhere to go', ['--set', 'audit.stdout=false'], 'audit.stdout is false and audit.webhook.url is empty'],
    ['an unknown audit.whenFull', ['--set', 'audit.whenFull=drop'], "at '/audit/whenFull'"],
    ['an unknown top-level value (an agent API key has no place here)', ['--set', 'apiKey=krl_agent_x'], "additional properties 'apiKey' not allowed"],
    ['a misspelt nested value, which would otherwise do nothing', ['--set', 'tls.secretName=kube-relay-tls'], "at '/tls': additional properties 'secretName' not allowed"],
  ])('refuses %s with a message that names it', (_what, extra, message) => {
    const result = helm(['template', 'kube-relay', CHART, '-f', CI_VALUES.tunnel, ...extra]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  it('sends audit records to a webhook with a token from a Secret and a CA from a ConfigMap, and kube-apiserver accepts it', () => {
    const rendered = template(CI_VALUES.tunnel, ['--set', 'audit.stdout=false,audit.webhook.url=https://collector.logging:8443/kube-relay,audit.webhook.tokenSecret=collector-token,audit.whenFull=fail', '--set-string', 'audit.webhook.ca=-----BEGIN CERTIFICATE-----']);
    const docs = parseAllDocuments(rendered).map((doc) => doc.toJS() as { kind: string; metadata: { name: string }; spec?: { template: { spec: { containers: { args: string[] }[]; volumes: { name: string; secret?: { secretName: string }; configMap?: { name: string } }[] } } } });
    const deployment = docs.find((doc) => doc.kind === 'Deployment')!;
    const args = deployment.spec!.template.spec.containers[0]!.args;
    expect(args).toEqual(expect.arrayContaining(['--audit-when-full=fail', '--audit-webhook-url=https://collector.logging:8443/kube-relay', '--audit-webhook-token-file=/etc/kube-relay/audit-webhook-token/token', '--audit-webhook-ca-file=/etc/kube-relay/audit-webhook-ca/ca.crt']));
    expect(args).not.toContain('--audit-file=-');
    const volumes = deployment.spec!.template.spec.volumes;
    expect(volumes.find((volume) => volume.name === 'audit-webhook-token')?.secret?.secretName).toBe('collector-token');
    const caMap = volumes.find((volume) => volume.name === 'audit-webhook-ca')?.configMap?.name;
    expect(docs.some((doc) => doc.kind === 'ConfigMap' && doc.metadata.name === caMap)).toBe(true);
    const result = spawnSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'apply', '--dry-run=server', '-f', '-'], { input: rendered, encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('renders the same ClusterRoles, rule for rule, as kube-relay rbac (one definition: files/cluster-roles.yaml), and kube-apiserver accepts that command\'s output', () => {
    const rendered = template(CI_VALUES.tunnel, ['--show-only', 'templates/access-roles.yaml', '--show-only', 'templates/rbac.yaml']);
    const namesAndRules = (roles: { kind: string; metadata: { name: string }; rules?: unknown }[]) =>
      roles.filter((role) => role.kind === 'ClusterRole').map((role) => ({ name: role.metadata.name, rules: role.rules }));
    const fromChart = namesAndRules(parseAllDocuments(rendered).map((doc) => doc.toJS() as { kind: string; metadata: { name: string }; rules?: unknown }));
    // Release "kube-relay" names the impersonator kube-relay-impersonator, the name kube-relay rbac gives it.
    expect(fromChart).toEqual(namesAndRules(clusterRoles({ accessRoles: true, impersonator: true })));
    const result = spawnSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'apply', '--dry-run=server', '-f', '-'], { input: renderRbacManifests({ accessRoles: true, impersonator: true }), encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('clusterrole.rbac.authorization.k8s.io/kube-relay-impersonator');
  });

  it('deploy/manifests/kube-relay.yaml is the chart rendered with deploy/manifests/values.yaml (bash deploy/render-manifests.sh)', () => {
    const fresh = template(path.join(ROOT, 'deploy', 'manifests', 'values.yaml'));
    expect(readFileSync(path.join(ROOT, 'deploy', 'manifests', 'kube-relay.yaml'), 'utf8')).toBe(fresh);
  });

  it.each(['tunnel', 'direct'] as const)('is accepted whole by kube-apiserver (kubectl apply --dry-run=server, %s mode)', (mode) => {
    const rendered = template(CI_VALUES[mode]);
    const result = spawnSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'apply', '--dry-run=server', '-f', '-'], { input: rendered, encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('deployment.apps/kube-relay created (server dry run)');
  });
});

describe('grants from Helm values', () => {
  let relay: RelayUnderTest;
  let agent: string;
  const rendered = () =>
    template(CI_VALUES.tunnel, ['--set-json', 'grants=[{"group":"acme/readers","role":"kube-relay-read-only","namespace":"e2e"}]', '--show-only', 'templates/grants.yaml', '--show-only', 'templates/access-roles.yaml']);

  beforeAll(async () => {
    execFileSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'apply', '-f', '-'], { input: rendered() });
    relay = await startRelayFor(cluster, 'direct');
    agent = await relay.agent('helm-reader', ['readers']);
  });

  afterAll(async () => {
    execFileSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'delete', '--ignore-not-found', '-f', '-'], { input: rendered() });
    await relay?.close();
  });

  it('an agent in the granted group gets exactly kube-relay-read-only in that namespace', async () => {
    const can = async (...args: string[]) => (await runKubectl(kubectlBinary('1.33'), ['--kubeconfig', agent, 'auth', 'can-i', ...args])).stdout.trim();
    expect(await can('list', 'pods', '-n', 'e2e')).toBe('yes');
    expect(await can('get', 'pods/log', '-n', 'e2e')).toBe('yes');
    expect(await can('list', 'deployments.apps', '-n', 'e2e')).toBe('yes');
    expect(await can('get', 'secrets', '-n', 'e2e')).toBe('no');
    expect(await can('create', 'pods/exec', '-n', 'e2e')).toBe('no');
    expect(await can('delete', 'pods', '-n', 'e2e')).toBe('no');
    expect(await can('list', 'pods', '-n', 'kube-system')).toBe('no');
    const listed = await runKubectl(kubectlBinary('1.33'), ['--kubeconfig', agent, 'get', 'pods', '-n', 'e2e', '-o', 'name']);
    expect(listed.stdout).toContain('pod/web');
    expect(adminKubectl(cluster, ['get', 'rolebinding', '-n', 'e2e', '-o', 'name'])).toContain('rolebinding.rbac.authorization.k8s.io/kube-relay-grant-0');
  });
});

describe('helm install for real', () => {
  const NAMESPACE = 'kube-relay-helm';
  // Not "kube-relay": bootstrap installed the relay's own identity under that name already.
  const RELEASE = 'second';
  const NAME = `${RELEASE}-kube-relay`;
  let relay: RelayUnderTest | undefined;

  afterAll(async () => {
    await relay?.close();
    helm(['uninstall', RELEASE, '-n', NAMESPACE, '--kubeconfig', cluster.adminKubeconfig]);
    adminKubectl(cluster, ['delete', 'namespace', NAMESPACE, '--ignore-not-found', '--wait=false']);
  });

  it('installs every object, and a tunnel relay connects with the connector key read back from the chart\'s Secret', async () => {
    relay = await startRelayFor(cluster, 'tunnel', {
      connectorKeyVia: (key) => {
        const install = helm([
          'install', RELEASE, CHART, '-n', NAMESPACE, '--create-namespace', '--kubeconfig', cluster.adminKubeconfig,
          '-f', CI_VALUES.tunnel, '--set', 'clusterName=e2e,issuerUrl=https://issuer.e2e.test,hubUrl=https://issuer.e2e.test',
          // The access ClusterRoles belong to another test's release here; this one only references them.
          '--set', 'accessRoles.create=false', '--set', `connectorKey=${key}`,
        ]);
        expect(install.stderr).toBe('');
        expect(install.code).toBe(0);
        const stored = adminKubectl(cluster, ['get', 'secret', `${NAME}-connector`, '-n', NAMESPACE, '-o', 'jsonpath={.data.connector-key}']);
        return Buffer.from(stored, 'base64').toString('utf8').trim();
      },
    });
    const installed = adminKubectl(cluster, ['get', 'deployment,serviceaccount,secret,service,poddisruptionbudget', '-n', NAMESPACE, '-o', 'name']);
    for (const object of [`deployment.apps/${NAME}`, `serviceaccount/${NAME}`, `secret/${NAME}-connector`, `service/${NAME}`, `poddisruptionbudget.policy/${NAME}`]) {
      expect(installed).toContain(object);
    }
    expect(relay.relay.readiness()).toEqual({ ready: true, waitingFor: [] });
  });
});

