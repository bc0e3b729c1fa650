/**
 * What the browser suite's console runs on: an issuer in this process (its
 * hub included, so tunnel relays dial it) with the console's idle timeout a
 * test file chooses, a fake API server for relays to stand in front of,
 * and two admins made through the registry before the issuer opens the
 * store: `root` of all orgs and `acme-admin` of org acme. Clusters the test
 * file names are made the same way; relays for them are started in this
 * process with the connector key a test read from the page.
 *
 * A relay started with central grants stands in front of the same fake API
 * server through a front that sends the RBAC and Lease requests of its grant
 * reconciliation to an in-memory RBAC store (test/fixtures/fake-rbac.ts:
 * RoleBindings, ClusterRoleBindings, ClusterRoles, Leases, with
 * kube-apiserver's answers), and everything else (discovery, pods,
 * kubectl's requests) to the fake API server. Every tunnel relay sends its
 * audit records to the issuer (central audit is on with a connector key).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { type ProxyTarget, proxyRequest, proxyUpgrade } from '../../src/request-stages/kubernetes-proxy.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/fake-apiserver.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';
import { type Answer, request } from '../helpers/http.js';

export interface ConsoleStackOptions {
  /** The console's idle timeout (`--console-idle-timeout`). */
  idleTimeoutMs: number;
  /** Clusters made before the issuer starts. */
  clusters?: { name: string; org: string }[];
}

export interface ConsoleStack {
  /** The issuer's URL: the console is at `${url}/ui/`. */
  url: string;
  /** The PEM of the data directory's CA, which issued the issuer's certificate. */
  caPem: string;
  /** The all-orgs admin's key (admin `root`). */
  rootKey: string;
  /** The key of admin `acme-admin`, of org acme. */
  acmeKey: string;
  /** One admin API request (JSON), with `key` as the admin key (default: root's). */
  api(method: string, pathname: string, key?: string): Promise<Answer>;
  /** Whether the cluster exists, as root sees it through the admin API (any answer but 200 or 404 fails). */
  clusterExists(name: string): Promise<boolean>;
  /** The fake API server every relay stands in front of: each request it got, with the relay's impersonation headers. */
  apiServer: FakeApiServer;
  /** The RBAC objects relays with central grants reconcile into (`rbac.get('rolebindings/default', 'kube-relay-<grant id>')`), and their Leases. */
  rbac: FakeRbac;
  /**
   * Holds every RBAC request of the relays' grant reconciliation (Leases aside) until the returned
   * function is called: meanwhile a grant stays pending, as when the API server is slow to answer.
   */
  holdRbac(): () => void;
  /**
   * A tunnel-mode relay for `cluster`, dialling the hub with `connectorKey`, in front of the fake API server.
   * With `centralGrants`, it also reconciles the cluster's grants into the fake RBAC store (checking every second).
   */
  startTunnelRelay(cluster: string, connectorKey: string, options?: { centralGrants?: boolean }): Promise<RunningRelay>;
  close(): Promise<void>;
}

