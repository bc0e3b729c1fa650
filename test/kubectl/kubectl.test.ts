/**
 * Unchanged, real kubectl through the relay with a kubeconfig made by
 * `kube-relay kubeconfig`: the exec credential plugin, discovery, and a
 * token refreshed by kubectl itself after the 60-second token expired.
 * Each version runs twice: over HTTP/2, which client-go picks whenever the
 * relay offers it, and over HTTP/1.1 (client-go's DISABLE_HTTP2).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { request, until } from '../helpers/http.js';
import { kubectlBinary, runKubectl as runKubectlWith } from '../helpers/kubectl.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let kubeconfig: string;

beforeAll(async () => {
  stack = await startStack({ relay: { adminListen: { host: '127.0.0.1', port: 0 } } });
  const keyFile = path.join(stack.dataDir, 'deployer.api-key');
  writeFileSync(keyFile, `${stack.agentKey}\n`, { mode: 0o600 });
  const made = await runCli([
    'kubeconfig',
    '--issuer', stack.issuer.url,
    '--cluster', 'prod-eu',
    '--server', stack.relay.url,
    '--ca-file', stack.caFile,
    '--issuer-ca-file', stack.caFile,
    '--api-key-file', keyFile,
  ]);
  expect(made.stderr).toBe('');
  expect(made.code).toBe(0);
  kubeconfig = path.join(stack.dataDir, 'agent.kubeconfig');
  writeFileSync(kubeconfig, made.stdout);
});

afterAll(async () => {
  await stack?.close();
});

/** The requests the relay's API listener has taken over `protocol`. */
async function listenerRequests(protocol: 'h2' | 'http/1.1'): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${stack.relay.adminPort}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith(`kube_relay_listener_requests_total{protocol="${protocol}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe.each([
  ['1.27', 'h2'],
  ['1.27', 'http/1.1'],
  ['1.33', 'h2'],
  ['1.33', 'http/1.1'],
] as const)('kubectl %s through the relay over %s', (version, protocol) => {
  const env = protocol === 'http/1.1' ? { DISABLE_HTTP2: '1' } : {};
  // client-go says so on stderr (klog, http.go) whenever DISABLE_HTTP2 is set: that line, and only it, is expected.
  const runKubectl = async (binary: string, args: string[]) => {
    const result = await runKubectlWith(binary, args, env);
    return { ...result, stderr: result.stderr.replace(/^I\d{4} [\d:.]+ +\d+ http\.go:\d+\] HTTP2 has been explicitly disabled\n/gm, '') };
  };
  const spawnKubectl = (binary: string, args: string[]) => spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });

  it('runs get --raw as the agent, with a token from the exec plugin', async () => {
    const kubectl = kubectlBinary(version);
    const other = protocol === 'h2' ? 'http/1.1' : 'h2';
    const [before, otherBefore] = [await listenerRequests(protocol), await listenerRequests(other)];
    const startedAt = new Date().toISOString();
    const result = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/api/v1/namespaces/default/pods']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await listenerRequests(protocol)).toBeGreaterThan(before);
    expect(await listenerRequests(other)).toBe(otherBefore);
    expect(JSON.parse(result.stdout)).toMatchObject({ kind: 'PodList' });
    const seen = stack.fake.lastRequest()!;
    expect(seen.url).toBe('/api/v1/namespaces/default/pods');
    expect(seen.headers['impersonate-user']).toBe('agent:deployer');
    // This run's record: the same version's run over the other protocol, and its watch, have records for the path too.
    const record = await stack.awaitRecord('/api/v1/namespaces/default/pods', (r) => r.time >= startedAt && r.verb === 'list' && (r.userAgent?.includes(`/v${version}.`) ?? false));
    expect(record).toMatchObject({ user: 'agent:deployer', decision: 'allowed', verb: 'list' });
    expect(record.userAgent).toMatch(new RegExp(`^kubectl[.\\d]*/v${version.replace('.', '\\.')}\\.`));
  });

  it('runs get pods, discovery included, and the audit groups the invocation by kubectl session', async () => {
    const kubectl = kubectlBinary(version);
    const before = stack.auditRecords().length;
    // A fresh discovery cache, so this kubectl really asks the relay for /api and /apis.
    const cacheDir = mkdtempSync(path.join(tmpdir(), 'kubectl-cache-'));
    const result = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, 'get', 'pods', '-n', 'default']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^NAME\s+/);
    expect(result.stdout).toContain('pod-0');
    await until(() => stack.auditRecords().slice(before).some((r) => r.path === '/api/v1/namespaces/default/pods'), 3_000, 'the list record');
    const records = stack.auditRecords().slice(before);
    expect(records.some((r) => r.path === '/api')).toBe(true);
    const list = records.find((r) => r.path === '/api/v1/namespaces/default/pods')!;
    expect(list).toMatchObject({ verb: 'list', namespace: 'default', resource: 'pods' });
    if (version !== '1.27') {
      expect(list.kubectlCommand).toBe('kubectl get');
      expect(list.kubectlSession).toEqual(expect.any(String));
    }
  });

  it('is refused when it tries --as', async () => {
    const kubectl = kubectlBinary(version);
    const before = stack.fake.requests.length;
    const result = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/api/v1/namespaces/default/pods', '--as', 'system:admin']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('Forbidden');
    expect(stack.fake.requests.length).toBe(before);
  });

  it('get -w prints why the relay ended its watch when the agent is revoked', async () => {
    const kubectl = kubectlBinary(version);
    const agent = `watcher-${version.replace('.', '-')}-${protocol === 'h2' ? 'h2' : 'h1'}`;
    const handle = await stack.registry();
    const keyFile = path.join(stack.dataDir, `${agent}.api-key`);
    writeFileSync(keyFile, `${await handle.registry.createAgent(agent, 'acme', ['sre'])}\n`, { mode: 0o600 });
    await handle.close();
    const made = await runCli(['kubeconfig', '--issuer', stack.issuer.url, '--cluster', 'prod-eu', '--server', stack.relay.url, '--ca-file', stack.caFile, '--issuer-ca-file', stack.caFile, '--api-key-file', keyFile]);
    const agentKubeconfig = path.join(stack.dataDir, `${agent}.kubeconfig`);
    writeFileSync(agentKubeconfig, made.stdout);
    const child = spawnKubectl(kubectl, ['--kubeconfig', agentKubeconfig, '--cache-dir', mkdtempSync(path.join(tmpdir(), 'kubectl-cache-')), 'get', 'pods', '-n', 'default', '-w']);
    try {
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      const watch = await stack.fake.nextWatch();
      await watch.send({ type: 'ADDED', object: { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'watched-pod', namespace: 'default', resourceVersion: '2', creationTimestamp: '2025-01-01T00:00:00Z' } } });
      await until(() => stdout.includes('watched-pod'), 15_000, 'kubectl to print the watched pod');
      // As the revocation feed would tell the relay.
      stack.relay.revocations.apply([{ user: `agent:${agent}`, revokedAt: new Date().toISOString() }]);
      await exited;
      // kubectl prints the final event's Status; get -w exits 0 whatever ends its watch (1.27 and 1.33 drop the watch's error).
      expect(stdout).toMatch(/Failure\s+Unauthorized\s+the agent was revoked/);
      await watch.closed;
    } finally {
      child.kill();
    }
  });
});

describe('token expiry', () => {
  it(
    'kubectl runs the plugin again by itself once the 60-second token has expired',
    async () => {
      const kubectl = kubectlBinary('1.33');
      // `kubectl proxy` is one long-lived kubectl process sending many requests with one credential cache.
      const proxy = spawn(kubectl, ['--kubeconfig', kubeconfig, 'proxy', '--port', '0', '--address', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        let output = '';
        proxy.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        await until(() => /127\.0\.0\.1:(\d+)/.test(output), 15_000, 'kubectl proxy to start');
        const port = /127\.0\.0\.1:(\d+)/.exec(output)![1];
        const refreshPath = '/api/v1/namespaces/default/pods/token-refresh';
        const viaProxy = async () => {
          const recordsFor = () => stack.auditRecords().filter((r) => r.path === refreshPath);
          const before = recordsFor().length;
          const res = await fetch(`http://127.0.0.1:${port}${refreshPath}`);
          expect(res.status).toBe(200);
          await until(() => recordsFor().length > before, 3_000, 'the audit record');
          return recordsFor().at(-1)!.tokenId;
        };
        const first = await viaProxy();
        expect(await viaProxy()).toBe(first);
        await new Promise((resolve) => setTimeout(resolve, 62_000));
        const afterExpiry = await viaProxy();
        expect(afterExpiry).not.toBe(first);
        expect(stack.auditRecords().filter((r) => r.path === refreshPath).every((r) => r.decision === 'allowed')).toBe(true);
      } finally {
        proxy.kill();
      }
    },
    120_000,
  );
});

describe('the relay API listener is not the admin listener', () => {
  it('forwards /healthz to the API server instead of answering it', async () => {
    const token = await stack.token();
    const before = stack.fake.requests.length;
    const answer = await request(`${stack.relay.url}/healthz`, { headers: { authorization: `Bearer ${token}` }, ca: stack.caPem });
    expect(answer.status).toBe(200);
    // By what arrived since, not the last request: a kubectl of an earlier test may still be sending.
    expect(stack.fake.requests.slice(before).map((seen) => seen.url)).toContain('/healthz');
  });
});
