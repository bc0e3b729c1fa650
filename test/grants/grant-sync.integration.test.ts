/**
 * Central grants end to end in the fast suite (issue 17 items 1, 3, 5): a grant added on the
 * issuer becomes a binding through the relay's grant sync (the issuer's /v1/relay/grants read
 * with the connector key, the Lease held), its state comes back as "applied", a failure comes
 * back with its reason, removal deletes the binding, and a relay that cannot reach the issuer
 * keeps what it has (and still ends expired grants) instead of deleting what it cannot account for.
 */
import { mkdtemp } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as grants from '../../src/control/grants.js';
import * as ops from '../../src/control/operations.js';
import { GrantSync } from '../../src/grants/grant-sync.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { type IssuerStore, openStore } from '../../src/issuer/store.js';
import { KubeApi } from '../../src/kube-api/client.js';
import { LeaderElection } from '../../src/kube-api/leader-election.js';
import { createLogger } from '../../src/log.js';
import { until } from '../helpers/http.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';

let issuer: RunningIssuer;
let store: IssuerStore;
let registry: Registry;
let fake: FakeRbac;
let sync: GrantSync;
let election: LeaderElection;
let connectorKey: string;

beforeAll(async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-grant-sync-'));
  store = await openStore({ dataDir });
  registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  connectorKey = (await ops.createCluster(registry, OPERATOR, { name: 'prod', org: 'acme' })).connectorKey;
  await ops.createAgent(registry, OPERATOR, { name: 'deployer', org: 'acme', teams: ['sre'] });
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  fake = await startFakeRbac();
  fake.namespaces.add('web');
  const api = new KubeApi(fake.upstream);
  election = new LeaderElection(api, { namespace: 'kube-relay', name: 'kube-relay-grants-prod', retryPeriodMs: 200, log: createLogger('error') });
  election.start();
  sync = new GrantSync({ cluster: 'prod', issuer: issuer.url, issuerCa: readFileSync(issuer.caFile!), connectorKey, api, election, log: createLogger('error'), intervalMs: 200 });
  sync.start();
});
afterAll(async () => {
  await sync?.stop();
  await election?.stop();
  await issuer?.close();
  await store?.close();
  await fake?.close();
});

const limits = { maxDurationMs: grants.DEFAULT_MAX_GRANT_DURATION_MS };
const binding = (id: string) => fake.get('clusterrolebindings', `kube-relay-${id}`);

describe('grant sync', () => {
  it('a grant added on the issuer becomes a binding and is reported applied', async () => {
    const grant = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', group: 'acme/sre', role: 'view' }, limits);
    await until(() => binding(grant.id) !== undefined, 10_000, 'the binding to appear');
    await until(async () => (await store.findGrant(grant.id))?.applied.state === 'applied', 10_000, 'the grant to be reported applied');
    expect((await store.findGrant(grant.id))!.applied.at).toBeInstanceOf(Date);
  });

  it('a grant that cannot be applied comes back failed with its reason', async () => {
    const grant = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', agent: 'deployer', role: 'edit', namespace: 'missing' }, limits);
    await until(async () => (await store.findGrant(grant.id))?.applied.state === 'failed', 10_000, 'the grant to be reported failed');
    expect((await store.findGrant(grant.id))!.applied.reason).toBe('namespace missing does not exist in the cluster');
    await grants.removeGrant(registry, OPERATOR, grant.id);
  });

  it('a custom role the relay finds labelled grantable can be granted', async () => {
    fake.put('clusterroles', { metadata: { name: 'db-reader', labels: { 'kube-relay.dev/grantable': 'true' } } });
    await until(async () => (await store.grantableRoles('prod')).some((r) => r.name === 'db-reader'), 10_000, 'the relay to report db-reader');
    const grant = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', group: 'acme/sre', role: 'db-reader' }, limits);
    await until(() => binding(grant.id) !== undefined, 10_000, 'the custom-role binding');
    expect(binding(grant.id)!.roleRef).toMatchObject({ name: 'db-reader' });
  });

  it('removing a grant deletes its binding', async () => {
    const grant = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', agent: 'deployer', role: 'logs' }, limits);
    await until(() => binding(grant.id) !== undefined, 10_000, 'the binding to appear');
    await grants.removeGrant(registry, OPERATOR, grant.id);
    await until(() => binding(grant.id) === undefined, 10_000, 'the binding to go');
  });

  it('with the issuer unreachable the relay keeps its bindings and still ends an expired grant', async () => {
    const lasting = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', agent: 'deployer', role: 'view' }, limits);
    const brief = await grants.createGrant(registry, OPERATOR, { cluster: 'prod', agent: 'deployer', role: 'exec', expiresInMs: 3_000 }, limits);
    await until(() => binding(lasting.id) !== undefined && binding(brief.id) !== undefined, 10_000, 'both bindings');
    await issuer.close();
    await until(() => binding(brief.id) === undefined, 15_000, 'the expired grant\'s binding to go without the issuer');
    expect(binding(lasting.id)).toBeDefined();
  });
});
