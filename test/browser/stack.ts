/**
 * What the browser suite's console runs on: an issuer in this process (its
 * hub included, so tunnel relays dial it) with the console's idle timeout a
 * test file chooses, a fake API server for relays to stand in front of,
 * and two admins made through the registry before the issuer opens the
 * store: `root` of all orgs and `acme-admin` of org acme. Clusters the test
 * file names are made the same way; relays for them are started in this
 * process with the connector key a test read from the page.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
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
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/fake-apiserver.js';
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
  /** A tunnel-mode relay for `cluster`, dialling the hub with `connectorKey`, in front of the fake API server. */
  startTunnelRelay(cluster: string, connectorKey: string): Promise<RunningRelay>;
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
  const relayKubeconfig = path.join(dataDir, 'relay-upstream.kubeconfig');
  writeFileSync(
    relayKubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: fake.url, 'certificate-authority': ca.certPath } }],
      users: [{ name: 'relay', user: { token: 'relay-serviceaccount-token' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'relay' } }],
      'current-context': 'fake',
    }),
  );

  const relays = new Set<RunningRelay>();
  return {
    url: issuer.url,
    caPem,
    rootKey,
    acmeKey,
    api: (method, pathname, key = rootKey) => request(`${issuer.url}${pathname}`, { method, ca: caPem, headers: { authorization: `Bearer ${key}` } }),
    async startTunnelRelay(cluster, connectorKey) {
      const relay = await startRelay({
        mode: 'tunnel',
        cluster,
        issuer: issuer.url,
        dataDir,
        issuerCa: caPem,
        tunnel: { hubUrl: issuer.url, connectorKey, hubCa: caPem },
        upstream: upstreamFromKubeconfig(relayKubeconfig),
        audit: { file: path.join(dataDir, `${cluster}-audit.jsonl`) },
        maxStreamDurationMs: 0,
        pollRevocations: false,
        readinessIntervalMs: 500,
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
      await fake.close();
      await issuer.close();
    },
  };
}
