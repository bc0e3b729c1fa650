/**
 * GET /v1/clusters/{name}/status over the issuer's HTTPS listener (issue 16
 * item 5), with admin keys: the org's admin and an all-orgs admin see the
 * cluster's connected relay; another org's admin gets 404, exactly as for a
 * cluster that does not exist; no key is 401; a cluster without relays says
 * since when it is not connected.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import * as ops from '../../src/control/operations.js';
import { fetchWithCa } from '../../src/https-fetch.js';
import { until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let stack: Stack;
let fetch: ReturnType<typeof fetchWithCa>;
const keys: Record<string, string> = {};
let idleCreatedAt: Date;

beforeAll(async () => {
  stack = await startStack({ mode: 'tunnel', issuer: { hubReplica: { id: 'issuer-0', count: 1 }, relayHeartbeatMs: 500 } });
  fetch = fetchWithCa({ ca: stack.caPem });
  const { registry, close } = await stack.registry();
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  idleCreatedAt = (await ops.createCluster(registry, OPERATOR, { name: 'idle', org: 'acme' })).cluster.createdAt;
  await close();
});

afterAll(async () => {
  await stack?.close();
});

async function status(name: string, key: string | undefined): Promise<{ status: number; body: Record<string, unknown>; cacheControl: string | null }> {
  const res = await fetch(`${stack.issuer.url}/v1/clusters/${name}/status`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, cacheControl: res.headers.get('cache-control') };
}

describe('GET /v1/clusters/{name}/status', () => {
  it("answers the org's admin with each connected relay", async () => {
    await until(async () => ((await status('prod-eu', keys.acme)).body.relays as { ready: boolean }[] | undefined)?.[0]?.ready === true, 10_000, 'the relay ready in the status');
    const answer = await status('prod-eu', keys.acme);
    expect(answer.status).toBe(200);
    expect(answer.cacheControl).toBe('no-store');
    expect(answer.body).toEqual({
      cluster: 'prod-eu',
      connected: true,
      relays: [{ mode: 'tunnel', hubReplica: 'issuer-0', version: PACKAGE_VERSION, connectedSince: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/), lastHeard: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/), ready: true }],
    });
    expect((await status('prod-eu', keys.root)).body).toMatchObject({ cluster: 'prod-eu', connected: true });
  });

  it("answers another org's admin 404, word for word as for a cluster that does not exist", async () => {
    const other = await status('prod-eu', keys.globex);
    const missing = await status('no-such-cluster', keys.globex);
    expect(other.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(other.body).toEqual({ error: 'not-found', message: 'no cluster named "prod-eu"; see kube-relay cluster list' });
    expect(other.body.message).toBe((missing.body.message as string).replace('no-such-cluster', 'prod-eu'));
  });

  it('answers 401 without an admin key', async () => {
    const answer = await status('prod-eu', undefined);
    expect(answer.status).toBe(401);
    expect(answer.body.error).toBe('missing-admin-key');
  });

  it('says since when a cluster without relays is not connected', async () => {
    const answer = await status('idle', keys.acme);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ cluster: 'idle', connected: false, notConnectedSince: idleCreatedAt.toISOString(), neverConnected: true, relays: [] });
  });
});
