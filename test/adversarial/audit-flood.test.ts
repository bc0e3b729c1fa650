/**
 * Issue 14: anonymous requests flushed the audit trail. 26 048
 * unauthenticated requests with a 30 KB User-Agent at 1 737/s wrote
 * ~52 MB/s of audit, so that with 20 MiB files and 3 backups a legitimate
 * request's record was rotated out of every file within 15 s. Now each
 * client-controlled field is bounded (bounded-fields.ts), and records of
 * requests without a verified identity are limited per source address,
 * the rest counted in summary records; records of authenticated requests
 * are written whatever the flood. At the relay (direct mode) and at the
 * hub, which records the refusals of tunnel mode.
 */
import { statSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIELD_LIMITS } from '../../src/audit/bounded-fields.js';
import { requestToken } from '../../src/client/token.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { until } from '../helpers/http.js';
import { readAuditLines, type Stack, startStack } from '../helpers/stack.js';

const FLOOD = 1_200;
const FLOOD_CONNECTIONS = 8;
const HUGE_USER_AGENT = `curl/8.5.0 ${'x'.repeat(30_000)}`;
const SUMMARY_INTERVAL_MS = 250;
/** Per-address burst (the default): the flood's first records are written as they come. */
const PER_ADDRESS_BURST = 10;
/**
 * Without the bounds the flood writes FLOOD × 30 KB = 36 MB (the attack);
 * with them, at most the burst and what trickles in at 1 per 5 s, each
 * under 2 KiB, and a summary record (~300 bytes) per interval.
 */
const TRAIL_GROWTH_BOUND = 256 * 1024;

const silent = createLogger('error', {}, () => undefined);

interface FloodTarget {
  /** Where agents send Kubernetes requests (the relay, or the hub's /clusters/prod-eu). */
  base: string;
  /** The trail that records the flood's refusals: the relay's, or the hub's. */
  refusalTrail: string;
  /** The trail that records forwarded requests: the relay's. */
  relayTrail: string;
  token(): Promise<string>;
  close(): Promise<void>;
}

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

/** A relay (and in tunnel mode a hub) of its own, auditing to files of their own with a short summary interval. */
async function startTarget(mode: 'direct' | 'tunnel'): Promise<FloodTarget> {
  const relayTrail = path.join(stack.dataDir, `flood-${mode}-relay-audit.jsonl`);
  const audit = { unauthenticatedRecords: { summaryIntervalMs: SUMMARY_INTERVAL_MS } };
  let hub: RunningIssuer | undefined;
  if (mode === 'tunnel') {
    hub = await startIssuer({
      dataDir: stack.dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      keyRotationIntervalMs: 86_400_000,
      audit: { file: path.join(stack.dataDir, 'flood-hub-audit.jsonl'), ...audit },
      log: silent,
    });
  }
  const issuerUrl = hub?.url ?? stack.issuer.url;
  const relay: RunningRelay = await startRelay({
    mode,
    cluster: 'prod-eu',
    issuer: issuerUrl,
    dataDir: stack.dataDir,
    ...(mode === 'direct' ? { listen: { host: '127.0.0.1', port: 0 } } : { tunnel: { hubUrl: issuerUrl, connectorKey: stack.connectorKey, hubCa: stack.caPem } }),
    issuerCa: stack.caPem,
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: relayTrail, ...audit },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: silent,
  });
  const token = async () => (await requestToken({ issuer: issuerUrl, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem })).token;
  const base = mode === 'direct' ? relay.url : `${issuerUrl}/clusters/prod-eu`;
  if (mode === 'tunnel') {
    const probe = await token();
    await until(async () => (await send(`${base}/version`, { authorization: `Bearer ${probe}` })).status === 200, 10_000, 'the tunnel');
  }
  return {
    base,
    refusalTrail: hub ? path.join(stack.dataDir, 'flood-hub-audit.jsonl') : relayTrail,
    relayTrail,
    token,
    async close() {
      await relay.close();
      await hub?.close();
    },
  };
}

const floodAgent = new https.Agent({ keepAlive: true, maxSockets: FLOOD_CONNECTIONS });
afterAll(() => floodAgent.destroy());

function send(url: string, headers: Record<string, string>, agent: https.Agent | false = false): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: stack.caPem, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode! }));
    });
    req.on('error', reject);
  });
}

/** FLOOD requests without a valid token, FLOOD_CONNECTIONS at a time over kept-alive connections, half with no token and half with a forged one. */
async function flood(base: string): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < FLOOD) {
      const n = next++;
      const headers: Record<string, string> = { 'user-agent': HUGE_USER_AGENT };
      if (n % 2 === 1) headers.authorization = 'Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.forged';
      statuses.push((await send(`${base}/api/v1/namespaces/default/secrets?flood=${n}`, headers, floodAgent)).status);
    }
  };
  await Promise.all(Array.from({ length: FLOOD_CONNECTIONS }, worker));
  return statuses;
}

