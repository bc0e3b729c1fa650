/** The seeded month of audit records bench/audit-scale.ts ingests and queries. */
import type { IncomingAuditRecord } from '../../src/issuer/store/audit-sql.js';
import { Random } from './random.js';
import { type Agent, type Cluster, clientBurst, type KubectlCommand, kubectlInvocation, makeWorld, type Request, RequestMaker, type World } from './world.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
const HISTORY_MS = 30 * DAY_MS;

type Outcome = 'allowed' | 'denied-by-relay' | 'denied-by-cluster' | 'error';

export interface History extends World {
  /** Records in the order the requests ended. */
  records: IncomingAuditRecord[];
  endMs: number[];
  nowMs: number;
  /** The agent the queries are about. */
  busy: Agent;
  sessions: number;
}

/** Human work follows the working day (of the history's own clock, so runs on any day compare); CI runs around the clock. */
function placeSession(random: Random, agent: Agent, spanMs: number, nowMs: number): number {
  for (;;) {
    const startMs = nowMs - HISTORY_MS + random.next() * (HISTORY_MS - spanMs);
    if (agent.kind !== 'human') return startMs;
    const hour = Math.floor(((nowMs - startMs) % DAY_MS) / HOUR_MS);
    const weekDay = Math.floor((nowMs - startMs) / DAY_MS) % 7 < 5;
    if (random.chance((hour >= 8 && hour <= 18 ? 1 : 0.12) * (weekDay ? 1 : 0.2))) return startMs;
  }
}

