/**
 * GET /v1/sessions, /v1/sessions/{id} and /v1/audit (DESIGN §12) on the issuer's real HTTPS
 * listener: an org admin reads its own org's sessions and records only (another org's session is
 * 404, as a missing one), an all-orgs admin every org or one with ?org=, filters and times are
 * checked (422 naming the field), cursor paging returns each item once and in order, and reads
 * write no admin audit record.
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
import { auditRecord, ingestInto } from '../helpers/audit-records.js';

const PROD = { name: 'prod', org: 'acme' };
const LAB = { name: 'lab', org: 'globex' };
/** Two hours ago, so every session has ended and `since=1h` / `since=3h` fall either side of the data. */
const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
const MINUTE = 60_000;

let issuer: RunningIssuer;
let fetch: ReturnType<typeof fetchWithCa>;
let auditFile: string;
let dataDir: string;
const keys: Record<string, string> = {};

const acmeRecords = [
  auditRecord('deployer', 'prod', T0, { kubectlSession: 'k1', kubectlCommand: 'kubectl get', verb: 'list' }),
  auditRecord('deployer', 'prod', T0 + MINUTE, { kubectlSession: 'k2', kubectlCommand: 'kubectl delete', verb: 'delete', name: 'web-0', decision: 'denied-by-cluster', status: 403 }),
  auditRecord('deployer', 'prod', T0 + 2 * MINUTE, { verb: 'exec', subresource: 'exec', name: 'web-0', container: 'app', command: ['sh'], status: 101 }),
  auditRecord(null, 'prod', T0 + 3 * MINUTE, { decision: 'denied-by-relay', status: 401 }),
  // Over five minutes later: a session of its own.
  auditRecord('deployer', 'prod', T0 + 20 * MINUTE),
  auditRecord('auditor', 'prod', T0 + 4 * MINUTE, { verb: 'watch' }),
];
const globexRecords = [auditRecord('tester', 'lab', T0 + 30 * MINUTE), auditRecord('tester', 'lab', T0 + 31 * MINUTE, { verb: 'create', decision: 'error', status: 502 })];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-sessions-routes-'));
  auditFile = path.join(dataDir, 'hub-audit.jsonl');
  const store = await openStore({ dataDir });
  const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
  for (const [name, org] of [['deployer', 'acme'], ['auditor', 'acme'], ['tester', 'globex']] as const) await ops.createAgent(registry, OPERATOR, { name, org, teams: ['t'] });
  await ops.createCluster(registry, OPERATOR, PROD);
  await ops.createCluster(registry, OPERATOR, LAB);
  keys.acme = (await ops.createAdmin(registry, OPERATOR, { name: 'acme-admin', org: 'acme' })).adminKey;
  keys.globex = (await ops.createAdmin(registry, OPERATOR, { name: 'globex-admin', org: 'globex' })).adminKey;
  keys.root = (await ops.createAdmin(registry, OPERATOR, { name: 'root', allOrgs: true })).adminKey;
  await store.close();
  await ingestInto(dataDir, [
    { cluster: PROD, records: acmeRecords },
    { cluster: LAB, records: globexRecords },
  ]);
  issuer = await startIssuer({ dataDir, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  fetch = fetchWithCa({ ca: readFileSync(issuer.caFile!) });
});
afterAll(async () => {
  await issuer?.close();
});

interface SessionAnswer {
  id: string;
  agent: string;
  org: string;
  cluster: string;
  requests: number;
  refusals: number;
}
interface Answer {
  status: number;
  text: string;
  body: {
    items?: ({ requestId: string; org: string; session: string | null } & Partial<SessionAnswer>)[];
    session?: SessionAnswer & { open: boolean; endedAt: string | null };
    requests?: { requestId: string; session: string }[];
    continue?: string;
    error?: string;
    message?: string;
  };
}

