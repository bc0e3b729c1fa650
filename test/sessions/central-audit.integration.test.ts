/**
 * Central audit end to end in one process (DESIGN §12): relays with a
 * connector key send every completed request's record to the issuer, in
 * both modes; the hub's own refusals are stored too; a relay cut off from
 * the issuer delivers what it held once it can, and a batch whose answer
 * was lost is sent again without anything being stored or counted twice.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { openAuditSink } from '../../src/audit/sink.js';
import { ReconnectBackoff } from '../../src/backoff.js';
import { createLogger } from '../../src/log.js';
import { Registry as MetricsRegistry } from 'prom-client';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const FAST = { batchWaitMs: 20, backoff: new ReconnectBackoff({ initialMs: 50, maxMs: 200 }) };

async function stackOf(mode: 'direct' | 'tunnel'): Promise<Stack> {
  const stack = await startStack({ mode, controlChannel: mode === 'direct', relay: { centralAudit: FAST } });
  cleanups.push(() => stack.close());
  return stack;
}

async function centralRecords(stack: Stack, cluster = 'prod-eu') {
  const { registry, close } = await stack.registry();
  try {
    return await registry.audit.queryAudit({ cluster, limit: 1000 });
  } finally {
    await close();
  }
}

async function sessionsOf(stack: Stack, agent: string) {
  const { registry, close } = await stack.registry();
  try {
    return await registry.audit.listSessions({ agent, limit: 100 });
  } finally {
    await close();
  }
}

describe.each(['tunnel', 'direct'] as const)('central audit from a %s-mode relay', (mode) => {
  it('stores every completed request once, grouped into one session with each kubectl invocation as a command', async () => {
    const stack = await stackOf(mode);
    const token = await stack.token();
    const kubectl = (session: string, command: string, path: string) =>
      request(`${stack.relay.url}${path}`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}`, 'kubectl-session': session, 'kubectl-command': command } });
    expect((await kubectl('inv-1', 'kubectl get', '/api/v1/namespaces/default/pods')).status).toBe(200);
    expect((await kubectl('inv-1', 'kubectl get', '/api/v1/namespaces/default/pods/web')).status).toBe(200);
    expect((await kubectl('inv-2', 'kubectl delete', '/api/v1/namespaces/default/configmaps/x')).status).toBe(200);
    // The stack's own readiness probes (tunnel mode) are the agent's too, so only the kubectl requests are counted here.
    const kubectlRecords = async () => (await centralRecords(stack)).filter((r) => r.record.kubectlSession !== undefined);
    await until(async () => (await kubectlRecords()).length === 3, 10_000, 'three records at the issuer');
    const records = await kubectlRecords();
    expect(records.map((r) => r.record.path)).toEqual(['/api/v1/namespaces/default/pods', '/api/v1/namespaces/default/pods/web', '/api/v1/namespaces/default/configmaps/x']);
    expect(records.every((r) => r.org === 'acme' && r.agent === 'deployer' && r.record.mode === mode)).toBe(true);
    // The local trail has the same requests, by the same ids.
    expect(records.map((r) => r.id)).toEqual(stack.auditRecords().filter((r) => r.kubectlSession !== undefined).map((r) => r.requestId));
    const [session, ...others] = await sessionsOf(stack, 'deployer');
    expect(others).toEqual([]);
    expect(new Set(records.map((r) => r.sessionId))).toEqual(new Set([session!.id]));
    expect(session).toMatchObject({ cluster: 'prod-eu' });
    expect(session!.commands.map((c) => c.command)).toEqual(['kubectl get', 'kubectl delete']);
    // No token ever reaches the central store.
    expect(JSON.stringify(records)).not.toContain(token);
  });
});

describe('the hub’s own refusals', () => {
  it('are stored centrally with the relays’ records', async () => {
    const stack = await stackOf('tunnel');
    const refused = await request(`${stack.relay.url}/api/v1/pods`, { ca: stack.caPem, headers: { authorization: 'Bearer not-a-token' } });
    expect(refused.status).toBe(401);
    await until(async () => (await centralRecords(stack)).some((r) => r.record.status === 401), 10_000, 'the hub’s refusal at the issuer');
    const [record] = (await centralRecords(stack)).filter((r) => r.record.status === 401);
    expect(record).toMatchObject({ org: 'acme', record: { decision: 'denied-by-relay', mode: 'tunnel' } });
    expect(record!.agent).toBeUndefined();
    expect(JSON.stringify(record)).not.toContain('not-a-token');
  });
});

/** Between a relay and the issuer: `down` refuses connections; `loseAnswers` forwards a batch, then answers 503 as if the answer was lost. */
async function flakyPath(issuerUrl: string, ca: string) {
  const state = { down: false, loseAnswers: 0, posts: 0 };
  const server = http.createServer((req, res) => {
    if (state.down) return req.socket.destroy();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      state.posts++;
      const answer = await request(`${issuerUrl}${req.url}`, { method: req.method, ca, headers: { authorization: req.headers.authorization!, 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
      if (state.loseAnswers > 0) {
        state.loseAnswers--;
        return res.writeHead(503).end();
      }
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { state, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('a relay cut off from the issuer', () => {
  it('delivers the records it held once it can reach it again, none stored or counted twice', async () => {
    const stack = await stackOf('direct');
    const path = await flakyPath(stack.issuer.url, stack.caPem);
    const sink = await openAuditSink(
      { file: `${stack.dataDir}/cut-off.jsonl`, issuer: { issuer: path.url, connectorKey: stack.connectorKey, ...FAST } },
      new MetricsRegistry(),
      createLogger('error'),
    );
    const template = stack.auditRecords()[0] ?? (await (async () => {
      await request(`${stack.relay.url}/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${await stack.token()}` } });
      return stack.awaitRecord('/version');
    })());
    const write = (i: number) => sink.write({ ...template, requestId: `cut-${i}`, time: new Date().toISOString(), path: `/api/v1/namespaces/default/pods/p${i}` } as AuditRecord);

    path.state.down = true;
    for (let i = 0; i < 20; i++) write(i);
    // The issuer cannot be reached: nothing held back locally, nothing arrives centrally.
    expect(sink.unavailable).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await centralRecords(stack)).filter((r) => r.id.startsWith('cut-'))).toEqual([]);

    // Back, but the answers to the first two batches are lost: each is sent again.
    path.state.loseAnswers = 2;
    path.state.down = false;
    for (let i = 20; i < 30; i++) write(i);
    await until(async () => (await centralRecords(stack)).filter((r) => r.id.startsWith('cut-')).length === 30 && path.state.loseAnswers === 0 && sink.unavailable === undefined, 15_000, 'all 30 records at the issuer');
    await until(async () => (await sessionsOf(stack, 'deployer')).reduce((n, s) => n + s.requests, 0) >= 31, 5_000, 'the sessions to count them');
    const stored = (await centralRecords(stack)).filter((r) => r.id.startsWith('cut-'));
    expect(stored.map((r) => r.id).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `cut-${i}`).sort());
    // The template request (1) and the 30, each counted once although batches were sent again.
    expect((await sessionsOf(stack, 'deployer')).reduce((n, s) => n + s.requests, 0)).toBe(31);
    expect(path.state.posts).toBeGreaterThan(2);
    await sink.close();
  });
});