type Line = ReturnType<typeof readAuditLines>[number];
const isFloodRecord = (line: Line) => line.stage === 'ResponseComplete' && typeof line.query === 'string' && line.query.startsWith('flood=');
const isSummary = (line: Line) => line.kind === 'summary';
const summarised = (lines: Line[]) => lines.filter(isSummary).reduce((sum, line) => sum + (line.count as number), 0);

describe.each(['direct', 'tunnel'] as const)('a flood of unauthenticated requests with huge User-Agents (%s mode)', (mode) => {
  let target: FloodTarget;
  beforeAll(async () => {
    target = await startTarget(mode);
  });
  afterAll(async () => {
    await target?.close();
  });

  it('cannot push a legitimate request out of the trail: its record is whole, the trail grows by a bounded amount, a summary counts the rest', { timeout: 120_000 }, async () => {
    const sizeBefore = statSync(target.refusalTrail).size;
    const statuses = await flood(target.base);
    expect(statuses.every((status) => status === 401)).toBe(true);

    // A kubectl request at the limits of what Kubernetes allows: a 63-byte namespace, a 253-byte name, a long label selector.
    const namespace = `ns-${'n'.repeat(60)}`;
    const name = `pod-${'p'.repeat(249)}`;
    const selector = Array.from({ length: 40 }, (_, i) => `app.kubernetes.io/component-${i} in (${'v'.repeat(63)},other-${i})`).join(',');
    const legitimatePath = `/api/v1/namespaces/${namespace}/pods/${name}`;
    const legitimateQuery = `labelSelector=${encodeURIComponent(selector)}`;
    const kubectl = { 'user-agent': 'kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0', 'kubectl-command': 'kubectl get', 'kubectl-session': '0b7c6a3e-4c9f-4c1b-9d0e-5a1f2b3c4d5e' };
    expect((await send(`${target.base}${legitimatePath}?${legitimateQuery}`, { ...kubectl, authorization: `Bearer ${await target.token()}` })).status).not.toBe(401);

    // Every flood request is accounted for: written as a record of its own, or counted in a summary.
    const floodLines = () => readAuditLines(target.refusalTrail).filter((line) => isFloodRecord(line) || isSummary(line));
    await until(() => {
      const lines = floodLines();
      return lines.filter(isFloodRecord).length + summarised(lines) === FLOOD;
    }, 10_000, 'every flood request written or summarised');
    const lines = floodLines();
    const written = lines.filter(isFloodRecord);
    expect(written.length).toBeGreaterThanOrEqual(PER_ADDRESS_BURST);
    expect(written.length).toBeLessThan(FLOOD / 10);
    for (const record of written) {
      expect(record).toMatchObject({ user: null, sourceIp: '127.0.0.1', status: 401 });
      expect(record.userAgent).toBe(`${HUGE_USER_AGENT.slice(0, FIELD_LIMITS.userAgent)}…[truncated ${HUGE_USER_AGENT.length - FIELD_LIMITS.userAgent} bytes]`);
    }
    const summaries = lines.filter(isSummary);
    expect(summaries.length).toBeGreaterThan(0);
    for (const summary of summaries) {
      expect(summary).toMatchObject({ kind: 'summary', reason: 'unauthenticated-refusals', cluster: 'prod-eu', mode, sourceIp: '127.0.0.1' });
      expect(Date.parse(summary.from as string)).toBeLessThanOrEqual(Date.parse(summary.to as string));
      const reasons = summary.reasons as Record<string, number>;
      expect(['missing-token', 'malformed-token']).toEqual(expect.arrayContaining(Object.keys(reasons)));
      expect(Object.values(reasons).reduce((sum, count) => sum + count, 0)).toBe(summary.count);
    }
    expect(summarised(lines)).toBe(FLOOD - written.length);
    expect(statSync(target.refusalTrail).size - sizeBefore).toBeLessThan(TRAIL_GROWTH_BOUND);

    // The legitimate request's record, whole: nothing of it was cut, nothing rate-limited.
    await until(() => readAuditLines(target.relayTrail).some((line) => line.stage === 'ResponseComplete' && line.path === legitimatePath), 5_000, 'the legitimate record');
    const legitimate = readAuditLines(target.relayTrail).filter((line) => line.path === legitimatePath && line.stage === 'ResponseComplete');
    expect(legitimate).toHaveLength(1);
    expect(legitimate[0]).toMatchObject({
      user: 'agent:deployer',
      mode,
      path: legitimatePath,
      query: legitimateQuery,
      namespace,
      name,
      resource: 'pods',
      userAgent: kubectl['user-agent'],
      kubectlCommand: 'kubectl get',
      kubectlSession: kubectl['kubectl-session'],
    });
    expect(JSON.stringify(legitimate[0])).not.toContain('[truncated');
  });
});
