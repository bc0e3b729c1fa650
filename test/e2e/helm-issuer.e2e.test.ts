/**
 * The issuer/hub chart (issue 15): lint and template with PostgreSQL (several
 * replicas) and SQLite (one), the replica count and pod name wired into the
 * hub's replica flags, secrets only through Secrets, clear failures for wrong
 * values, every flag and environment twin it sets known to `kube-relay
 * issuer`, and the whole rendering accepted by a real kube-apiserver (server
 * side dry run, then a real install).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { envName, GLOBAL_FLAGS, parseCommandArgs } from '../../src/cli/command.js';
import { issuerCommands } from '../../src/cli/commands/issuer.js';
import { kubectlBinary } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';

const cluster = inject('cluster');
const helmBinary = inject('helm');
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CHART = path.join(ROOT, 'deploy', 'helm', 'kube-relay-issuer');
const CI_VALUES = { postgres: path.join(CHART, 'ci', 'postgres-values.yaml'), sqlite: path.join(CHART, 'ci', 'sqlite-values.yaml') };
const RELEASE = 'kube-relay-issuer';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  args: string[];
  env: EnvVar[];
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string; port: string } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface Doc {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  stringData?: Record<string, string>;
}
interface DeploymentSpec {
  replicas: number;
  strategy: { type: string; rollingUpdate?: { maxSurge: number; maxUnavailable: number } };
  template: {
    spec: {
      automountServiceAccountToken: boolean;
      securityContext: Record<string, unknown>;
      containers: Container[];
      volumes: { name: string; emptyDir?: object; persistentVolumeClaim?: { claimName: string }; secret?: { secretName: string } }[];
    };
  };
}

function helm(args: string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(helmBinary, args, { encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function template(values: string, extra: string[] = []): string {
  const result = helm(['template', RELEASE, CHART, '--namespace', 'kube-relay', '-f', values, ...extra]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return result.stdout;
}

const docs = (rendered: string) => parseAllDocuments(rendered).map((doc) => doc.toJS() as Doc | null).filter((doc): doc is Doc => doc !== null);
const deploymentOf = (rendered: string) => docs(rendered).find((doc) => doc.kind === 'Deployment')!.spec as unknown as DeploymentSpec;
const issuerContainer = (rendered: string) => deploymentOf(rendered).template.spec.containers[0]!;
const envOf = (container: Container, name: string) => container.env.find((variable) => variable.name === name);

function dryRun(rendered: string): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(kubectlBinary('1.33'), ['--kubeconfig', cluster.adminKubeconfig, 'apply', '--dry-run=server', '-f', '-'], { input: rendered, encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('the issuer chart', () => {
  it.each(['postgres', 'sqlite'] as const)('passes helm lint and renders with the %s values', (store) => {
    const lint = helm(['lint', CHART, '-f', CI_VALUES[store]]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    const kinds = docs(template(CI_VALUES[store])).map((doc) => doc.kind);
    expect(kinds).toEqual(expect.arrayContaining(['Deployment', 'Service', 'ServiceAccount']));
    expect(kinds.includes('PodDisruptionBudget')).toBe(store === 'postgres');
    expect(kinds.includes('PersistentVolumeClaim')).toBe(store === 'sqlite');
    // Both store and pepper come from existing Secrets (postgres), or there are none (sqlite): the chart makes no Secret.
    expect(kinds).not.toContain('Secret');
  });

  it('lints with its default values, and renders none: the public URL and the serving certificate have no default, and it says so', () => {
    const lint = helm(['lint', CHART]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    const rendered = helm(['template', RELEASE, CHART]);
    expect(rendered.code).not.toBe(0);
    expect(rendered.stderr).toContain('publicUrl is required');
  });

  it('wires the replica count into --hub-replicas and the pod name into the hub replica id; one replica per pod, no surge', () => {
    const container = issuerContainer(template(CI_VALUES.postgres, ['--set', 'replicaCount=4']));
    expect(container.args[0]).toBe('issuer');
    expect(container.args).toContain('--hub-replicas=4');
    expect(deploymentOf(template(CI_VALUES.postgres, ['--set', 'replicaCount=4'])).replicas).toBe(4);
    expect(envOf(container, 'KUBE_RELAY_HUB_REPLICA_ID')).toEqual({ name: 'KUBE_RELAY_HUB_REPLICA_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(container.args.some((arg) => arg.startsWith('--hub-replica-id'))).toBe(false);
    expect(container.args).toEqual(
      expect.arrayContaining(['--listen=0.0.0.0:8443', '--admin-listen=0.0.0.0:9090', '--public-url=https://issuer.example.com', '--tls-cert=/etc/kube-relay/tls/tls.crt', '--tls-key=/etc/kube-relay/tls/tls.key', '--audit-file=-']),
    );
    expect(deploymentOf(template(CI_VALUES.postgres)).strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
  });

  it('takes the store URL and the pepper from Secrets only, never as plain values in the Deployment', () => {
    const url = 'postgres://issuer:s3cret-pw@db.example.com:5432/kube_relay?sslmode=verify-full';
    const pepper = 'pepper-0123456789abcdef-not-real';
    const rendered = template(CI_VALUES.postgres, ['--set', 'store.existingSecret=,pepper.existingSecret=', '--set-string', `store.url=${url},pepper.value=${pepper}`]);
    const all = docs(rendered);
    const deployment = all.find((doc) => doc.kind === 'Deployment')!;
    expect(JSON.stringify(deployment)).not.toContain('s3cret-pw');
    expect(JSON.stringify(deployment)).not.toContain(pepper);
    const container = issuerContainer(rendered);
    expect(envOf(container, 'KUBE_RELAY_STORE_URL')?.valueFrom?.secretKeyRef).toEqual({ name: 'kube-relay-issuer-store', key: 'url' });
    expect(envOf(container, 'KUBE_RELAY_PEPPER')).toBeUndefined();
    expect(envOf(container, 'KUBE_RELAY_PEPPER_FILE')?.value).toBe('/etc/kube-relay/pepper/pepper');
    expect(container.volumeMounts).toContainEqual({ name: 'pepper', mountPath: '/etc/kube-relay/pepper', readOnly: true });
    expect(deploymentOf(rendered).template.spec.volumes.find((volume) => volume.name === 'pepper')?.secret).toEqual({ secretName: 'kube-relay-issuer-pepper', defaultMode: 0o440, items: [{ key: 'pepper', path: 'pepper' }] });
    expect(all.find((doc) => doc.kind === 'Secret' && doc.metadata.name === 'kube-relay-issuer-store')?.stringData).toEqual({ url });
    expect(all.find((doc) => doc.kind === 'Secret' && doc.metadata.name === 'kube-relay-issuer-pepper')?.stringData).toEqual({ pepper });
    // Existing Secrets, under keys of the operator's choosing (a PostgreSQL operator's "uri", say).
    const existing = deploymentOf(template(CI_VALUES.postgres, ['--set', 'store.existingSecretKey=uri,pepper.existingSecretKey=pepper.bin']));
    expect(envOf(existing.template.spec.containers[0]!, 'KUBE_RELAY_STORE_URL')?.valueFrom?.secretKeyRef).toEqual({ name: 'issuer-postgres', key: 'uri' });
    expect(existing.template.spec.volumes.find((volume) => volume.name === 'pepper')?.secret).toEqual({ secretName: 'issuer-pepper', defaultMode: 0o440, items: [{ key: 'pepper.bin', path: 'pepper' }] });
  });

  it('runs as the relay does: non-root 10001, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp, no API token; probes on the admin port', () => {
    const rendered = template(CI_VALUES.postgres);
    const pod = deploymentOf(rendered).template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    const container = pod.containers[0]!;
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    // PostgreSQL: the data directory holds only this pod's signing key, so an emptyDir.
    expect(pod.volumes.find((volume) => volume.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
    expect(pod.volumes.find((volume) => volume.name === 'tls')?.secret?.secretName).toBe('issuer-tls');
    // The public Service carries the API port only; the admin port has a ClusterIP Service of its own.
    const services = docs(rendered).filter((doc) => doc.kind === 'Service');
    expect(services.map((service) => [service.metadata.name, (service.spec as { type: string }).type, (service.spec as { ports: { name: string }[] }).ports.map((port) => port.name)])).toEqual([
      ['kube-relay-issuer', 'LoadBalancer', ['https']],
      ['kube-relay-issuer-admin', 'ClusterIP', ['admin']],
    ]);
    const pdb = docs(rendered).find((doc) => doc.kind === 'PodDisruptionBudget')!;
    expect(pdb.spec).toMatchObject({ minAvailable: 1 });
    const monitor = docs(template(CI_VALUES.postgres, ['--set', 'serviceMonitor.enabled=true'])).find((doc) => doc.kind === 'ServiceMonitor')!;
    expect(monitor.spec).toMatchObject({ selector: { matchLabels: { 'kube-relay.dev/service': 'admin' } }, endpoints: [{ port: 'admin', path: '/metrics' }] });
  });

  it('keeps SQLite (one replica, no store URL) on a PersistentVolumeClaim, replaced with strategy Recreate, with no PodDisruptionBudget and no store or pepper from Secrets', () => {
    const rendered = template(CI_VALUES.sqlite);
    const deployment = deploymentOf(rendered);
    expect(deployment.strategy).toEqual({ type: 'Recreate' });
    expect(deployment.template.spec.volumes.find((volume) => volume.name === 'data')?.persistentVolumeClaim?.claimName).toBe('kube-relay-issuer-data');
    const container = deployment.template.spec.containers[0]!;
    expect(envOf(container, 'KUBE_RELAY_STORE_URL')).toBeUndefined();
    expect(envOf(container, 'KUBE_RELAY_PEPPER_FILE')).toBeUndefined();
    expect(envOf(container, 'KUBE_RELAY_DATA')?.value).toBe('/var/lib/kube-relay');
    expect(container.args).toContain('--hub-replicas=1');
    const withoutVolume = deploymentOf(template(CI_VALUES.sqlite, ['--set', 'persistence.enabled=false']));
    expect(withoutVolume.template.spec.volumes.find((volume) => volume.name === 'data')).toEqual({ name: 'data', emptyDir: {} });
  });

  it.each([
    ['two replicas without a store URL', CI_VALUES.sqlite, ['--set', 'replicaCount=2'], 'replicaCount is 2 but no store URL is set: several replicas need one PostgreSQL store, so set store.url (postgres://…) or store.existingSecret'],
    ['no serving certificate', CI_VALUES.postgres, ['--set', 'tls.existingSecret='], 'tls.existingSecret is required: a kubernetes.io/tls Secret (tls.crt, tls.key)'],
    ['no public URL', CI_VALUES.postgres, ['--set', 'publicUrl='], 'publicUrl is required'],
    ['a public URL that is not https', CI_VALUES.postgres, ['--set', 'publicUrl=http://issuer.example.com'], "at '/publicUrl'"],
    ['an unknown top-level value', CI_VALUES.postgres, ['--set', 'storeUrl=postgres://x'], "additional properties 'storeUrl' not allowed"],
    ['a misspelt nested value, which would otherwise do nothing', CI_VALUES.postgres, ['--set', 'store.secretName=x'], "at '/store': additional properties 'secretName' not allowed"],
    ['a store URL that is not PostgreSQL', CI_VALUES.sqlite, ['--set', 'store.url=mysql://db/kube_relay'], "at '/store/url'"],
    ['PostgreSQL without a pepper', CI_VALUES.postgres, ['--set', 'pepper.existingSecret='], 'pepper.value or pepper.existingSecret is required with a PostgreSQL store'],
    ['a store URL given two ways', CI_VALUES.postgres, ['--set', 'store.url=postgres://db/kube_relay'], 'store.url and store.existingSecret are both set'],
    ['a pepper shorter than 16 bytes', CI_VALUES.postgres, ['--set', 'pepper.existingSecret=,pepper.value=short'], 'pepper.value is shorter than 16 bytes'],
    ['a pepper with a trailing newline', CI_VALUES.postgres, ['--set', 'pepper.existingSecret=', '--set-json', 'pepper.value="0123456789abcdef0123\\n"'], 'pepper.value begins or ends with whitespace'],
    ['audit records with nowhere to go', CI_VALUES.postgres, ['--set', 'audit.stdout=false'], 'audit.stdout is false and audit.webhook.url is empty'],
    ['a PodDisruptionBudget that would never allow an eviction', CI_VALUES.postgres, ['--set', 'podDisruptionBudget.minAvailable=3'], 'podDisruptionBudget.minAvailable is 3 with replicaCount 3'],
    ['zero replicas', CI_VALUES.postgres, ['--set', 'replicaCount=0'], "at '/replicaCount'"],
  ])('refuses %s with a message that names it', (_what, values, extra, message) => {
    const result = helm(['template', RELEASE, CHART, '-f', values, ...extra]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  it.each(['postgres', 'sqlite'] as const)('passes only flags and environment twins that kube-relay issuer knows (%s values)', (store) => {
    const container = issuerContainer(template(CI_VALUES[store], ['--set', 'audit.webhook.url=https://collector.logging/kube-relay,audit.webhook.tokenSecret=t', '--set-string', 'audit.webhook.ca=PEM']));
    const spec = issuerCommands.find((command) => command.words.join(' ') === 'issuer')!;
    const env: Record<string, string> = {};
    for (const variable of container.env) {
      env[variable.name] = variable.value ?? (variable.valueFrom?.fieldRef ? 'kube-relay-issuer-6d5f8c7b9-x2x7q' : `from-secret-${variable.name}`);
    }
    const parsed = parseCommandArgs(spec, container.args.slice(1), { env, stdout: () => {}, stderr: () => {} });
    expect(parsed.values['hub-replicas']).toBe(store === 'postgres' ? '3' : '1');
    expect(parsed.values['hub-replica-id']).toBe('kube-relay-issuer-6d5f8c7b9-x2x7q');
    expect(parsed.values.data).toBe('/var/lib/kube-relay');
    expect(parsed.values['audit-webhook-ca-file']).toBe('/etc/kube-relay/audit-webhook-ca/ca.crt');
    // Every variable is a flag's twin; the two of PostgreSQL mode have a test of their own below.
    const twins = new Set([...GLOBAL_FLAGS, ...spec.flags].filter((flag) => !flag.noEnv).map((flag) => envName(flag.name)));
    expect(Object.keys(env).filter((name) => !['KUBE_RELAY_STORE_URL', 'KUBE_RELAY_PEPPER_FILE'].includes(name) && !twins.has(name))).toEqual([]);
  });

  it('gives the PostgreSQL URL and the pepper file as KUBE_RELAY_STORE_URL and KUBE_RELAY_PEPPER_FILE, the twins of kube-relay issuer --store-url and --pepper-file (DESIGN §9)', () => {
    const container = issuerContainer(template(CI_VALUES.postgres));
    expect(envOf(container, 'KUBE_RELAY_STORE_URL')?.valueFrom?.secretKeyRef).toBeDefined();
    expect(envOf(container, 'KUBE_RELAY_PEPPER_FILE')?.value).toBe('/etc/kube-relay/pepper/pepper');
    const spec = issuerCommands.find((command) => command.words.join(' ') === 'issuer')!;
    const env = { KUBE_RELAY_STORE_URL: 'postgres://issuer@db/kube_relay', KUBE_RELAY_PEPPER_FILE: '/etc/kube-relay/pepper/pepper' };
    const parsed = parseCommandArgs(spec, container.args.slice(1), { env, stdout: () => {}, stderr: () => {} });
    expect({ storeUrl: parsed.values['store-url'], pepperFile: parsed.values['pepper-file'] }).toEqual({ storeUrl: env.KUBE_RELAY_STORE_URL, pepperFile: env.KUBE_RELAY_PEPPER_FILE });
  });

  it.each(['postgres', 'sqlite'] as const)('is accepted whole by kube-apiserver (kubectl apply --dry-run=server, %s values)', (store) => {
    const rendered = template(CI_VALUES[store], ['--set', 'audit.webhook.url=https://collector.logging/kube-relay,audit.webhook.tokenSecret=t', '--set-string', 'audit.webhook.ca=PEM']);
    const result = dryRun(rendered);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('deployment.apps/kube-relay-issuer created (server dry run)');
    expect(result.stdout).toContain('service/kube-relay-issuer-admin created (server dry run)');
    expect(result.stdout).toContain(store === 'postgres' ? 'poddisruptionbudget.policy/kube-relay-issuer created (server dry run)' : 'persistentvolumeclaim/kube-relay-issuer-data created (server dry run)');
  });

  it('is accepted by kube-apiserver with the store URL and pepper in Secrets of the chart', () => {
    const rendered = template(CI_VALUES.postgres, ['--set', 'store.existingSecret=,pepper.existingSecret=', '--set-string', 'store.url=postgres://issuer:pw@db:5432/kube_relay,pepper.value=pepper-0123456789abcdef-not-real']);
    const result = dryRun(rendered);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('secret/kube-relay-issuer-store created (server dry run)');
    expect(result.stdout).toContain('secret/kube-relay-issuer-pepper created (server dry run)');
  });
});

describe('helm install of the issuer chart for real', () => {
  const NAMESPACE = 'kube-relay-issuer-helm';
  const NAME = 'hub';

  afterAll(() => {
    helm(['uninstall', NAME, '-n', NAMESPACE, '--kubeconfig', cluster.adminKubeconfig]);
    adminKubectl(cluster, ['delete', 'namespace', NAMESPACE, '--ignore-not-found', '--wait=false']);
  });

  it('installs every object, with the replica count and the pod name wired into the stored Deployment', () => {
    const install = helm(['install', NAME, CHART, '-n', NAMESPACE, '--create-namespace', '--kubeconfig', cluster.adminKubeconfig, '-f', CI_VALUES.postgres, '--set', 'replicaCount=2']);
    expect(install.stderr).toBe('');
    expect(install.code).toBe(0);
    const fullname = `${NAME}-kube-relay-issuer`;
    const installed = adminKubectl(cluster, ['get', 'deployment,serviceaccount,service,poddisruptionbudget,networkpolicy', '-n', NAMESPACE, '-o', 'name']);
    for (const object of [`deployment.apps/${fullname}`, `serviceaccount/${fullname}`, `service/${fullname}`, `service/${fullname}-admin`, `poddisruptionbudget.policy/${fullname}`, `networkpolicy.networking.k8s.io/${fullname}`]) {
      expect(installed).toContain(object);
    }
    // The e2e cluster runs no Deployment controller (nor scheduler): the Deployment as stored is what counts.
    const deployment = JSON.parse(adminKubectl(cluster, ['get', 'deployment', fullname, '-n', NAMESPACE, '-o', 'json'])) as { spec: DeploymentSpec };
    expect(deployment.spec.replicas).toBe(2);
    const container = deployment.spec.template.spec.containers[0]!;
    expect(container.args).toContain('--hub-replicas=2');
    expect(envOf(container, 'KUBE_RELAY_HUB_REPLICA_ID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(envOf(container, 'KUBE_RELAY_STORE_URL')?.valueFrom?.secretKeyRef).toEqual({ name: 'issuer-postgres', key: 'url' });
  });
});
