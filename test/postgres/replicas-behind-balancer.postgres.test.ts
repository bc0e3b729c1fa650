/**
 * Issue 15's proof, end to end on this machine: two `kube-relay issuer`
 * processes with separate data directories on one PostgreSQL store, behind
 * a loopback TCP load balancer; a tunnel-mode relay holding one tunnel to
 * each replica; a direct-mode relay fetching JWKS and revocations through
 * the balancer; real kubectl through the balancer. Revoking on one replica
 * is refused through the other; replica A killed with SIGKILL while kubectl
 * loops costs no request more than 10 s; A restarts and rejoins with its key.
 * Cluster status read through either replica shows the relay's tunnel to
 * each, and the tunnel A held when it was killed drops out by itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildKubeconfig } from '../../src/client/kubeconfig.js';
import { requestToken } from '../../src/client/token.js';
import { OPERATOR } from '../../src/control/caller.js';
import type { ClusterStatus } from '../../src/control/cluster-status.js';
import { createAdmin } from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { Registry } from '../../src/issuer/registry.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/fake-apiserver.js';
import { BIN } from '../helpers/cli.js';
import { request, until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { createDatabase } from './server.js';
import { freePort } from '../helpers/free-port.js';

const postgres = inject('postgres');
const PEPPER = 'the-pepper-every-replica-shares-0123456789';


/**
 * A round-robin TCP balancer with what real ones have: a backend whose connect fails is marked down for a
 * few seconds and the connection is dispatched to the other one, before any byte is relayed (HAProxy's redispatch).
 */
