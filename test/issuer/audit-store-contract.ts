/**
 * Central audit records and sessions in the store (DESIGN §12), on every
 * engine: SQLite in `npm test` (store.sqlite.test.ts), PostgreSQL in
 * `npm run test:postgres` (store.postgres.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { IncomingAuditRecord } from '../../src/issuer/store/audit-sql.js';
import { openStore, type StoreLocation } from '../../src/issuer/store/open.js';
import type { IssuerStore } from '../../src/issuer/store/types.js';
import { SESSION_GAP_MS, sessionView } from '../../src/sessions/session.js';
import { auditRecord } from '../helpers/audit-records.js';

const PROD = { name: 'prod', org: 'acme' };
const T0 = Date.parse('2026-11-30T10:00:00.000Z');
/** A completed request of `agent` on cluster prod that began `atMs` (a record of another cluster names it in `fields`). */
const record = (agent: string | null, atMs: number, fields: Partial<IncomingAuditRecord> = {}) => auditRecord(agent, 'prod', atMs, fields);

export function describeAuditStoreContract(engineName: string, newLocation: () => Promise<StoreLocation>): void {
  const withStore = async (use: (store: IssuerStore) => Promise<void>) => {
    const store = await openStore(await newLocation());
    try {
      await use(store);
    } finally {
      await store.close();
    }
  };

  describe(`central audit and sessions on ${engineName}`, () => {
    it('stores a batch once: the same batch sent again stores and counts nothing', () =>
      withStore(async (store) => {
        const batch = [record('deployer', T0), record('deployer', T0 + 1_000), record(null, T0 + 2_000, { decision: 'denied-by-relay', status: 401 })];
        expect(await store.ingestAudit(PROD, batch)).toEqual({ stored: 3, duplicates: 0 });
        expect(await store.ingestAudit(PROD, batch)).toEqual({ stored: 0, duplicates: 3 });
        expect(await store.queryAudit({ org: 'acme', limit: 10 })).toHaveLength(3);
        const [session, ...others] = await store.listSessions({ org: 'acme', limit: 10 });
        expect(others).toEqual([]);
        expect(session).toMatchObject({ agent: 'deployer', cluster: 'prod', org: 'acme', requests: 2, refusals: 0 });
      }));

    it('chains kubectl invocations with short gaps into one session, each invocation one command in order, execs with pod and command', () =>
      withStore(async (store) => {
        const get = record('deployer', T0, { kubectlSession: 'k1', kubectlCommand: 'kubectl get' });
        const apply = record('deployer', T0 + 60_000, { kubectlSession: 'k2', kubectlCommand: 'kubectl apply', verb: 'patch' });
        const applyAgain = record('deployer', T0 + 60_100, { kubectlSession: 'k2', kubectlCommand: 'kubectl apply', verb: 'get' });
        const exec = record('deployer', T0 + 120_000, { kubectlSession: 'k3', kubectlCommand: 'kubectl exec', verb: 'exec', subresource: 'exec', name: 'web-0', container: 'app', command: ['sh', '-c', 'id'], status: 101, durationMs: 3_000 });
        const denied = record('deployer', T0 + 180_000, { kubectlSession: 'k4', kubectlCommand: 'kubectl delete', verb: 'delete', decision: 'denied-by-cluster', status: 403 });
        // Records arrive as requests end: the exec's after the delete's.
        await store.ingestAudit(PROD, [get, apply]);
        await store.ingestAudit(PROD, [applyAgain, denied, exec]);
        const sessions = await store.listSessions({ agent: 'deployer', limit: 10 });
        expect(sessions).toHaveLength(1);
        const view = sessionView(sessions[0]!, new Date(T0 + 3_600_000));
        expect(view).toMatchObject({ requests: 5, refusals: 1, open: false, startedAt: new Date(T0).toISOString(), endedAt: new Date(T0 + 180_020).toISOString(), durationMs: 180_020 });
        expect(view.commands.map((c) => `${c.kind} ${c.command}`)).toEqual(['kubectl kubectl get', 'kubectl kubectl apply', 'kubectl kubectl exec', 'exec sh -c id', 'kubectl kubectl delete']);
        expect(view.commands[3]).toMatchObject({ namespace: 'default', pod: 'web-0', container: 'app', status: 101 });
        const requests = await store.queryAudit({ session: view.id, limit: 10 });
        expect(requests.map((r) => r.id)).toEqual([get, apply, applyAgain, exec, denied].map((r) => r.requestId));
      }));

    it('starts a new session after a gap of over five minutes, but keeps one kubectl invocation together however long it runs', () =>
      withStore(async (store) => {
        const logsStart = T0;
        await store.ingestAudit(PROD, [record('deployer', T0 - 1_000, { kubectlSession: 'logs' })]);
        await store.ingestAudit(PROD, [record('deployer', T0 + SESSION_GAP_MS + 60_000, { kubectlSession: 'later' })]);
        // `kubectl logs -f` of the first invocation ends 20 minutes on: it stays in the first session.
        await store.ingestAudit(PROD, [record('deployer', logsStart, { kubectlSession: 'logs', verb: 'get', subresource: 'log', durationMs: 20 * 60_000 })]);
        const sessions = await store.listSessions({ agent: 'deployer', limit: 10 });
        expect(sessions).toHaveLength(2);
        const [later, first] = sessions;
        expect(first!.requests).toBe(2);
        expect(first!.lastActivityAt.getTime()).toBe(logsStart + 20 * 60_000);
        expect(later!.requests).toBe(1);
        // Another agent's requests are never in this agent's session.
        await store.ingestAudit(PROD, [record('auditor', T0)]);
        expect(await store.listSessions({ agent: 'auditor', limit: 10 })).toHaveLength(1);
        expect((await store.listSessions({ agent: 'deployer', limit: 10 })).map((s) => s.requests)).toEqual([1, 2]);
      }));

    it('puts a proxy run’s requests in its session, ignoring a header that names another agent’s run', () =>
      withStore(async (store) => {
        await store.openProxySession({ id: 'p-run', org: 'acme', cluster: 'prod', agent: 'deployer', at: new Date(T0) });
        await store.ingestAudit(PROD, [record('deployer', T0 + 1_000, { proxySession: 'p-run' }), record('intruder', T0 + 2_000, { proxySession: 'p-run' })]);
        const run = (await store.findSession('p-run'))!;
        expect(run).toMatchObject({ kind: 'proxy', requests: 1, agent: 'deployer' });
        expect(sessionView(run, new Date(T0 + 10_000)).open).toBe(true);
        expect(await store.touchProxySession('p-run', 'intruder', new Date(T0 + 20_000), true)).toBe(false);
        expect(await store.touchProxySession('p-run', 'deployer', new Date(T0 + 30_000), true)).toBe(true);
        expect(sessionView((await store.findSession('p-run'))!, new Date(T0 + 40_000))).toMatchObject({ open: false, endedAt: new Date(T0 + 30_000).toISOString(), durationMs: 30_000 });
        expect((await store.listSessions({ agent: 'intruder', limit: 10 }))[0]).toMatchObject({ kind: 'activity', requests: 1 });
      }));

    it('filters records by org, agent, cluster, verb, decision, time and session, and pages through them in time order', () =>
      withStore(async (store) => {
        await store.ingestAudit(PROD, [record('deployer', T0), record('deployer', T0 + 1_000, { verb: 'delete', decision: 'denied-by-cluster', status: 403 }), record('auditor', T0 + 2_000)]);
        await store.ingestAudit({ name: 'lab', org: 'globex' }, [record('tester', T0 + 500, { cluster: 'lab' })]);
        expect((await store.queryAudit({ org: 'acme', limit: 10 })).map((r) => r.agent)).toEqual(['deployer', 'deployer', 'auditor']);
        expect(await store.queryAudit({ org: 'globex', limit: 10 })).toMatchObject([{ cluster: 'lab', agent: 'tester', org: 'globex' }]);
        expect(await store.queryAudit({ agent: 'deployer', decision: 'denied-by-cluster', limit: 10 })).toMatchObject([{ record: { verb: 'delete', status: 403 } }]);
        expect(await store.queryAudit({ verb: 'delete', limit: 10 })).toHaveLength(1);
        expect(await store.queryAudit({ sinceMs: T0 + 1_000, untilMs: T0 + 1_500, limit: 10 })).toHaveLength(1);
        const first = await store.queryAudit({ org: 'acme', limit: 2 });
        const last = first[first.length - 1]!;
        const rest = await store.queryAudit({ org: 'acme', limit: 2, after: { timeMs: last.time.getTime(), cluster: last.cluster, id: last.id } });
        expect([...first, ...rest].map((r) => r.agent)).toEqual(['deployer', 'deployer', 'auditor']);
        expect(await store.listSessions({ org: 'globex', limit: 10 })).toMatchObject([{ agent: 'tester' }]);
        expect(await store.listSessions({ org: 'acme', sinceMs: T0 + 60_000, limit: 10 })).toEqual([]);
        expect(await store.listSessions({ org: 'acme', untilMs: T0 - 60_000, limit: 10 })).toEqual([]);
      }));

    it('prunes records and sessions older than the retention', () =>
      withStore(async (store) => {
        const day = 24 * 3_600_000;
        await store.ingestAudit(PROD, [record('deployer', T0 - 3 * day), record('deployer', T0 - 2 * day), record('deployer', T0)]);
        expect(await store.pruneAudit(T0 - day)).toEqual({ records: 2, sessions: 2 });
        expect(await store.queryAudit({ limit: 10 })).toHaveLength(1);
        expect(await store.listSessions({ limit: 10 })).toHaveLength(1);
      }));

    it('two batches of one cluster stored at once still make one session', () =>
      withStore(async (store) => {
        const batches = [0, 1, 2, 3].map((i) => [record('deployer', T0 + i * 1_000), record('deployer', T0 + i * 1_000 + 10)]);
        await Promise.all(batches.map((batch) => store.ingestAudit(PROD, batch)));
        const sessions = await store.listSessions({ agent: 'deployer', limit: 10 });
        expect(sessions.map((s) => s.requests)).toEqual([8]);
      }));
  });
}
