/**
 * Sessions on the real kube-apiserver (issue 18, DESIGN §12): a kubectl 1.33
 * script (get, apply, exec -i, logs, port-forward, delete) through a relay
 * in each mode is one session in the central audit, with its commands in
 * order, and `sessions show` lists its requests; the same through
 * `kube-relay proxy` (a kubeconfig without exec plugin) with kubectl 1.27
 * and 1.33 (get, a watch past the 60 s of a token, exec -i, port-forward)
 * and a plain HTTP client is one session for the proxy's run, ended when the
 * proxy stops; and a direct-mode relay cut off from the issuer for a minute
 * delivers the records it held once the issuer is back, none twice.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { SessionCommand, SessionView } from '../../src/sessions/session.js';
import { requestToken } from '../../src/client/token.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { BIN, runCli } from '../helpers/cli.js';
import { request, until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { execRoundTrip, portForwardRoundTrip, streamUntil } from './kubectl-streams.js';
import { CLUSTER_NAME, type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');

async function sessionsOf(relay: RelayUnderTest, agent: string): Promise<SessionView[]> {
  const listed = await runCli(['sessions', 'list', '--agent', agent, '--output', 'json', '--data', relay.dataDir]);
  expect(listed.stderr).toBe('');
  return (JSON.parse(listed.stdout) as { items: SessionView[] }).items;
}

async function showSession(relay: RelayUnderTest, id: string): Promise<{ session: SessionView; requests: Record<string, unknown>[] }> {
  const shown = await runCli(['sessions', 'show', id, '--output', 'json', '--data', relay.dataDir]);
  expect(shown.stderr).toBe('');
  return JSON.parse(shown.stdout) as { session: SessionView; requests: Record<string, unknown>[] };
}

const describeCommand = (c: SessionCommand) => (c.kind === 'kubectl' ? c.command : `${c.kind} ${c.pod}: ${c.command}`);

describe.each(['tunnel', 'direct'] as const)('a kubectl 1.33 script through a %s-mode relay', (mode) => {
  let relay: RelayUnderTest;
  let kubeconfig: string;
  const agent = `scripted-${mode}`;
  const binding = `sessions-${mode}-edit`;

  beforeAll(async () => {
    relay = await startRelayFor(cluster, mode, { controlChannel: true });
    kubeconfig = await relay.agent(agent, [`sessions-${mode}`]);
    adminKubectl(cluster, ['create', 'rolebinding', binding, '-n', 'e2e', '--clusterrole=edit', `--group=acme/sessions-${mode}`]);
  });
  afterAll(async () => {
    adminKubectl(cluster, ['delete', 'rolebinding', binding, '-n', 'e2e', '--ignore-not-found']);
    await relay?.close();
  });

  it('is one session with its commands in order, and `sessions show` lists its requests', async () => {
    const kubectl = kubectlBinary('1.33');
    const run = async (args: string[]) => {
      const result = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, ...args]);
      expect(result.stderr, args.join(' ')).toBe('');
      return result;
    };
    const manifest = path.join(relay.dataDir, `session-${mode}.yaml`);
    writeFileSync(manifest, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: session-${mode}\n  namespace: e2e\ndata:\n  a: b\n`);
    await run(['get', 'pods', '-n', 'e2e']);
    await run(['apply', '-f', manifest]);
    const exec = await execRoundTrip(kubectl, kubeconfig, Buffer.from('hello'), {});
    expect(exec).toMatchObject({ exit: '0', bytes: 5 });
    await streamUntil(kubectl, ['--kubeconfig', kubeconfig, 'logs', '-f', 'web', '-n', 'e2e'], {}, 'line 2 from the kwok log file');
    const forwarded = await portForwardRoundTrip(kubectl, kubeconfig, 1024, {});
    expect(forwarded.received).toBe(forwarded.sent);
    await run(['delete', 'configmap', `session-${mode}`, '-n', 'e2e']);

    const expected = ['kubectl get', 'kubectl apply', 'kubectl exec', 'exec web: head -c 5', 'kubectl logs', 'kubectl port-forward', 'kubectl delete'];
    await until(async () => ((await sessionsOf(relay, agent))[0]?.commands ?? []).map(describeCommand).join('|') === expected.join('|'), 20_000, 'the script’s session with all its commands');
    const sessions = await sessionsOf(relay, agent);
    expect(sessions).toHaveLength(1);
    const [session] = sessions;
    expect(session).toMatchObject({ agent, org: 'acme', cluster: CLUSTER_NAME, kind: 'activity', open: true, refusals: 0 });
    expect(session!.commands.find((c) => c.kind === 'exec')).toMatchObject({ namespace: 'e2e', pod: 'web', status: 101 });

    const shown = await showSession(relay, session!.id);
    expect(shown.session.id).toBe(session!.id);
    expect(shown.requests.length).toBe(session!.requests);
    const verbs = shown.requests.map((r) => r.verb);
    for (const verb of ['list', 'create', 'exec', 'portforward', 'delete']) expect(verbs, verb).toContain(verb);
    // In the order the requests began: the delete is the script's last.
    expect(verbs.lastIndexOf('delete')).toBeGreaterThan(verbs.indexOf('portforward'));
    expect(verbs.indexOf('exec')).toBeLessThan(verbs.indexOf('portforward'));
    const table = await runCli(['sessions', 'show', session!.id, '--data', relay.dataDir]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`head -c 5`);
    console.log(`sessions show (${mode} mode):\n${table.stdout}`);
  });
});

describe('a kube-relay proxy run', () => {
  let relay: RelayUnderTest;
  let proxy: ChildProcess;
  let proxyUrl: string;
  let kubeconfig: string;
  let stderr = '';

  beforeAll(async () => {
    relay = await startRelayFor(cluster, 'tunnel');
    await relay.agent('proxy-run', ['proxy-run-users']);
    adminKubectl(cluster, ['create', 'rolebinding', 'proxy-run-edit', '-n', 'e2e', '--clusterrole=edit', '--group=acme/proxy-run-users']);
    kubeconfig = path.join(relay.dataDir, 'proxy-run.kubeconfig');
    proxy = spawn(process.execPath, [
      BIN, 'proxy',
      '--issuer', relay.issuer.url, '--issuer-ca-file', relay.issuer.caFile!,
      '--cluster', CLUSTER_NAME, '--server', relay.relay.url, '--ca-file', relay.issuer.caFile!,
      '--api-key-file', path.join(relay.dataDir, 'proxy-run.api-key'), '--listen', '127.0.0.1:0', '--kubeconfig-out', kubeconfig,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    proxy.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await until(() => /at (http:\/\/127\.0\.0\.1:\d+)/.test(stderr), 20_000, `the proxy to start (${stderr})`);
    proxyUrl = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
  });
  afterAll(async () => {
    proxy?.kill('SIGKILL');
    adminKubectl(cluster, ['delete', 'rolebinding', 'proxy-run-edit', '-n', 'e2e', '--ignore-not-found']);
    adminKubectl(cluster, ['delete', 'configmap', 'watched-1.27', 'watched-1.33', '-n', 'e2e', '--ignore-not-found']);
    await relay?.close();
  });

  it('serves kubectl 1.27 and 1.33 (get, a watch past 60 s, exec -i, port-forward) and curl, all in one session that ends with the proxy', { timeout: 240_000 }, async () => {
    expect(readFileSync(kubeconfig, 'utf8')).not.toMatch(/exec|token|krl_/);
    await Promise.all(
      ['1.27', '1.33'].map(async (version) => {
        const kubectl = kubectlBinary(version);
        const pods = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'get', 'pods', '-n', 'e2e', '-o', 'name']);
        expect(pods.stderr).toBe('');
        expect(pods.stdout).toContain('pod/web');
        // A watch outlives the 60-second token it was opened with: the proxy's later tokens are for later requests.
        const watch = spawn(kubectl, ['--kubeconfig', kubeconfig, 'get', 'configmaps', '-n', 'e2e', '--watch', '-o', 'name']);
        let watched = '';
        watch.stdout.on('data', (chunk: Buffer) => (watched += chunk.toString()));
        watch.stderr.on('data', (chunk: Buffer) => (watched += chunk.toString()));
        try {
          await new Promise((resolve) => setTimeout(resolve, 65_000));
          adminKubectl(cluster, ['create', 'configmap', `watched-${version}`, '-n', 'e2e']);
          await until(() => watched.includes(`configmap/watched-${version}`), 20_000, `kubectl ${version}'s watch to see the new ConfigMap after 65 s (${watched})`);
        } finally {
          watch.kill();
        }
        const exec = await execRoundTrip(kubectl, kubeconfig, Buffer.from('abc'), {});
        expect(exec).toMatchObject({ exit: '0', bytes: 3 });
        const forwarded = await portForwardRoundTrip(kubectl, kubeconfig, 4096, {});
        expect(forwarded.received).toBe(forwarded.sent);
      }),
    );
    const curl = await fetch(`${proxyUrl}/api/v1/namespaces/e2e/pods/web`);
    expect(curl.status).toBe(200);

    const run = async () => (await sessionsOf(relay, 'proxy-run')).find((s) => s.kind === 'proxy');
    await until(async () => ((await run())?.commands ?? []).filter((c) => c.kind === 'exec').length === 2, 20_000, 'both execs in the proxy run');
    const open = (await run())!;
    expect(open.open).toBe(true);
    expect((await sessionsOf(relay, 'proxy-run')).filter((s) => s.kind === 'activity')).toEqual([]);
    const verbs = (await showSession(relay, open.id)).requests.map((r) => r.verb);
    for (const verb of ['list', 'watch', 'exec', 'portforward', 'get']) expect(verbs, verb).toContain(verb);

    const exited = new Promise((resolve) => proxy.once('exit', resolve));
    proxy.kill('SIGINT');
    expect(await exited).toBe(0);
    const ended = (await run())!;
    expect(ended.open).toBe(false);
    expect(ended.endedAt).not.toBeNull();
  });
});

describe('a direct-mode relay cut off from the issuer for a minute', () => {
  let relay: RelayUnderTest;
  let restarted: RunningIssuer | undefined;

  beforeAll(async () => {
    relay = await startRelayFor(cluster, 'direct', { controlChannel: true });
    await relay.agent('offline-reader', ['offline-readers']);
    adminKubectl(cluster, ['create', 'rolebinding', 'offline-readers-view', '-n', 'e2e', '--clusterrole=view', '--group=acme/offline-readers']);
  });
  afterAll(async () => {
    adminKubectl(cluster, ['delete', 'rolebinding', 'offline-readers-view', '-n', 'e2e', '--ignore-not-found']);
    await relay?.relay.close();
    await restarted?.close();
  });

  it('keeps serving, then delivers every record it held once the issuer is back, none twice', { timeout: 240_000 }, async () => {
    const apiKey = readFileSync(path.join(relay.dataDir, 'offline-reader.api-key'), 'utf8').trim();
    const ca = readFileSync(relay.issuer.caFile!, 'utf8');
    const { token } = await requestToken({ issuer: relay.issuer.url, cluster: CLUSTER_NAME, apiKey, issuerCa: ca });
    const port = Number(new URL(relay.issuer.url).port);
    await relay.issuer.close();
    const outageStarted = Date.now();
    // Requests while the issuer is away, with the token minted before (the relay holds the issuer's keys).
    const paths: string[] = [];
    while (Date.now() - outageStarted < 50_000) {
      const target = `/api/v1/namespaces/e2e/pods?offline=${paths.length}`;
      expect((await request(`${relay.relay.url}${target}`, { ca, headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      paths.push(target);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 60_000 - (Date.now() - outageStarted))));
    restarted = await startIssuer({ dataDir: relay.dataDir, listen: { host: '127.0.0.1', port }, keyRotationIntervalMs: 86_400_000, audit: { file: path.join(relay.dataDir, 'hub-audit-restarted.jsonl') }, log: createLogger('error') });
    const offlineRecords = () => relay.withRegistry((registry) => registry.audit.queryAudit({ agent: 'offline-reader', limit: 1000 }));
    await until(async () => (await offlineRecords()).length >= paths.length, 60_000, `the ${paths.length} records of the outage at the issuer`);
    const stored = await offlineRecords();
    expect(stored.map((r) => `${r.record.path}?${r.record.query}`).sort()).toEqual([...paths].sort());
    expect(new Set(stored.map((r) => r.id)).size).toBe(paths.length);
    const sessions = await relay.withRegistry((registry) => registry.audit.listSessions({ agent: 'offline-reader', limit: 10 }));
    expect(sessions.reduce((n, session) => n + session.requests, 0)).toBe(paths.length);
  });
});
