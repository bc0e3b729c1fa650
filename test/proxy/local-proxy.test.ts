/**
 * `kube-relay proxy` (issue 18 item 4): plain HTTP in on loopback, HTTPS out to the relay (direct
 * mode) or the hub (tunnel mode) with the proxy's own token; a client holds no credential and one
 * it sends is dropped; real kubectl 1.27 and 1.33 work through it with a kubeconfig that has no
 * exec plugin, exec included; a token is renewed before it expires; a revoked agent's proxy
 * refuses with the issuer's reason; a non-loopback --listen is refused.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { requestToken } from '../../src/client/token.js';
import { createLogger } from '../../src/log.js';
import { startLocalProxy } from '../../src/proxy/local-proxy.js';
import { ProxyRun } from '../../src/proxy/proxy-run.js';
import { TokenSource } from '../../src/proxy/token-source.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { type Stack, startStack } from '../helpers/stack.js';

describe.each(['direct', 'tunnel'] as const)('%s mode', (mode) => {
  let stack: Stack;
  let proxyUrl: string;
  let kubeconfig: string;
  let child: ReturnType<typeof spawn>;
  let stderr = '';

  beforeAll(async () => {
    // Direct mode with a connector key too, so both modes send their records to the issuer (central audit).
    stack = await startStack({ mode, controlChannel: mode === 'direct', relay: { centralAudit: { batchWaitMs: 20 } } });
    const keyFile = path.join(stack.dataDir, 'deployer.api-key');
    writeFileSync(keyFile, `${stack.agentKey}\n`, { mode: 0o600 });
    kubeconfig = path.join(stack.dataDir, 'proxy.kubeconfig');
    child = spawn(process.execPath, [
      path.resolve('bin/kube-relay.js'), 'proxy',
      '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile,
      '--cluster', 'prod-eu', '--server', stack.relay.url, '--ca-file', stack.caFile,
      '--api-key-file', keyFile, '--listen', '127.0.0.1:0', '--kubeconfig-out', kubeconfig,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await until(() => /at (http:\/\/127\.0\.0\.1:\d+)/.test(stderr), 20_000, `the proxy to start (stderr: ${stderr})`);
    proxyUrl = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
  });
  afterAll(async () => {
    child?.kill('SIGTERM');
    await stack?.close();
  });

  it('forwards a request without any credential as the agent; a credential the client sends is dropped', async () => {
    const res = await fetch(`${proxyUrl}/api/v1/namespaces/default/pods`, { headers: { authorization: 'Bearer not-a-token', cookie: 'session=x' } });
    expect(res.status).toBe(200);
    const seen = stack.fake.lastRequest()!;
    expect(seen.url).toBe('/api/v1/namespaces/default/pods');
    expect(seen.headers['impersonate-user']).toBe('agent:deployer');
    expect(seen.headers.cookie).toBeUndefined();
    const record = await stack.awaitRecord('/api/v1/namespaces/default/pods');
    expect(record).toMatchObject({ user: 'agent:deployer', decision: 'allowed' });
  });

  it('is one session in the central audit: opened at start, holding the requests it forwarded, open while it runs', async () => {
    const res = await fetch(`${proxyUrl}/api/v1/namespaces/default/configmaps`, { headers: { 'kube-relay-session': 'p-forged' } });
    expect(res.status).toBe(200);
    const { registry, close } = await stack.registry();
    try {
      const run = async () => (await registry.audit.listSessions({ agent: 'deployer', limit: 100 })).find((s) => s.kind === 'proxy');
      await until(async () => ((await run())?.requests ?? 0) >= 1 && (await registry.audit.queryAudit({ session: (await run())!.id, limit: 100 })).some((r) => r.record.path === '/api/v1/namespaces/default/configmaps'), 10_000, 'the request in the proxy run');
      const session = (await run())!;
      expect(session).toMatchObject({ cluster: 'prod-eu', org: 'acme' });
      expect(session.endedAt).toBeUndefined();
      // The run's own id travels, not the one the client sent.
      expect(stack.fake.lastRequest()!.headers['kube-relay-session']).toBe(session.id);
    } finally {
      await close();
    }
  });

  it('a client that leaves a watch ends it upstream too (the relay records it as ended, at once)', async () => {
    const pending = stack.fake.nextWatch();
    const left = new Promise<void>((resolve, reject) => {
      const req = http.get(`${proxyUrl}/api/v1/namespaces/default/pods?watch=1&leaving=1`, (res) => {
        expect(res.statusCode).toBe(200);
        req.destroy();
        resolve();
      });
      req.on('error', (err) => (err.message.includes('socket hang up') ? resolve() : reject(err)));
    });
    await pending;
    await left;
    const record = await stack.awaitRecord('/api/v1/namespaces/default/pods', (r) => r.query === 'watch=1&leaving=1');
    expect(record).toMatchObject({ verb: 'watch', user: 'agent:deployer' });
  });

  it('writes a kubeconfig with its URL and no credential', () => {
    const config = parse(readFileSync(kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[]; users: { user: Record<string, unknown> }[] };
    expect(config.clusters[0]!.cluster.server).toBe(proxyUrl);
    expect(config.users[0]!.user).toEqual({});
    expect(readFileSync(kubeconfig, 'utf8')).not.toMatch(/krl_|token|exec/);
  });

  it.each(['1.27', '1.33'])('kubectl %s gets pods through it with that kubeconfig', async (version) => {
    const pods = await runKubectl(kubectlBinary(version), ['--kubeconfig', kubeconfig, 'get', 'pods', '-n', 'default', '-o', 'name']);
    expect(pods.stderr).toBe('');
    expect(pods.code).toBe(0);
    expect(stack.fake.lastRequest()!.headers['impersonate-user']).toBe('agent:deployer');
  });

  // kubectl 1.33 execs over WebSocket, which the fake API server speaks; 1.27's SPDY exec needs a real kubelet (kwok, in the e2e suite).
  it('kubectl 1.33 execs through it: the upgrade carries the proxy\'s token', async () => {
    const exec = await runKubectl(kubectlBinary('1.33'), ['--kubeconfig', kubeconfig, 'exec', '-n', 'default', 'web', '--', 'echo', 'through', 'the', 'proxy']);
    expect(exec.stderr).toBe('');
    expect(exec.stdout).toBe('through the proxy\n');
    const upgrade = stack.fake.requests.filter((r) => r.upgrade && r.url.includes('/exec')).at(-1);
    expect(upgrade?.headers['impersonate-user']).toBe('agent:deployer');
  });
});

describe('tokens', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('one token serves until it is near expiry, then a new one is minted; concurrent requests share one mint', async () => {
    let mints = 0;
    let now = Date.now();
    const tokens = new TokenSource({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem }, (request) => {
      mints++;
      return requestToken(request);
    }, () => now);
    const [a, b] = await Promise.all([tokens.token(), tokens.token()]);
    expect(a).toBe(b);
    expect(mints).toBe(1);
    now += 30_000;
    expect(await tokens.token()).toBe(a);
    now += 20_000; // 10 s left: renewed
    expect(await tokens.token()).not.toBe(a);
    expect(mints).toBe(2);
  });

  it('a revoked agent gets no token: requests are refused with a Status naming the reason', async () => {
    const { registry, close } = await stack.registry();
    try {
      await registry.createAgent('short-lived', 'acme', ['sre']).then(async (key) => {
        const tokens = new TokenSource({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey: key, issuerCa: stack.caPem });
        await tokens.token();
        await registry.revokeAgent('short-lived');
        const proxy = await startLocalProxy({ host: '127.0.0.1', port: 0, server: stack.relay.url, serverCa: stack.caPem, tokens: new TokenSource({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey: key, issuerCa: stack.caPem }), log: createLogger('error') });
        try {
          const res = await fetch(`${proxy.url}/api/v1/namespaces/default/pods`);
          expect(res.status).toBe(401);
          expect(await res.json()).toMatchObject({ kind: 'Status', code: 401, message: expect.stringMatching(/^kube-relay proxy has no token for the cluster: the issuer refused a token for cluster "prod-eu": agent "short-lived" has been revoked/) });
        } finally {
          await proxy.close();
        }
      });
    } finally {
      await close();
    }
  });
});

describe('a proxy run', () => {
  it('ends its session when it is stopped (SIGTERM, as Ctrl-C)', async () => {
    const stack = await startStack({ mode: 'tunnel' });
    try {
      const keyFile = path.join(stack.dataDir, 'deployer.api-key');
      writeFileSync(keyFile, `${stack.agentKey}\n`, { mode: 0o600 });
      const child = spawn(process.execPath, [path.resolve('bin/kube-relay.js'), 'proxy', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile, '--cluster', 'prod-eu', '--server', stack.relay.url, '--ca-file', stack.caFile, '--api-key-file', keyFile, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      await until(() => /at http:\/\/127\.0\.0\.1:\d+/.test(stderr), 20_000, `the proxy to start (stderr: ${stderr})`);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const { registry, close } = await stack.registry();
      try {
        const [run] = (await registry.audit.listSessions({ agent: 'deployer', limit: 100 })).filter((s) => s.kind === 'proxy');
        expect(run!.endedAt).toBeInstanceOf(Date);
      } finally {
        await close();
      }
    } finally {
      await stack.close();
    }
  });

  it('notices a revoked agent at its next heartbeat, with no request made, and passes the reason on', async () => {
    const stack = await startStack();
    try {
      const { registry, close } = await stack.registry();
      try {
        const key = await registry.createAgent('soon-revoked', 'acme', ['sre']);
        let refused: string | undefined;
        const run = await ProxyRun.open({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey: key, issuerCa: stack.caPem }, createLogger('error'), (reason) => (refused = reason), 100);
        expect(run?.id).toMatch(/^p-/);
        await registry.revokeAgent('soon-revoked');
        await until(() => refused !== undefined, 10_000, 'the heartbeat to be refused');
        expect(refused).toBe('agent "soon-revoked" has been revoked');
        await run!.end();
      } finally {
        await close();
      }
    } finally {
      await stack.close();
    }
  });
});

describe('kube-relay proxy misuse', () => {
  it.each([
    [['--listen', '0.0.0.0:8001'], /--listen 0\.0\.0\.0 is not a loopback address/],
    [['--listen', '192.168.1.5:8001'], /is not a loopback address/],
    [['--server', 'http://127.0.0.1:1'], /--server "http:\/\/127\.0\.0\.1:1" must be an https:\/\/ URL/],
  ])('%j: exit 2, nothing listens', async (args, message) => {
    const base = ['proxy', '--issuer', 'https://127.0.0.1:1', '--cluster', 'c', '--server', 'https://127.0.0.1:2'];
    const result = await runCli([...base, ...args], { KUBE_RELAY_API_KEY: 'krl_agent_x' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('a key the issuer refuses: exit 1 with its reason before listening', async () => {
    const stack = await startStack();
    try {
      const result = await runCli(['proxy', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile, '--cluster', 'prod-eu', '--server', stack.relay.url, '--listen', '127.0.0.1:0'], { KUBE_RELAY_API_KEY: `krl_agent_${'A'.repeat(43)}` });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^kube-relay: the issuer refused a token for cluster "prod-eu": the API key is not valid/);
    } finally {
      await stack.close();
    }
  });
});
