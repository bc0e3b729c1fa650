/**
 * A grant added or removed through the admin API reaches the cluster at once (issue 17: "pushed
 * through the tunnel"): the issuer's hub tells the cluster's relays, in tunnel mode through the
 * tunnel and in direct mode through the control channel, and the relay reads its grants then
 * rather than at its next poll (here a minute away, so only the push can be in time).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { until } from '../helpers/http.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';

let issuer: RunningIssuer;
let adminKey: string;
let ca: Buffer;
const keys: Record<string, string> = {};
const relays: RunningRelay[] = [];
const fakes: FakeRbac[] = [];

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-grant-push-'));
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  for (const cluster of ['via-tunnel', 'via-control']) keys[cluster] = (await ops.createCluster(registry, OPERATOR, { name: cluster, org: 'acme' })).connectorKey;
  adminKey = (await ops.createAdmin(registry, OPERATOR, { name: 'platform', org: 'acme' })).adminKey;
  await store.close();
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  ca = readFileSync(issuer.caFile!);
});
afterAll(async () => {
  await Promise.all(relays.map((r) => r.close()));
  await issuer?.close();
  await Promise.all(fakes.map((f) => f.close()));
});

async function relayFor(cluster: string, mode: 'tunnel' | 'direct'): Promise<FakeRbac> {
  const fake = await startFakeRbac();
  fakes.push(fake);
  const dial = { hubUrl: issuer.url, connectorKey: keys[cluster]!, hubCa: ca };
  const relay = await startRelay({
    mode,
    cluster,
    issuer: issuer.url,
    issuerCa: ca,
    dataDir: await mkdtemp(path.join(tmpdir(), `kube-relay-grant-push-${mode}-`)),
    ...(mode === 'tunnel' ? { tunnel: dial } : { listen: { host: '127.0.0.1', port: 0 }, controlChannel: dial }),
    upstream: fake.upstream,
    maxStreamDurationMs: 0,
    pollRevocations: false,
    audit: { file: path.join(await mkdtemp(path.join(tmpdir(), 'kube-relay-grant-push-audit-')), 'audit.jsonl') },
    centralGrants: { connectorKey: keys[cluster]!, leaseNamespace: 'kube-relay', syncIntervalMs: 60_000, lease: { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 200 } },
    log: createLogger('error'),
  });
  relays.push(relay);
  await until(() => relay.centralGrants!.election.isLeader, 10_000, 'the relay to hold the grants Lease');
  // The first pass ran before the Lease was held; wait for the poll's quiet period to begin with a pass of its own.
  relay.centralGrants!.sync.nudge();
  await until(() => relay.centralGrants!.sync.lastResult !== undefined, 10_000, 'a first pass');
  return fake;
}

async function api(method: string, pathname: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetchWithCa({ ca })(`${issuer.url}${pathname}`, { method, headers: { authorization: `Bearer ${adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return (await res.json()) as Record<string, unknown>;
}

describe.each([['tunnel', 'via-tunnel'], ['direct', 'via-control']] as const)('%s mode', (mode, cluster) => {
  it('a grant added and removed through the admin API is applied and taken away within seconds, long before the next poll', async () => {
    const fake = await relayFor(cluster, mode);
    const grant = await api('POST', '/v1/grants', { cluster, group: 'acme/sre', role: 'view' });
    expect(grant.id).toMatch(/^[a-z0-9]{12}$/);
    await until(() => fake.get('clusterrolebindings', `kube-relay-${grant.id as string}`) !== undefined, 5_000, 'the pushed grant to be applied');
    await api('DELETE', `/v1/grants/${grant.id as string}`);
    await until(() => fake.get('clusterrolebindings', `kube-relay-${grant.id as string}`) === undefined, 5_000, 'the removed grant to be taken away');
  });
});