/** As the all-orgs admin unless `key` says otherwise ('': no key). */
async function get(pathAndQuery: string, key = keys.root!): Promise<Answer> {
  const res = await fetch(`${issuer.url}${pathAndQuery}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) };
}

/** Every page of `pathAndQuery` (which has a `?`), following `continue`. */
async function allPages(pathAndQuery: string, key?: string): Promise<{ pages: number; items: unknown[] }> {
  const items: unknown[] = [];
  let next: string | undefined;
  let pages = 0;
  do {
    const res = await get(`${pathAndQuery}${next ? `&continue=${encodeURIComponent(next)}` : ''}`, key);
    expect(res.status, res.text).toBe(200);
    items.push(...(res.body.items ?? res.body.requests!));
    next = res.body.continue;
    pages++;
  } while (next && pages < 20);
  return { pages, items };
}

const ids = (answer: Answer) => answer.body.items!.map((r) => r.requestId);
const sessionOf = async (agent: string, key = keys.root) => (await get(`/v1/sessions?agent=${agent}`, key)).body.items!;

describe('GET /v1/sessions', () => {
  it("gives an org admin its org's sessions only, newest first, as SessionViews", async () => {
    const acme = await get('/v1/sessions', keys.acme);
    expect(acme.status, acme.text).toBe(200);
    expect(acme.body.items!.map((s) => `${s.agent} ${s.requests}/${s.refusals}`)).toEqual(['deployer 1/0', 'auditor 1/0', 'deployer 3/1']);
    expect(acme.body.items![2]).toEqual({
      id: expect.stringMatching(/^s-/),
      agent: 'deployer',
      org: 'acme',
      cluster: 'prod',
      kind: 'activity',
      startedAt: new Date(T0).toISOString(),
      endedAt: new Date(T0 + 2 * MINUTE + 20).toISOString(),
      open: false,
      durationMs: 2 * MINUTE + 20,
      requests: 3,
      refusals: 1,
      commands: [
        { time: new Date(T0).toISOString(), kind: 'kubectl', command: 'kubectl get', kubectlSession: 'k1' },
        { time: new Date(T0 + MINUTE).toISOString(), kind: 'kubectl', command: 'kubectl delete', kubectlSession: 'k2' },
        expect.objectContaining({ kind: 'exec', command: 'sh', pod: 'web-0', container: 'app' }),
      ],
      commandsOmitted: 0,
    });
    expect(acme.body.continue).toBeUndefined();
    expect((await get('/v1/sessions', keys.globex)).body.items!.map((s) => s.agent)).toEqual(['tester']);
  });

  it('gives an all-orgs admin every org, or one with ?org=; an org admin naming another org gets 403', async () => {
    expect((await get('/v1/sessions')).body.items!.map((s) => s.org)).toEqual(['globex', 'acme', 'acme', 'acme']);
    expect((await get('/v1/sessions?org=globex')).body.items!.map((s) => s.agent)).toEqual(['tester']);
    const other = await get('/v1/sessions?org=globex', keys.acme);
    expect(other.status).toBe(403);
    expect(other.body).toEqual({ error: 'forbidden', message: 'an admin of org "acme" lists org "acme" only, not "globex"' });
  });

  it('filters by agent, cluster and time (RFC 3339 or a duration back from now); another org\'s agent is not found', async () => {
    expect((await get('/v1/sessions?agent=deployer&cluster=prod')).body.items!.map((s) => s.requests)).toEqual([1, 3]);
    expect((await get('/v1/sessions?since=1h')).body.items).toEqual([]);
    expect((await get('/v1/sessions?since=3h&until=1h')).body.items).toHaveLength(4);
    expect((await get(`/v1/sessions?since=${new Date(T0 + 10 * MINUTE).toISOString()}`)).body.items!.map((s) => s.agent)).toEqual(['tester', 'deployer']);
    expect((await get(`/v1/sessions?until=${encodeURIComponent(new Date(T0 + 3 * MINUTE).toISOString().replace('Z', '+00:00'))}`)).body.items!.map((s) => s.requests)).toEqual([3]);
    const hidden = await get('/v1/sessions?agent=tester', keys.acme);
    expect(hidden.status).toBe(404);
    expect(hidden.body).toEqual({ error: 'not-found', message: 'no agent named "tester"; see kube-relay agent list' });
  });

  it('pages newest first with ?limit= and ?continue=, each session once', async () => {
    const everything = (await get('/v1/sessions')).body.items!.map((s) => s.id);
    const paged = await allPages('/v1/sessions?limit=1');
    expect(paged.pages).toBe(4);
    expect(paged.items.map((s) => (s as SessionAnswer).id)).toEqual(everything);
  });
});

describe('GET /v1/sessions/{id}', () => {
  it('answers the session and its requests in time order, paged', async () => {
    const [first] = (await sessionOf('deployer')).slice(-1);
    const shown = await get(`/v1/sessions/${first!.id}`, keys.acme);
    expect(shown.status, shown.text).toBe(200);
    expect(shown.body.session).toMatchObject({ id: first!.id, agent: 'deployer', requests: 3, open: false });
    expect(shown.body.requests!.map((r) => r.requestId)).toEqual(acmeRecords.slice(0, 3).map((r) => r.requestId));
    expect(shown.body.requests![1]).toEqual({ ...acmeRecords[1], org: 'acme', session: first!.id });
    const paged = await allPages(`/v1/sessions/${first!.id}?limit=2`, keys.acme);
    expect(paged.pages).toBe(2);
    expect(paged.items).toEqual(shown.body.requests);
  });

  it("is 404 for another org's session, exactly as for one that does not exist", async () => {
    const [globex] = await sessionOf('tester');
    expect((await get(`/v1/sessions/${globex!.id}`, keys.globex)).status).toBe(200);
    const hidden = await get(`/v1/sessions/${globex!.id}`, keys.acme);
    const missing = await get('/v1/sessions/s-doesnotexist', keys.acme);
    expect(hidden.status).toBe(404);
    expect(hidden.body).toEqual({ error: 'not-found', message: `no session "${globex!.id}"; see kube-relay sessions list` });
    expect(missing.body).toEqual({ error: 'not-found', message: 'no session "s-doesnotexist"; see kube-relay sessions list' });
  });
});

describe('GET /v1/audit', () => {
  it("gives an org admin its org's records only, oldest first, each the relay's record plus org and session", async () => {
    const acme = await get('/v1/audit', keys.acme);
    expect(acme.status, acme.text).toBe(200);
    const inTimeOrder = [...acmeRecords].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    expect(ids(acme)).toEqual(inTimeOrder.map((r) => r.requestId));
    expect(acme.body.items!.every((r) => r.org === 'acme')).toBe(true);
    const unauthenticated = acme.body.items!.find((r) => r.requestId === acmeRecords[3]!.requestId);
    expect(unauthenticated).toEqual({ ...acmeRecords[3], org: 'acme', session: null });
    expect(ids(await get('/v1/audit', keys.globex))).toEqual(globexRecords.map((r) => r.requestId));
    expect(ids(await get('/v1/audit?org=globex'))).toEqual(globexRecords.map((r) => r.requestId));
  });

  it('filters by agent, cluster, verb, decision, time and session', async () => {
    expect(ids(await get('/v1/audit?agent=deployer&decision=denied-by-cluster'))).toEqual([acmeRecords[1]!.requestId]);
    expect(ids(await get('/v1/audit?cluster=lab&verb=create'))).toEqual([globexRecords[1]!.requestId]);
    expect(ids(await get('/v1/audit?decision=denied-by-relay'))).toEqual([acmeRecords[3]!.requestId]);
    expect(ids(await get('/v1/audit?since=1h'))).toEqual([]);
    expect(ids(await get(`/v1/audit?since=${new Date(T0 + 25 * MINUTE).toISOString()}&until=1h`))).toEqual(globexRecords.map((r) => r.requestId));
    const [later] = await sessionOf('deployer');
    expect(ids(await get(`/v1/audit?session=${later!.id}`, keys.acme))).toEqual([acmeRecords[4]!.requestId]);
    const [globex] = await sessionOf('tester');
    expect(await get(`/v1/audit?session=${globex!.id}`, keys.acme)).toMatchObject({ status: 404, body: { error: 'not-found', message: `no session "${globex!.id}"; see kube-relay sessions list` } });
  });

  it('pages through every record with ?limit= and ?continue=, each once and in order', async () => {
    const everything = ids(await get('/v1/audit'));
    expect(everything).toHaveLength(acmeRecords.length + globexRecords.length);
    for (const limit of [1, 3]) {
      const paged = await allPages(`/v1/audit?limit=${limit}`);
      expect(paged.pages).toBe(Math.ceil(everything.length / limit));
      expect(paged.items.map((r) => (r as { requestId: string }).requestId)).toEqual(everything);
    }
  });

  it('needs an admin key', async () => {
    expect(await get('/v1/audit', '')).toMatchObject({ status: 401, body: { error: 'missing-admin-key' } });
  });
});

describe('refusals', () => {
  it.each([
    ['/v1/sessions?since=yesterday', 'since: "yesterday" is neither an RFC 3339 time nor a duration such as 1h'],
    ['/v1/audit?until=2026-05-04', 'until: "2026-05-04" is neither an RFC 3339 time nor a duration such as 1h'],
    ['/v1/audit?decision=maybe', 'decision: "maybe" is not one of allowed, denied-by-relay, denied-by-policy, denied-by-cluster, error'],
    ['/v1/audit?verb=GET', 'verb: "GET" is not a Kubernetes verb (lowercase letters, such as get, list, delete or exec)'],
    ['/v1/audit?limit=1001', 'limit must be a whole number from 1 to 1000, not 1001'],
    ['/v1/sessions?limit=0', 'limit must be a whole number from 1 to 1000, not 0'],
    ['/v1/sessions?limit=lots', 'limit must be a whole number from 1 to 1000, not "lots"'],
    ['/v1/audit?continue=forged', 'continue is not one this issuer gave: pass the continue of the previous page unchanged, or leave it out for the first page'],
    ['/v1/sessions?verb=get', 'unknown query parameter "verb": this list takes limit, continue, org, agent, cluster, since, until'],
    ['/v1/audit?since=1h&since=2h', 'query parameter "since" must be given once'],
    ['/v1/sessions/s-x?org=acme', 'unknown query parameter "org": a session names its org; GET /v1/sessions/{id} takes limit, continue'],
  ])('%s: 422 naming the field', async (query, message) => {
    const res = await get(query);
    expect(res.status, res.text).toBe(422);
    expect(res.body).toEqual({ error: 'invalid', message });
  });

  it("a session page's continue is no audit page's continue", async () => {
    const { continue: sessionsNext } = (await get('/v1/sessions?limit=1')).body;
    expect((await get(`/v1/audit?continue=${sessionsNext}`)).status).toBe(422);
  });
});

describe('the admin audit trail', () => {
  it('records no read', async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    let trail = '';
    try {
      trail = readFileSync(auditFile, 'utf8');
    } catch {}
    expect(trail.split('\n').filter((line) => line.includes('"kind":"admin"'))).toEqual([]);
  });
});

// Last: it revokes an agent, which writes an admin record and adds a session the tests above do not expect.
describe('revoking an agent', () => {
  it('ends the open sessions of an agent when it is revoked (DELETE /v1/agents/{name}), at its revocation', async () => {
    const store = await openStore({ dataDir });
    await ops.createAgent(new Registry(store, loadOrCreatePepper(dataDir, {})), OPERATOR, { name: 'leaver', org: 'acme', teams: ['t'] });
    await store.close();
    await ingestInto(dataDir, [{ cluster: PROD, records: [auditRecord('leaver', 'prod', Date.now() - MINUTE)] }]);
    expect((await sessionOf('leaver'))[0]).toMatchObject({ open: true, endedAt: null });
    const revoked = await fetch(`${issuer.url}/v1/agents/leaver`, { method: 'DELETE', headers: { authorization: `Bearer ${keys.acme}` } });
    expect(revoked.status).toBe(200);
    const { revokedAt } = (await revoked.json()) as { revokedAt: string };
    expect((await sessionOf('leaver'))[0]).toMatchObject({ open: false, endedAt: revokedAt });
  });
});
