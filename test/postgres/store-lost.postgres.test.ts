/**
 * The store lost at run time (issue 15): one issuer on a PostgreSQL database
 * of its own, a tunnel-mode relay connected to its hub; the database is made
 * unusable while the server keeps running (connections refused, every
 * session terminated). Token requests get a 503 `store-unavailable` and the
 * issuer says it is not ready because of the store, while the hub keeps
 * forwarding through the tunnel it holds (a connected cluster needs no store
 * query per request); once connections are allowed again the same process
 * mints tokens and is ready again, without a restart. The password is in no
 * log line. Below it, the two engine failures this outage showed: a database
 * refusing connections answered SQLSTATE 55000, which was not taken for
 * unavailability (a 500), and a session ended under a checked-out client
 * crashed the process.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { requestToken } from '../../src/client/token.js';
import { Registry } from '../../src/issuer/registry.js';
import { StoreUnavailableError } from '../../src/issuer/store/engine.js';
import { openPostgresEngine } from '../../src/issuer/store/postgres-engine.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { type FakeApiServer, startFakeApiServer } from '../fixtures/fake-apiserver.js';
import { request, until } from '../helpers/http.js';
import { createDatabase } from './server.js';

const postgres = inject('postgres');
const PEPPER = 'the-pepper-of-an-issuer-that-loses-its-store-0123';

describe('an issuer whose PostgreSQL store is lost at run time', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'kube-relay-store-lost-'));
  const dataDir = path.join(root, 'issuer');
  const pepperFile = path.join(root, 'pepper');
  const logLines: string[] = [];
  const log = (component: string) => createLogger('debug', { component }, (line) => void logLines.push(line));
  let database: string;
  let issuer: RunningIssuer;
  let relay: RunningRelay;
  let fake: FakeApiServer;
  let caPem: string;
  let agentKey: string;

  const postToken = () =>
    request(`${issuer.url}/v1/token`, {
      method: 'POST',
      ca: caPem,
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cluster: 'prod-eu' }),
    });
  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${issuer.adminPort}/readyz`);
    return { status: res.status, body: await res.text() };
  };
  const throughHub = (token: string) =>
    request(`${issuer.url}/clusters/prod-eu/api/v1/namespaces/default/pods`, { ca: caPem, headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    const storeUrl = await createDatabase(postgres);
    database = new URL(storeUrl).pathname.slice(1);
    writeFileSync(pepperFile, PEPPER, { mode: 0o600 });
    mkdirSync(dataDir, { recursive: true });
    // The issuer's listener and the fake API server get certificates from one CA.
    const ca = loadOrCreateCa(dataDir);
    caPem = ca.certPem;

    const store = await openStore({ dataDir, storeUrl });
    const registry = new Registry(store, Buffer.from(PEPPER));
    agentKey = await registry.createAgent('deployer', 'acme', ['sre']);
    const connectorKey = await registry.createCluster('prod-eu', 'acme');
    await registry.createCluster('staging', 'acme');
    await store.close();

    issuer = await startIssuer({
      dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      adminListen: { host: '127.0.0.1', port: 0 },
      keyRotationIntervalMs: 86_400_000,
      storeUrl,
      pepperFile,
      audit: { file: path.join(root, 'hub-audit.jsonl') },
      log: log('issuer'),
    });
    // On a shared store the first key signs once every replica can have read it (about 41 s).
    await until(async () => (await postToken()).status === 200, 90_000, 'a first token');

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
    relay = await startRelay({
      cluster: 'prod-eu',
      issuer: issuer.url,
      issuerCa: caPem,
      mode: 'tunnel',
      dataDir: path.join(root, 'relay'),
      tunnel: { hubUrl: issuer.url, connectorKey, hubCa: caPem },
      upstream: upstreamFromKubeconfig(relayKubeconfig),
      maxStreamDurationMs: 0,
      pollRevocations: false,
      audit: { file: path.join(root, 'relay-audit.jsonl') },
      log: log('relay'),
    });
    const { token } = await requestToken({ issuer: issuer.url, cluster: 'prod-eu', apiKey: agentKey, issuerCa: caPem });
    await until(async () => (await throughHub(token)).status === 200, 30_000, 'a request through the tunnel');
  }, 180_000);

  afterAll(async () => {
    // Whatever happened, leave the database usable for the server's shutdown.
    await admin(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`).catch(() => undefined);
    await relay?.close();
    await issuer?.close();
    await fake?.close();
  }, 60_000);

  it('answers 503 store-unavailable, is not ready naming the store, keeps forwarding through its tunnel, and recovers without a restart', async () => {
    // Minted while the store answers: a token lives 60 s, longer than this outage.
    const { token } = await requestToken({ issuer: issuer.url, cluster: 'prod-eu', apiKey: agentKey, issuerCa: caPem });
    const { token: stagingToken } = await requestToken({ issuer: issuer.url, cluster: 'staging', apiKey: agentKey, issuerCa: caPem });
    expect((await readyz()).status).toBe(200);

    await admin(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
    await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}' AND pid <> pg_backend_pid()`);
    const lostAt = Date.now();

    const refused = await postToken();
    expect(refused.status, refused.body.toString()).toBe(503);
    expect(refused.json()).toEqual({ error: 'store-unavailable', message: expect.any(String) });
    expect((await postToken()).status).toBe(503);

    // The issuer reads the store every 5 s.
    await until(async () => (await readyz()).status === 503, 15_000, '/readyz to say not ready');
    expect((await readyz()).body).toMatch(/^not ready: waiting for .*the store \(/);
    expect(Date.now() - lostAt).toBeLessThan(15_000);

    // The hub keeps forwarding for the tunnel it holds: verifying the token and routing need no store.
    for (let i = 0; i < 3; i++) {
      const forwarded = await throughHub(token);
      expect(forwarded.status, forwarded.body.toString()).toBe(200);
    }
    expect(relay.readiness().ready).toBe(true);
    // A cluster with no tunnel here needs the store to tell "unknown" from "not connected": 503, not 500.
    const unknownYet = await request(`${issuer.url}/clusters/staging/api`, { ca: caPem, headers: { authorization: `Bearer ${stagingToken}` } });
    expect(unknownYet.status, unknownYet.body.toString()).toBe(503);
    expect(unknownYet.json()).toMatchObject({ kind: 'Status', code: 503 });
    expect(logLines.filter((line) => line.includes('cannot read revocations from the store')).length).toBe(1);

    await admin(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
    const backAt = Date.now();
    await until(async () => (await postToken()).status === 200 && (await readyz()).status === 200, 20_000, 'tokens and readiness again');
    expect(Date.now() - backAt).toBeLessThan(20_000);
    expect((await throughHub((await requestToken({ issuer: issuer.url, cluster: 'prod-eu', apiKey: agentKey, issuerCa: caPem })).token)).status).toBe(200);
    expect(logLines.some((line) => line.includes('the store cannot be read'))).toBe(true);
    expect(logLines.some((line) => line.includes('the store answers again'))).toBe(true);
  }, 60_000);

  it('no log line shows the store password', () => {
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) expect(line).not.toContain(postgres.password);
  });
});

describe('a PostgreSQL session ended under the engine', () => {
  it('inside a transaction: the transaction fails as store-unavailable and the process lives on (pg emits error on a checked-out client)', async () => {
    const storeUrl = await createDatabase(postgres);
    const database = new URL(storeUrl).pathname.slice(1);
    const engine = await openPostgresEngine(storeUrl);
    try {
      let inside!: () => void;
      const entered = new Promise<void>((resolve) => (inside = resolve));
      const transaction = engine.transaction(async (tx) => {
        await tx.query('SELECT 1');
        inside();
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await tx.query('SELECT 2');
      });
      await entered;
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}' AND pid <> pg_backend_pid()`);
      await expect(transaction).rejects.toBeInstanceOf(StoreUnavailableError);
      // The broken client left the pool: the next statement gets a fresh session.
      await expect(engine.query('SELECT 1 AS one')).resolves.toEqual([{ one: 1 }]);
    } finally {
      await engine.close();
    }
  });

  it('a database that accepts no connections: a statement fails as store-unavailable (SQLSTATE 55000 at connect), not as an internal error', async () => {
    const storeUrl = await createDatabase(postgres);
    const database = new URL(storeUrl).pathname.slice(1);
    const engine = await openPostgresEngine(storeUrl);
    try {
      await admin(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database}' AND pid <> pg_backend_pid()`);
      const failure = await engine.query('SELECT 1').catch((err: Error) => err);
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      // The pooled client's own end may not have reached it yet: then the statement meets the terminated session instead.
      expect((failure as Error).message).toMatch(/redacted@127\.0\.0\.1:\d+\/.*(not currently accepting connections|terminating connection due to administrator command)/);
      expect((failure as Error).message).not.toContain(postgres.password);
      await admin(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
      await expect(engine.query('SELECT 1 AS one')).resolves.toEqual([{ one: 1 }]);
    } finally {
      await engine.close();
    }
  });
});

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: postgres.adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