export function makeHistory(total: number, seed: number, nowMs: number): History {
  const random = new Random(seed);
  const { orgs, clusters, agents } = makeWorld(random);
  const busy = agents[0]!;
  const byWeight = agents.map((agent) => [agent, agent.weight] as const);
  const records: IncomingAuditRecord[] = [];
  const endMs: number[] = [];
  let sessions = 0;

  /** One burst of `agent` on `cluster`: the requests laid out in time from 0, then placed. */
  const session = (agent: Agent, cluster: Cluster, size: number, place: (spanMs: number) => number) => {
    const maker = new RequestMaker(random, cluster);
    const laid: { request: Request; outcome: Outcome; durationMs: number; startOffset: number; kubectlSession?: string; kubectlCommand?: string }[] = [];
    let cursor = 0;
    let left = size;
    while (left > 0) {
      let count = Math.min(left, random.int(2, 20));
      if (left - count === 1) count++;
      left -= count;
      let requests: Request[];
      let kubectlSession: string | undefined;
      let kubectlCommand: string | undefined;
      if (agent.kind === 'ci-client') {
        requests = clientBurst(random, maker, agent.org, count);
      } else {
        const command = random.weighted<KubectlCommand>(
          agent.kind === 'human'
            ? [['get', 38], ['describe', 12], ['logs', 12], ['apply', 9], ['exec', 7], ['delete', 5], ['rollout status', 6], ['edit', 5], ['scale', 3]]
            : [['apply', 40], ['get', 20], ['rollout status', 20], ['delete', 10], ['scale', 5], ['logs', 5]],
        );
        requests = kubectlInvocation(random, maker, command, agent.org, count);
        kubectlSession = random.uuid();
        kubectlCommand = `kubectl ${command}`;
      }
      for (const request of requests) {
        // Refused or failed requests end at once: the client goes on sooner.
        const outcome: Outcome = random.chance(0.003)
          ? 'denied-by-relay'
          : request.resource !== '' && random.chance(agent.kind === 'human' ? 0.05 : 0.015)
            ? 'denied-by-cluster'
            : random.chance(0.002)
              ? 'error'
              : 'allowed';
        const durationMs = outcome === 'denied-by-relay' ? random.int(0, 2) : outcome === 'allowed' ? request.durationMs : Math.min(request.durationMs, random.int(2, 30));
        laid.push({ request, outcome, durationMs, startOffset: cursor, ...(kubectlSession ? { kubectlSession, kubectlCommand } : {}) });
        cursor += durationMs + random.int(1, 40);
      }
      // Think time before the next invocation: people read, scripts don't.
      cursor += agent.kind === 'human' ? random.logUniform(2_000, 120_000) : random.logUniform(100, 8_000);
    }
    const startMs = Math.round(place(cursor));
    // A token lives a minute (src/identity.ts): its jti changes as the client renews it.
    let tokenId = random.uuid();
    let tokenMinted = 0;
    for (const { request, outcome, durationMs, startOffset, kubectlSession, kubectlCommand } of laid) {
      if (startOffset - tokenMinted > 55_000) {
        tokenId = random.uuid();
        tokenMinted = startOffset;
      }
      const started = startMs + startOffset;
      const refusedByRelay = outcome === 'denied-by-relay';
      const deniedByCluster = outcome === 'denied-by-cluster';
      const failed = outcome === 'error';
      const endedMs = started + durationMs;
      const upgraded = request.subresource === 'exec' && !refusedByRelay && !deniedByCluster;
      const record: IncomingAuditRecord = {
        time: new Date(endedMs).toISOString(),
        requestId: random.uuid(),
        stage: 'ResponseComplete',
        cluster: cluster.name,
        mode: cluster.mode,
        user: refusedByRelay ? null : `agent:${agent.name}`,
        groups: refusedByRelay ? [] : agent.groups,
        tokenId: refusedByRelay ? null : tokenId,
        sourceIp: agent.sourceIp,
        userAgent: agent.userAgent,
        method: request.method,
        path: request.path,
        query: request.query,
        verb: request.verb,
        namespace: request.namespace,
        resource: request.resource,
        subresource: request.subresource,
        name: request.name,
        ...(kubectlCommand ? { kubectlCommand, kubectlSession } : {}),
        ...(request.command && upgraded ? { command: request.command } : {}),
        ...(request.container && upgraded ? { container: request.container } : {}),
        status: refusedByRelay ? 401 : deniedByCluster ? 403 : failed ? random.pick([500, 503, 504]) : (request.status ?? (request.verb === 'create' ? 201 : 200)),
        decision: outcome,
        durationMs,
        bytesIn: request.bytesIn,
        bytesOut: refusedByRelay || deniedByCluster || failed ? random.int(150, 400) : request.bytesOut,
        ...(refusedByRelay ? { reason: random.pick(['expired-token', 'unknown-key', 'missing-token']) } : {}),
        ...(upgraded ? { protocol: request.protocol, startedAt: new Date(started).toISOString(), endedAt: new Date(endedMs).toISOString() } : {}),
      };
      records.push(record);
      endMs.push(endedMs);
    }
    sessions++;
  };

  // The busiest agent is at work now: a session in the history's last hour (the queries are about it).
  const current = Math.min(total, 150);
  session(busy, busy.clusters[0]!, current, (spanMs) => nowMs - Math.min(spanMs + 2 * 60_000, 50 * 60_000));
  while (records.length < total) {
    const agent = random.weighted(byWeight);
    const size = Math.min(total - records.length, Math.round(random.logUniform(5, 200)));
    session(agent, random.pick(agent.clusters), size, (spanMs) => placeSession(random, agent, spanMs, nowMs));
  }
  // Time order: the order the requests ended, as the relays write and send their records.
  const order = Array.from(records.keys()).sort((a, b) => endMs[a]! - endMs[b]! || a - b);
  const sorted = order.map((i) => records[i]!);
  const sortedEnd = order.map((i) => endMs[i]!);
  const last = sortedEnd[sortedEnd.length - 1]!;
  // A session placed near the end may run past "now" by a long request's tail: the history ends at its last record.
  return { records: sorted, endMs: sortedEnd, nowMs: Math.max(nowMs, last), orgs, clusters, agents, busy, sessions };
}