export async function startConsoleStack(options: ConsoleStackOptions): Promise<ConsoleStack> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-browser-'));
  const log = createLogger('error');
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  const rootKey = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  const acmeKey = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  for (const cluster of options.clusters ?? []) await ops.createCluster(registry, OPERATOR, cluster);
  await store.close();

  const issuer: RunningIssuer = await startIssuer({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: path.join(dataDir, 'hub-audit.jsonl') },
    consoleIdleTimeoutMs: options.idleTimeoutMs,
    drainMs: 500,
    log,
  });
  const ca = loadOrCreateCa(dataDir);
  const caPem = readFileSync(issuer.caFile!, 'utf8');
  const apiServerCert = issueCertificate(ca, { commonName: 'kube-apiserver', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  const fake: FakeApiServer = await startFakeApiServer({ tls: { key: apiServerCert.keyPem, cert: apiServerCert.certPem, ca: ca.certPem, requestCert: true } });
  const rbac = await startFakeRbac();
  const front = await startFront(fake, rbac, { key: apiServerCert.keyPem, cert: apiServerCert.certPem, ca: ca.certPem });
  const relayKubeconfig = (name: string, server: string) => {
    const file = path.join(dataDir, `${name}.kubeconfig`);
    writeFileSync(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server, 'certificate-authority': ca.certPath } }],
        users: [{ name: 'relay', user: { token: 'relay-serviceaccount-token' } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'relay' } }],
        'current-context': 'fake',
      }),
    );
    return file;
  };
  const upstreams = { plain: relayKubeconfig('relay-upstream', fake.url), centralGrants: relayKubeconfig('relay-upstream-grants', front.url) };

  const relays = new Set<RunningRelay>();
  const api: ConsoleStack['api'] = (method, pathname, key = rootKey) => request(`${issuer.url}${pathname}`, { method, ca: caPem, headers: { authorization: `Bearer ${key}` } });
  return {
    url: issuer.url,
    caPem,
    rootKey,
    acmeKey,
    api,
    async clusterExists(name) {
      const answer = await api('GET', `/v1/clusters/${name}`);
      if (answer.status !== 200 && answer.status !== 404) throw new Error(`GET /v1/clusters/${name}: ${answer.status} ${answer.body.toString()}`);
      return answer.status === 200;
    },
    apiServer: fake,
    rbac,
    holdRbac: () => front.hold(),
    async startTunnelRelay(cluster, connectorKey, relayOptions = {}) {
      const relay = await startRelay({
        mode: 'tunnel',
        cluster,
        issuer: issuer.url,
        dataDir,
        issuerCa: caPem,
        tunnel: { hubUrl: issuer.url, connectorKey, hubCa: caPem },
        upstream: upstreamFromKubeconfig(relayOptions.centralGrants ? upstreams.centralGrants : upstreams.plain),
        audit: { file: path.join(dataDir, `${cluster}-audit.jsonl`) },
        maxStreamDurationMs: 0,
        pollRevocations: false,
        readinessIntervalMs: 500,
        ...(relayOptions.centralGrants ? { centralGrants: { connectorKey, leaseNamespace: 'kube-relay', syncIntervalMs: 1_000 } } : {}),
        log,
      });
      relays.add(relay);
      const close = relay.close.bind(relay);
      relay.close = async () => {
        relays.delete(relay);
        await close();
      };
      return relay;
    },
    async close() {
      for (const relay of [...relays]) await relay.close();
      await front.close();
      await rbac.close();
      await fake.close();
      await issuer.close();
    },
  };
}

/** The API groups central grants write; their requests go to the fake RBAC store. */
const RBAC_STORE_PATH = /^\/apis\/(rbac\.authorization\.k8s\.io|coordination\.k8s\.io)\//;
const HELD_PATH = /^\/apis\/rbac\.authorization\.k8s\.io\//;

/**
 * One HTTPS address (the API server's certificate) in front of the fake API server and the fake
 * RBAC store, for a relay whose one upstream must be both; upgrades go to the fake API server.
 */
async function startFront(fake: FakeApiServer, rbac: FakeRbac, tls: { key: string; cert: string; ca: string }) {
  const apiServer: ProxyTarget = { protocol: 'https:', hostname: '127.0.0.1', port: fake.port, agent: new https.Agent({ keepAlive: true, ca: tls.ca }), host: 'client' };
  const rbacStore: ProxyTarget = { protocol: 'http:', hostname: '127.0.0.1', port: Number(rbac.upstream.server.port), agent: new http.Agent({ keepAlive: true }), host: 'client' };
  const forward = (req: IncomingMessage, res: ServerResponse, target: ProxyTarget) =>
    proxyRequest(target, req, res, {
      onError: (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(err.message);
        else res.destroy();
      },
    });
  let held: { released: Promise<void>; release(): void } | undefined;
  const sockets = new Set<Socket>();
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req: IncomingMessage, res: ServerResponse) => {
    const pathname = new URL(req.url ?? '/', 'https://front').pathname;
    const target = RBAC_STORE_PATH.test(pathname) ? rbacStore : apiServer;
    const waitFor = held && HELD_PATH.test(pathname) ? held.released : undefined;
    if (!waitFor) return forward(req, res, target);
    // A client that gave up meanwhile (its deadline) is not answered.
    void waitFor.then(() => (req.destroyed ? undefined : forward(req, res, target)));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => proxyUpgrade(apiServer, req, socket, head, { onError: () => socket.destroy() }));
  server.on('secureConnection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold(): () => void {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const gate = { released, release };
      held = gate;
      return () => {
        if (held === gate) held = undefined;
        gate.release();
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        held?.release();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        apiServer.agent.destroy();
        rbacStore.agent.destroy();
      }),
  };
}
