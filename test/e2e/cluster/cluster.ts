/**
 * A real, local, Docker-free Kubernetes control plane for the end-to-end
 * suite: etcd 3.5, kube-apiserver, kube-controller-manager (only the
 * controllers the suite needs) and kwok (as the kubelet: exec, logs,
 * attach and port-forward served by local commands, a log file and a local
 * TCP target), built from the Go module proxy by ./build.sh.
 *
 * Certificates come from a CA the suite makes; the admin authenticates with
 * a static token; authorization is Node,RBAC; the cluster's audit log is on
 * so tests can join it to the relay's.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { issueCertificate, loadOrCreateCa } from '../../../src/tls/local-ca.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ADMIN_TOKEN = 'e2e-admin-token';
export const NODE_NAME = 'kwok-node-0';

export interface Binaries {
  kubeApiserver: string;
  kubeControllerManager: string;
  etcd: string;
  kwok: string;
  /** Not part of the cluster: the chart's lint, template and dry-run checks use it. */
  helm: string;
}

export interface Cluster {
  dir: string;
  server: string;
  caFile: string;
  caPem: string;
  adminKubeconfig: string;
  auditLog: string;
  /** The TCP target kwok forwards port-forwards to (a byte echo on loopback). */
  portForwardTargetPort: number;
  /** The file `kubectl logs` and attach read. */
  logsFile: string;
  stop(): Promise<void>;
}