async function startBalancer(backends: number[]): Promise<{ port: number; close(): Promise<void> }> {
  const downUntil = new Map<number, number>();
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.pause();
    const tryBackend = (attempt: number) => {
      const candidates = backends.filter((port) => (downUntil.get(port) ?? 0) < Date.now());
      const port = (candidates.length ? candidates : backends)[next++ % (candidates.length || backends.length)]!;
      const target = net.connect(port, '127.0.0.1');
      sockets.add(target);
      target.once('error', () => {
        downUntil.set(port, Date.now() + 3_000);
        target.destroy();
        if (attempt < backends.length) tryBackend(attempt + 1);
        else client.destroy();
      });
      target.once('connect', () => {
        target.removeAllListeners('error');
        client.pipe(target).pipe(client);
        client.resume();
        const drop = () => {
          client.destroy();
          target.destroy();
        };
        client.on('error', drop).on('close', drop);
        target.on('error', drop).on('close', drop);
      });
    };
    tryBackend(1);
    client.on('close', () => sockets.delete(client));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

interface IssuerProcess {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

describe('issuer replicas on PostgreSQL behind one URL', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'kube-relay-replicas-lb-'));
  const dirs = { a: path.join(root, 'a'), b: path.join(root, 'b') };
  const pepperFile = path.join(root, 'pepper');
  let storeUrl: string;
  let ports: { a: number; b: number };
  let balancer: { port: number; close(): Promise<void> };
  let publicUrl: string;
  const issuers: Partial<Record<'a' | 'b', IssuerProcess>> = {};
  let fake: FakeApiServer;
  let tunnelRelay: RunningRelay;
  let directRelay: RunningRelay;
  let caPem: string;
  let agentKey: string;
  let agentKeyFile: string;
  let tunnelKubeconfig: string;
  let adminKey: string;
  /** When the relay's tunnel to replica A connected, before A was killed. */
  let firstTunnelToA: string | undefined;

  function startReplica(name: 'a' | 'b'): IssuerProcess {
    const child = spawn(
      process.execPath,
      [BIN, 'issuer', '--listen', `127.0.0.1:${ports[name]}`, '--public-url', publicUrl, '--store-url', storeUrl, '--pepper-file', pepperFile,
        '--hub-replicas', '2', '--hub-replica-id', `replica-${name}`, '--data', dirs[name], '--audit-file', path.join(dirs[name], 'hub-audit.jsonl'), '--log-level', 'warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const replica = { child, stderr: () => stderr, exited };
    issuers[name] = replica;
    return replica;
  }

  const mint = (apiKey = agentKey) => requestToken({ issuer: publicUrl, cluster: 'prod-eu', apiKey, issuerCa: caPem });
  const statusThrough = async (name: 'a' | 'b') =>
    (await (await fetchWithCa({ ca: caPem })(`https://127.0.0.1:${ports[name]}/v1/clusters/prod-eu/status`, { headers: { authorization: `Bearer ${adminKey}` } })).json()) as ClusterStatus;
  const attachedTo = (status: ClusterStatus) => status.relays.map((relay) => relay.hubReplica).sort();
  const replicaJwks = async (name: 'a' | 'b') =>
    ((await (await fetchWithCa({ ca: caPem })(`https://127.0.0.1:${ports[name]}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

  beforeAll(async () => {
    storeUrl = await createDatabase(postgres);
    writeFileSync(pepperFile, PEPPER, { mode: 0o600 });
    // One CA for both replicas' certificates, as an operator's would come from one.
    const ca = loadOrCreateCa(dirs.a);
    mkdirSync(path.join(dirs.b, 'tls'), { recursive: true, mode: 0o700 });
    copyFileSync(ca.certPath, path.join(dirs.b, 'tls', 'ca.crt'));
    copyFileSync(path.join(dirs.a, 'tls', 'ca.key'), path.join(dirs.b, 'tls', 'ca.key'));
    caPem = ca.certPem;
    ports = { a: await freePort(), b: await freePort() };
    balancer = await startBalancer([ports.a, ports.b]);
    publicUrl = `https://127.0.0.1:${balancer.port}`;

    const store = await openStore({ dataDir: root, storeUrl });
    const registry = new Registry(store, Buffer.from(PEPPER));
    agentKey = await registry.createAgent('deployer', 'acme', ['sre']);
    const connectorKey = await registry.createCluster('prod-eu', 'acme');
    adminKey = (await createAdmin(registry, OPERATOR, { name: 'operator', allOrgs: true })).adminKey;
    await store.close();
    agentKeyFile = path.join(root, 'deployer.api-key');
    writeFileSync(agentKeyFile, `${agentKey}\n`, { mode: 0o600 });

    startReplica('a');
    startReplica('b');
    // Each replica is ready once its first signing key can have reached every peer and relay (about 41 s).
    await until(async () => (await mint().catch(() => undefined)) !== undefined && (await mint().catch(() => undefined)) !== undefined, 120_000, 'tokens from the balancer');

    const apiCert = issueCertificate(ca, { commonName: 'kube-apiserver', sans: ['127.0.0.1'], usage: 'server' });
    fake = await startFakeApiServer({ tls: { key: apiCert.keyPem, cert: apiCert.certPem, ca: ca.certPem, requestCert: true } });
    const relayKubeconfig = path.join(root, 'relay.kubeconfig');
    writeFileSync(
      relayKubeconfig,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: fake.url, 'certificate-authority': ca.certPath } }],
        users: [{ name: 'relay', user: { token: 'relay-token' } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'relay' } }],
        'current-context': 'fake',
      }),
    );
    const common = { cluster: 'prod-eu', issuer: publicUrl, issuerCa: caPem, upstream: upstreamFromKubeconfig(relayKubeconfig), maxStreamDurationMs: 0, log: createLogger('error') };
    tunnelRelay = await startRelay({ ...common, mode: 'tunnel', dataDir: path.join(root, 'tunnel-relay'), tunnel: { hubUrl: publicUrl, connectorKey, hubCa: caPem }, pollRevocations: false, audit: { file: path.join(root, 'tunnel-audit.jsonl') }, adminListen: { host: '127.0.0.1', port: 0 } });
    directRelay = await startRelay({ ...common, mode: 'direct', dataDir: dirs.a, listen: { host: '127.0.0.1', port: 0 }, pollRevocations: true, revocationPollIntervalMs: 2_000, audit: { file: path.join(root, 'direct-audit.jsonl') } });
    tunnelKubeconfig = path.join(root, 'agent.kubeconfig');
    writeFileSync(tunnelKubeconfig, buildKubeconfig({ issuer: publicUrl, cluster: 'prod-eu', server: `${publicUrl}/clusters/prod-eu`, caFile: ca.certPath, issuerCaFile: ca.certPath, apiKeyFile: agentKeyFile }));
  }, 200_000);

  afterAll(async () => {
    await tunnelRelay?.close();
    await directRelay?.close();
    for (const replica of Object.values(issuers)) replica?.child.kill('SIGTERM');
    await Promise.all(Object.values(issuers).map((replica) => replica?.exited));
    await balancer?.close();
    await fake?.close();
  }, 60_000);

  it('the tunnel relay holds one tunnel to each replica, and kubectl works through the balancer whichever replica it lands on', async () => {
    const metrics = async () => (await (await fetch(`http://127.0.0.1:${tunnelRelay.adminPort}/metrics`)).text());
    await until(async () => /kube_relay_tunnel_connected 2/.test(await metrics()), 60_000, 'a tunnel to each of the two replicas');
    const kubectl = kubectlBinary('1.33');
    for (let i = 0; i < 6; i++) {
      const result = await runKubectl(kubectl, ['--kubeconfig', tunnelKubeconfig, '--cache-dir', path.join(root, 'kubectl-cache'), 'get', 'pods', '-n', 'default', '-o', 'name']);
      expect(result.code, result.stderr).toBe(0);
    }
    // A token minted through the balancer (by either replica) verifies at the direct relay, whose keys came through it too.
    // (The direct relay serves with a certificate of replica A's data directory's CA, the one caPem holds.)
    for (let i = 0; i < 4; i++) {
      const { token } = await mint();
      expect((await request(`${directRelay.url}/api/v1/namespaces/default/pods`, { ca: caPem, headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    }
    const kids = new Set([...(await replicaJwks('a')), ...(await replicaJwks('b'))]);
    expect(kids.size).toBeGreaterThanOrEqual(2);
    expect(new Set(await replicaJwks('a'))).toEqual(new Set(await replicaJwks('b')));
  }, 120_000);

  it("a cluster status read through either replica shows the relay's tunnel to each, with its version", async () => {
    await until(async () => (await statusThrough('a')).relays.filter((relay) => relay.ready).length === 2, 30_000, 'both tunnels ready in the status');
    for (const name of ['a', 'b'] as const) {
      const status = await statusThrough(name);
      expect(status.connected).toBe(true);
      expect(attachedTo(status), `through replica ${name}`).toEqual(['replica-a', 'replica-b']);
      expect(status.relays.every((relay) => relay.mode === 'tunnel' && /^\d+\.\d+\.\d+/.test(relay.version ?? ''))).toBe(true);
    }
    firstTunnelToA = (await statusThrough('b')).relays.find((relay) => relay.hubReplica === 'replica-a')?.connectedSince;
  }, 60_000);

  it('an agent revoked through replica A is refused through replica B and by both relays', async () => {
    const store = await openStore({ dataDir: root, storeUrl });
    const registry = new Registry(store, Buffer.from(PEPPER));
    const leaverKey = await registry.createAgent('leaver', 'acme', ['sre']);
    await store.close();
    const { token } = await requestToken({ issuer: `https://127.0.0.1:${ports.b}`, cluster: 'prod-eu', apiKey: leaverKey, issuerCa: caPem });
    // Revoked with replica A's CLI flags: the same store.
    const revoked = spawn(process.execPath, [BIN, 'agent', 'revoke', 'leaver', '--store-url', storeUrl, '--pepper-file', pepperFile, '--data', dirs.a]);
    expect(await new Promise((resolve) => revoked.on('exit', resolve))).toBe(0);
    await expect(requestToken({ issuer: `https://127.0.0.1:${ports.b}`, cluster: 'prod-eu', apiKey: leaverKey, issuerCa: caPem })).rejects.toThrow(/revoked/);
    const tunnelled = () => request(`${publicUrl}/clusters/prod-eu/api/v1/namespaces/default/pods`, { ca: caPem, headers: { authorization: `Bearer ${token}` } });
    const direct = () => request(`${directRelay.url}/api/v1/namespaces/default/pods`, { ca: caPem, headers: { authorization: `Bearer ${token}` } });
    const startedAt = Date.now();
    await until(async () => (await tunnelled()).status === 401 && (await tunnelled()).status === 401 && (await direct()).status === 401, 10_000, 'the revocation everywhere');
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  }, 60_000);

  it('replica A killed with SIGKILL while kubectl loops: no request fails for 10 s running, B serves throughout, and A rejoins with its key', async () => {
    const kidsOfA = await replicaJwks('a');
    const kubectl = kubectlBinary('1.33');
    const failures: number[] = [];
    let longestOutageMs = 0;
    let outageStartedAt: number | undefined;
    let running = true;
    const loop = (async () => {
      while (running) {
        const result = await runKubectl(kubectl, ['--kubeconfig', tunnelKubeconfig, '--cache-dir', path.join(root, 'kubectl-cache'), 'get', 'pods', '-n', 'default', '-o', 'name', '--request-timeout', '5s']);
        const now = Date.now();
        if (result.code === 0) {
          if (outageStartedAt !== undefined) longestOutageMs = Math.max(longestOutageMs, now - outageStartedAt);
          outageStartedAt = undefined;
        } else {
          failures.push(now);
          outageStartedAt ??= now;
        }
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    issuers.a!.child.kill('SIGKILL');
    await issuers.a!.exited;
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    startReplica('a');
    await until(async () => (await replicaJwks('a').catch(() => [])).length > 0, 30_000, 'replica A back');
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    running = false;
    await loop;
    if (outageStartedAt !== undefined) longestOutageMs = Math.max(longestOutageMs, Date.now() - outageStartedAt);
    expect(longestOutageMs, `${failures.length} failed requests`).toBeLessThan(10_000);
    // Same data directory, same signer: its key is the one it had.
    expect(new Set(await replicaJwks('a'))).toEqual(new Set(kidsOfA));
    const { token } = await requestToken({ issuer: `https://127.0.0.1:${ports.a}`, cluster: 'prod-eu', apiKey: agentKey, issuerCa: caPem });
    expect(kidsOfA).toContain(decodeProtectedHeader(token).kid);
  }, 120_000);

  it('after A was killed and rejoined, the status shows one tunnel per replica: the one A held when killed went stale', async () => {
    // A's rows from before the kill are refreshed by nobody and stop counting 30 s (three heartbeats) after it was last heard of.
    await until(async () => {
      const status = await statusThrough('b');
      const toA = status.relays.find((relay) => relay.hubReplica === 'replica-a');
      return status.relays.length === 2 && attachedTo(status).join() === 'replica-a,replica-b' && status.relays.every((relay) => relay.ready) && toA?.connectedSince !== firstTunnelToA;
      // 30 s for the stale rows, then the relay's redials (1-30 s backoff each) until one lands on A through the balancer.
    }, 120_000, 'one ready tunnel per replica in the status, the one to A made after the kill');
    expect(firstTunnelToA).toBeDefined();
  }, 150_000);

  it('the issuer logs never show the store password', () => {
    for (const replica of Object.values(issuers)) expect(replica!.stderr()).not.toContain(postgres.password);
  });
});
