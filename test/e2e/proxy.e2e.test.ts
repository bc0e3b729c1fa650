/**
 * `kube-relay proxy` in front of the relay on the real kube-apiserver (issue 18 item 4): kubectl
 * 1.27 and 1.33 with a kubeconfig that holds no credential get pods and exec over both SPDY and
 * WebSocket, and a plain HTTP client (fetch, as curl would) lists pods; the cluster sees the agent.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { proxyKubeconfig } from '../../src/client/kubeconfig.js';
import { createLogger } from '../../src/log.js';
import { type RunningLocalProxy, startLocalProxy } from '../../src/proxy/local-proxy.js';
import { TokenSource } from '../../src/proxy/token-source.js';
import { until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { CLUSTER_NAME, type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const SPDY = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' };
const WEBSOCKET = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'true' };

let relay: RelayUnderTest;
let proxy: RunningLocalProxy;
let kubeconfig: string;

beforeAll(async () => {
  relay = await startRelayFor(cluster, 'direct');
  await relay.agent('proxied', ['proxy-users']);
  adminKubectl(cluster, ['create', 'rolebinding', 'proxy-users-edit', '-n', 'e2e', '--clusterrole=edit', '--group=acme/proxy-users']);
  const apiKey = readFileSync(path.join(relay.dataDir, 'proxied.api-key'), 'utf8').trim();
  const ca = readFileSync(relay.issuer.caFile!);
  const tokens = new TokenSource({ issuer: relay.issuer.url, cluster: CLUSTER_NAME, apiKey, issuerCa: ca });
  proxy = await startLocalProxy({ host: '127.0.0.1', port: 0, server: relay.relay.url, serverCa: ca, tokens, log: createLogger('warn') });
  kubeconfig = path.join(relay.dataDir, 'proxy.kubeconfig');
  writeFileSync(kubeconfig, proxyKubeconfig(CLUSTER_NAME, proxy.url));
});
afterAll(async () => {
  adminKubectl(cluster, ['delete', 'rolebinding', 'proxy-users-edit', '-n', 'e2e', '--ignore-not-found']);
  await proxy?.close();
  await relay?.close();
});

describe('kube-relay proxy', () => {
  it.each(['1.27', '1.33'])('kubectl %s gets pods and execs over SPDY and WebSocket with no credential of its own', async (version) => {
    const kubectl = kubectlBinary(version);
    const pods = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'get', 'pods', '-n', 'e2e', '-o', 'name']);
    expect(pods.stderr).toBe('');
    expect(pods.stdout).toContain('pod/web');
    for (const [protocol, env] of [['spdy', SPDY], ['websocket', WEBSOCKET]] as const) {
      // kubectl 1.27 has no WebSocket exec: it speaks SPDY whatever the variable says.
      const exec = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'exec', 'web', '-n', 'e2e', '--', 'echo', 'via', protocol], env);
      expect(exec.stderr).toBe('');
      expect(exec.stdout).toBe(`via ${protocol}\n`);
    }
    const whoami = await runKubectl(kubectl, ['--kubeconfig', kubeconfig, 'auth', 'can-i', 'delete', 'pods', '-n', 'e2e']);
    expect(whoami.stdout.trim()).toBe('yes');
  });

  it('a plain HTTP client lists pods as the agent', async () => {
    const res = await fetch(`${proxy.url}/api/v1/namespaces/e2e/pods`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { items: { metadata: { name: string } }[] }).items.map((p) => p.metadata.name)).toContain('web');
    const listed = () => relay.auditRecords().filter((r) => r.path === '/api/v1/namespaces/e2e/pods');
    await until(() => listed().length > 0, 10_000, 'the relay record of the list');
    const record = listed().at(-1);
    expect(record).toMatchObject({ user: 'agent:proxied', decision: 'allowed' });
  });
});
