/** The hub's own rules (DESIGN §4): who may connect a tunnel, and which requests may enter one. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditConfig } from '../../src/audit/sink.js';
import { createLogger } from '../../src/log.js';
import { startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { ReconnectBackoff } from '../../src/backoff.js';
import { runCli } from '../helpers/cli.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let token: string;

beforeAll(async () => {
  stack = await startStack({ mode: 'tunnel' });
  token = await stack.token();
});

afterAll(async () => {
  await stack?.close();
});

const hub = () => stack.issuer.url;
const get = (path: string, bearer = token) => request(`${hub()}${path}`, { ca: stack.caPem, headers: { authorization: `Bearer ${bearer}` } });

/** A relay in tunnel mode whose log lines are collected. */
async function tunnelRelay(cluster: string, connectorKey: string, audit: AuditConfig = { file: `${stack.dataDir}/extra-relay-audit.jsonl` }) {
  const lines: string[] = [];
  const attempts = { count: 0 };
  const backoff = new ReconnectBackoff({ initialMs: 50, maxMs: 100 });
  const next = backoff.nextDelayMs.bind(backoff);
  backoff.nextDelayMs = () => {
    attempts.count++;
    return next();
  };
  const relay = await startRelay({
    mode: 'tunnel',
    cluster,
    issuer: stack.issuer.url,
    dataDir: stack.dataDir,
    issuerCa: stack.caPem,
    tunnel: { hubUrl: hub(), connectorKey, hubCa: stack.caPem, backoff: () => backoff },
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit,
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('info', {}, (line) => lines.push(line)),
  });
  return { relay, lines, attempts };
}

describe('agents at /clusters/<name>', () => {
  it('reach the relay through the tunnel with the prefix stripped', async () => {
    const answer = await get('/clusters/prod-eu/api/v1/namespaces/default/pods?limit=1');
    expect(answer.status).toBe(200);
    expect(stack.fake.lastRequest()!.url).toBe('/api/v1/namespaces/default/pods?limit=1');
    expect(stack.fake.lastRequest()!.headers['impersonate-user']).toBe('agent:deployer');
  });

  it('learn nothing of which clusters exist without a token for them: an unknown cluster is 401 like an existing one', async () => {
    const unknown = await get('/clusters/nowhere/api');
    expect(unknown.status).toBe(401);
    expect(unknown.json()).toMatchObject({ kind: 'Status', code: 401, message: 'the token is for another cluster, not "nowhere"' });
    const anonymous = await request(`${hub()}/clusters/nowhere/api`, { ca: stack.caPem });
    const anonymousExisting = await request(`${hub()}/clusters/prod-eu/api`, { ca: stack.caPem });
    expect([anonymous.status, anonymousExisting.status]).toEqual([401, 401]);
    expect(anonymous.json()).toEqual(anonymousExisting.json());
  });

  it('get 401 Unauthorized, not 403, for a token minted for another cluster: an authentication failure, as the relay answers it (DESIGN §4)', async () => {
    const handle = await stack.registry();
    await handle.registry.createCluster('staging', 'acme');
    await handle.close();
    const before = stack.fake.requests.length;
    // The token's aud is prod-eu; the URL names staging.
    const answer = await get('/clusters/staging/api/v1/namespaces/default/pods');
    expect(answer.status).toBe(401);
    const status = answer.json() as { message: string };
    expect(status).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Unauthorized', code: 401 });
    expect(status.message).toBe('the token is for another cluster, not "staging"');
    expect(status.message).not.toContain('prod-eu'); // the token's own aud is not echoed
    expect(stack.fake.requests.length).toBe(before);
  });

  it('are told where API paths go when the /clusters/<name> prefix is missing (kubectl proxy without --append-server-path)', async () => {
    const answer = await get('/api/v1/namespaces/default/pods');
    expect(answer.status).toBe(404);
    expect(answer.json()).toMatchObject({ kind: 'Status', code: 404 });
    expect((answer.json() as { message: string }).message).toContain('--append-server-path');
  });

  it('get 503 with a Kubernetes Status when the cluster has no relay connected', async () => {
    const handle = await stack.registry();
    await handle.registry.createCluster('lonely', 'acme');
    await handle.close();
    const lonelyToken = await stack.token(stack.agentKey, 'lonely');
    const answer = await get('/clusters/lonely/api', lonelyToken);
    expect(answer.status).toBe(503);
    expect(answer.json()).toMatchObject({ kind: 'Status', code: 503 });
  });
});

