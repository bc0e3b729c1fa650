/**
 * What the e2e cluster holds before any test: the relay's ServiceAccount
 * with only the impersonation ClusterRole, both rendered from the Helm chart, a kwok node with a running pod,
 * and a kubeconfig for the relay whose token comes from the TokenRequest API.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { kubectlBinary } from '../../helpers/kubectl.js';
import type { Cluster } from './cluster.js';

const MANIFESTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'manifests');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function adminKubectl(cluster: Pick<Cluster, 'adminKubeconfig'>, args: string[], input?: string): string {
  return execFileSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, ...args], {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export async function bootstrapCluster(cluster: Cluster, helm: string): Promise<{ relayKubeconfig: string }> {
  // The relay's identity is exactly what the Helm chart installs: its ServiceAccount and impersonation-only ClusterRole.
  adminKubectl(cluster, ['create', 'namespace', 'kube-relay']);
  adminKubectl(cluster, ['apply', '-f', '-'], relayIdentityFromChart(helm));
  adminKubectl(cluster, ['apply', '-f', path.join(MANIFESTS, 'workload.yaml')]);
  await waitForPodRunning(cluster, 'e2e', 'web');
  await waitForAggregatedRoles(cluster);
  return { relayKubeconfig: serviceAccountKubeconfig(cluster, 'kube-relay', path.join(cluster.dir, 'relay.kubeconfig')) };
}

/** The ServiceAccount and RBAC the chart gives release `release` (extra: more `helm template` arguments). */
export function relayIdentityFromChart(helm: string, release = 'kube-relay', extra: string[] = []): string {
  return chartTemplate(helm, [...extra, '--show-only', 'templates/serviceaccount.yaml', '--show-only', 'templates/rbac.yaml'], release);
}

/** `helm template` of the relay chart with its CI tunnel values, in namespace kube-relay. */
export function chartTemplate(helm: string, args: string[], release = 'kube-relay'): string {
  const chart = path.join(ROOT, 'deploy', 'helm', 'kube-relay');
  return execFileSync(helm, ['template', release, chart, '--namespace', 'kube-relay', '-f', path.join(chart, 'ci', 'tunnel-values.yaml'), ...args], { encoding: 'utf8' });
}

/** A kubeconfig for a ServiceAccount of namespace kube-relay, with a token from the TokenRequest API. */
export function serviceAccountKubeconfig(cluster: Pick<Cluster, 'adminKubeconfig' | 'server' | 'caFile'>, serviceAccount: string, file: string): string {
  const token = adminKubectl(cluster, ['create', 'token', serviceAccount, '-n', 'kube-relay', '--duration', '2h']).trim();
  writeFileSync(
    file,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e2e', cluster: { server: cluster.server, 'certificate-authority': cluster.caFile } }],
      users: [{ name: serviceAccount, user: { token } }],
      contexts: [{ name: 'e2e', context: { cluster: 'e2e', user: serviceAccount } }],
      'current-context': 'e2e',
    }),
    { mode: 0o600 },
  );
  return file;
}

/** view, edit and admin are filled in by the controller-manager's clusterrole-aggregation controller. */
async function waitForAggregatedRoles(cluster: Cluster): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rules = adminKubectl(cluster, ['get', 'clusterrole', 'view', '-o', 'jsonpath={.rules}']).trim();
    if (rules !== '' && rules !== 'null' && rules !== '[]') return;
    if (Date.now() > deadline) throw new Error('ClusterRole view has no rules after 60 s: is kube-controller-manager running the clusterrole-aggregation controller?');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function waitForPodRunning(cluster: Cluster, namespace: string, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const phase = adminKubectl(cluster, ['get', 'pod', name, '-n', namespace, '-o', 'jsonpath={.status.phase}']).trim();
    if (phase === 'Running') return;
    if (Date.now() > deadline) throw new Error(`pod ${namespace}/${name} is "${phase}", not Running, after 60 s: is kwok managing node kwok-node-0?`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