/** Builds (once per machine) or finds the cached binaries; fails with what to install. */
export function buildBinaries(): Binaries {
  const output = execFileSync('bash', [path.join(HERE, 'build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const paths = Object.fromEntries(output.trim().split('\n').map((line) => line.split('=') as [string, string]));
  return { kubeApiserver: paths['kube-apiserver']!, kubeControllerManager: paths['kube-controller-manager']!, etcd: paths.etcd!, kwok: paths.kwok!, helm: paths.helm! };
}

export async function startCluster(binaries: Binaries = buildBinaries()): Promise<Cluster> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-e2e-'));
  const processes: ChildProcess[] = [];
  const stop = async () => {
    for (const child of processes.reverse()) child.kill('SIGTERM');
    await Promise.all(processes.map((child) => exited(child, 10_000)));
  };
  try {
    const [etcdClient, etcdPeer, apiPort, kwokPort, targetPort] = await freePorts(5);
    const ca = loadOrCreateCa(dir);
    const serving = issueCertificate(ca, {
      commonName: 'kube-apiserver',
      sans: ['127.0.0.1', 'localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', '10.0.0.1'],
      usage: 'server',
    });
    const kubelet = issueCertificate(ca, { commonName: NODE_NAME, sans: ['127.0.0.1', 'localhost'], usage: 'server' });
    const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const file = (name: string, content: string) => {
      const target = path.join(dir, name);
      writeFileSync(target, content, { mode: 0o600 });
      return target;
    };
    const servingCert = file('apiserver.crt', serving.certPem);
    const servingKey = file('apiserver.key', serving.keyPem);
    const kubeletCert = file('kubelet.crt', kubelet.certPem);
    const kubeletKey = file('kubelet.key', kubelet.keyPem);
    const saKey = file('sa.key', serviceAccountKey);
    const tokens = file('tokens.csv', `${ADMIN_TOKEN},e2e-admin,e2e-admin-uid,"system:masters"\n`);
    const auditPolicy = file('audit-policy.yaml', stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Metadata' }] }));
    const auditLog = path.join(dir, 'audit.log');
    // kwok reads container logs in the CRI log format ("<RFC 3339 time> <stream> <F|P> <text>").
    const logsFile = file(
      'pod.log',
      ['line 1 from the kwok log file', 'line 2 from the kwok log file'].map((line) => `2025-01-01T00:00:00.000000000Z stdout F ${line}\n`).join(''),
    );
    const server = `https://127.0.0.1:${apiPort}`;
    const adminKubeconfig = file(
      'admin.kubeconfig',
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority': ca.certPath } }],
        users: [{ name: 'e2e-admin', user: { token: ADMIN_TOKEN } }],
        contexts: [{ name: 'e2e', context: { cluster: 'e2e', user: 'e2e-admin' } }],
        'current-context': 'e2e',
      }),
    );

    processes.push(
      launch(dir, 'etcd', binaries.etcd, [
        '--data-dir', path.join(dir, 'etcd'),
        '--listen-client-urls', `http://127.0.0.1:${etcdClient}`,
        '--advertise-client-urls', `http://127.0.0.1:${etcdClient}`,
        '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
        '--quota-backend-bytes', String(2 * 1024 ** 3),
        '--unsafe-no-fsync',
      ]),
    );
    await waitFor(async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, 30_000, 'etcd');

    processes.push(
      launch(dir, 'kube-apiserver', binaries.kubeApiserver, [
        '--etcd-servers', `http://127.0.0.1:${etcdClient}`,
        '--bind-address', '127.0.0.1',
        '--advertise-address', '127.0.0.1',
        '--secure-port', String(apiPort),
        '--tls-cert-file', servingCert,
        '--tls-private-key-file', servingKey,
        '--client-ca-file', ca.certPath,
        '--token-auth-file', tokens,
        '--authorization-mode', 'Node,RBAC',
        '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
        '--service-account-key-file', saKey,
        '--service-account-signing-key-file', saKey,
        '--service-cluster-ip-range', '10.0.0.0/24',
        // No controller-manager runs here, so nothing creates default ServiceAccounts for pods.
        '--disable-admission-plugins', 'ServiceAccount',
        '--audit-policy-file', auditPolicy,
        '--audit-log-path', auditLog,
        '--kubelet-certificate-authority', ca.certPath,
        // kwok's node has no resolvable hostname; its InternalIP is 127.0.0.1.
        '--kubelet-preferred-address-types', 'InternalIP',
        '--enable-priority-and-fairness=false',
        '--allow-privileged=true',
      ]),
    );
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    await waitFor(() => httpsOk(`${server}/readyz`, ca.certPem, admin), 90_000, 'kube-apiserver /readyz');

    processes.push(
      launch(dir, 'kube-controller-manager', binaries.kubeControllerManager, [
        '--kubeconfig', adminKubeconfig,
        // Only what the suite relies on: the aggregated view/edit/admin ClusterRoles, namespaces'
        // default ServiceAccounts and namespace deletion.
        '--controllers', 'clusterrole-aggregation,serviceaccount,namespace',
        '--leader-elect=false',
        '--secure-port', '0',
        '--service-account-private-key-file', saKey,
        '--root-ca-file', ca.certPath,
      ]),
    );

    const target = await startEchoTarget(targetPort!);
    const kwokConfig = file(
      'kwok.yaml',
      [
        { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterExec', metadata: { name: 'local-exec' }, spec: { execs: [{ local: { workDir: dir } }] } },
        { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterLogs', metadata: { name: 'log-file' }, spec: { logs: [{ logsFile, follow: true }] } },
        { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterAttach', metadata: { name: 'attach-file' }, spec: { attaches: [{ logsFile }] } },
        { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterPortForward', metadata: { name: 'echo-target' }, spec: { forwards: [{ target: { port: targetPort, address: '127.0.0.1' } }] } },
      ]
        .map((doc) => stringify(doc))
        .join('---\n'),
    );
    processes.push(
      launch(dir, 'kwok', binaries.kwok, [
        '--kubeconfig', adminKubeconfig,
        '--config', kwokConfig,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector', 'kwok.x-k8s.io/node=fake',
        '--tls-cert-file', kubeletCert,
        '--tls-private-key-file', kubeletKey,
        '--node-ip', '127.0.0.1',
        '--node-name', NODE_NAME,
        '--node-port', String(kwokPort),
        '--server-address', `127.0.0.1:${kwokPort}`,
      ]),
    );
    const stopTarget = stop;
    return {
      dir,
      server,
      caFile: ca.certPath,
      caPem: ca.certPem,
      adminKubeconfig,
      auditLog,
      portForwardTargetPort: targetPort!,
      logsFile,
      async stop() {
        target.close();
        await stopTarget();
      },
    };
  } catch (err) {
    await stop();
    throw new Error(`the e2e cluster did not start (logs in ${dir}): ${(err as Error).message}`);
  }
}

function launch(dir: string, name: string, binary: string, args: string[]): ChildProcess {
  const log = createWriteStream(path.join(dir, `${name}.log`));
  const child = spawn(binary, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  child.on('error', (err) => log.write(`failed to start: ${err.message}\n`));
  return child;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function httpsOk(url: string, ca: string, headers: Record<string, string>): Promise<boolean> {
  const { default: https } = await import('node:https');
  return new Promise((resolve) => {
    const req = https.get(url, { ca, headers, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} was not ready within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((server) => (server.address() as { port: number }).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** The port-forward target: echoes every byte back, so a checksum proves the path both ways. */
function startEchoTarget(port: number): Promise<ReturnType<typeof createServer>> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.pipe(socket));
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

export function readAuditLog(cluster: Cluster): Record<string, unknown>[] {
  return readFileSync(cluster.auditLog, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