describe('relays dialling in', () => {
  it('a wrong connector key is refused with 401 and the relay stops reconnecting, saying why', async () => {
    const { relay, lines, attempts } = await tunnelRelay('prod-eu', 'krl_cluster_not-a-real-key');
    try {
      await until(() => lines.some((line) => line.includes('the hub refused this relay')), 5_000, 'the refusal log line');
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(attempts.count).toBe(0);
      expect(lines.join('')).not.toContain('krl_cluster_not-a-real-key');
      expect((await relay.failed).message).toContain('the hub refused this relay\'s connector key for cluster "prod-eu"');
    } finally {
      await relay.close();
    }
  });

  it('kube-relay relay exits 1 with the reason when the hub refuses its key (a CrashLoopBackOff in Kubernetes, not a tight loop)', async () => {
    const keyFile = path.join(stack.dataDir, 'wrong.connector-key');
    writeFileSync(keyFile, 'krl_cluster_not-a-real-key\n', { mode: 0o600 });
    const result = await runCli(
      ['relay', '--mode', 'tunnel', '--cluster', 'prod-eu', '--issuer', hub(), '--hub', hub(), '--issuer-ca-file', stack.caFile, '--connector-key-file', keyFile, '--kubeconfig', stack.relayKubeconfig, '--data', stack.dataDir, '--log-level', 'error'],
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('kube-relay: the hub refused this relay\'s connector key for cluster "prod-eu": the connector key is not valid');
    expect(result.stderr).not.toContain('krl_cluster_not-a-real-key');
  });

  it('a relay claiming another cluster than its key is refused', async () => {
    const { relay, lines } = await tunnelRelay('staging', stack.connectorKey);
    try {
      await until(() => lines.some((line) => line.includes('the hub refused this relay')), 5_000, 'the refusal log line');
      expect(lines.join('')).toContain('not \\"staging\\"');
    } finally {
      await relay.close();
    }
  });

  it('several relays of one cluster share its requests', async () => {
    const second = await tunnelRelay('prod-eu', stack.connectorKey);
    try {
      await until(() => second.lines.some((line) => line.includes('tunnel connected')), 5_000, 'the second tunnel');
      for (let i = 0; i < 6; i++) expect((await get('/clusters/prod-eu/version')).status).toBe(200);
      const viaSecond = readFileSync(`${stack.dataDir}/extra-relay-audit.jsonl`, 'utf8').split('\n').filter((line) => line.includes('"/version"'));
      expect(viaSecond.length).toBeGreaterThan(0);
      expect(stack.auditRecords().filter((r) => r.path === '/version').length).toBeGreaterThan(0);
    } finally {
      await second.relay.close();
    }
  });

  it('a relay that is not ready gets no requests while another of its cluster is (as a Service skips pods that are not ready)', async () => {
    // Its audit webhook is down and holds one record at most: after one request it cannot serve.
    const second = await tunnelRelay('prod-eu', stack.connectorKey, { webhook: { url: 'http://127.0.0.1:1/' }, bufferRecords: 1, whenFull: 'fail', closeDeadlineMs: 100 });
    try {
      await until(() => second.lines.some((line) => line.includes('tunnel connected')), 5_000, 'the second tunnel');
      for (let i = 0; i < 4 && second.relay.readiness().ready; i++) await get('/clusters/prod-eu/version?fill');
      expect(second.relay.readiness().waitingFor.join()).toContain('room in the audit trail');
      // The relay checks its readiness every second and tells the hub when it changes.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const before = stack.auditRecords().filter((r) => r.query === 'after').length;
      for (let i = 0; i < 8; i++) expect((await get('/clusters/prod-eu/version?after')).status).toBe(200);
      await until(() => stack.auditRecords().filter((r) => r.query === 'after').length === before + 8, 3_000, 'all eight served by the ready relay');
    } finally {
      await second.relay.close();
    }
  });
});
