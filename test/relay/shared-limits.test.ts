/** The primary's admission for a relay with workers (src/relay/workers/shared-limits.ts), and a worker's client of it. */
import { describe, expect, it } from 'vitest';
import type { AgentIdentity } from '../../src/identity.js';
import { InProcessLimits } from '../../src/request-stages/admission-limits.js';
import { AgentQuota } from '../../src/request-stages/agent-quotas.js';
import { RelayRefusal } from '../../src/request-stages/errors.js';
import { PrimaryLimits, RELEASE_DELAY_MS } from '../../src/relay/workers/limits-client.js';
import { KIND, type WorkerMessage } from '../../src/relay/workers/protocol.js';
import { SharedLimits } from '../../src/relay/workers/shared-limits.js';

const quotas = (requests: number, longRunning: number) => ({ requests: new AgentQuota(requests), longRunning: new AgentQuota(longRunning) });
const identity = (user: string, policy?: AgentIdentity['policy']): AgentIdentity => ({ user, groups: ['acme/sre'], tokenId: 'jti', issuedAt: 0, expiresAt: 0, ...(policy ? { policy } : {}) });

describe('SharedLimits (the primary)', () => {
  it('counts one agent’s long-running requests across workers and refuses the one past the cap with the message of one process', () => {
    const shared = new SharedLimits(quotas(100, 2));
    expect(shared.take(1, { id: 1, user: 'agent:a', slots: 'long-running' })).toEqual({ id: 1 });
    expect(shared.take(2, { id: 1, user: 'agent:a', slots: 'long-running' })).toEqual({ id: 1 });
    const refused = shared.take(2, { id: 2, user: 'agent:a', slots: 'long-running' });
    let alone: RelayRefusal | undefined;
    const single = new InProcessLimits(quotas(100, 2));
    single.takeNow(identity('agent:a'), 'long-running');
    single.takeNow(identity('agent:a'), 'long-running');
    try {
      single.takeNow(identity('agent:a'), 'long-running');
    } catch (err) {
      alone = err as RelayRefusal;
    }
    expect(refused.refused).toEqual({ reason: 'too-many-streams', message: alone!.clientMessage, details: {} });
    // Another agent has its own count.
    expect(shared.take(2, { id: 3, user: 'agent:b', slots: 'long-running' })).toEqual({ id: 3 });
  });

  it('takes the policy’s own stream cap when the token carries one', () => {
    const shared = new SharedLimits(quotas(100, 50));
    expect(shared.take(1, { id: 1, user: 'agent:a', slots: 'long-running', maxStreams: 1 }).refused).toBeUndefined();
    expect(shared.take(1, { id: 2, user: 'agent:a', slots: 'long-running', maxStreams: 1 }).refused?.reason).toBe('too-many-streams');
  });

  it('gives a slot back once per request, however often it is released', () => {
    const shared = new SharedLimits(quotas(1, 1));
    shared.take(1, { id: 7, user: 'agent:a', slots: 'request' });
    expect(shared.take(2, { id: 7, user: 'agent:a', slots: 'request' }).refused?.reason).toBe('too-many-requests');
    shared.release(1, 7);
    expect(shared.take(2, { id: 7, user: 'agent:a', slots: 'request' }).refused).toBeUndefined();
    shared.release(1, 7); // worker 1's request 7 was given back already; worker 2's still holds
    expect(shared.take(1, { id: 8, user: 'agent:a', slots: 'request' }).refused?.reason).toBe('too-many-requests');
  });

  it('gives back every slot of a worker that exited, and only its own', () => {
    const shared = new SharedLimits(quotas(3, 3));
    shared.take(1, { id: 1, user: 'agent:a', slots: 'long-running' });
    shared.take(1, { id: 2, user: 'agent:a', slots: 'request' });
    shared.take(2, { id: 1, user: 'agent:a', slots: 'request' });
    expect(shared.take(2, { id: 2, user: 'agent:a', slots: 'request' }).refused?.reason).toBe('too-many-requests');
    expect(shared.releaseAll(1)).toBe(2);
    expect(shared.holding()).toBe(1);
    expect(shared.take(2, { id: 3, user: 'agent:a', slots: 'request' }).refused).toBeUndefined();
    expect(shared.take(2, { id: 4, user: 'agent:a', slots: 'request' }).refused).toBeUndefined();
    expect(shared.take(2, { id: 5, user: 'agent:a', slots: 'request' }).refused?.reason).toBe('too-many-requests');
  });

  it('keeps one rate bucket per agent for every worker: burst, then 429 with Retry-After, then a token back with time', () => {
    let now = 1_000_000;
    const shared = new SharedLimits(quotas(100, 100), () => now);
    const rate = { perSecond: 2, burst: 3 };
    const answers = [1, 2, 1, 2].map((worker, n) => shared.take(worker, { id: n, user: 'agent:a', slots: 'request', rate }));
    expect(answers.slice(0, 3).every((answer) => answer.refused === undefined)).toBe(true);
    expect(answers[3]!.refused).toMatchObject({ reason: 'policy-rate', details: { policyRule: 'rate', retryAfterSeconds: 1 } });
    expect(answers[3]!.refused!.message).toContain('2 requests a second (burst 3)');
    // A refused request held nothing: nothing to give back.
    expect(shared.holding()).toBe(3);
    now += 500;
    expect(shared.take(2, { id: 9, user: 'agent:a', slots: 'request', rate }).refused).toBeUndefined();
  });

  it('spends a rate token but holds no slot for a request the policy refuses', () => {
    const shared = new SharedLimits(quotas(1, 1), () => 0);
    const rate = { perSecond: 1, burst: 1 };
    expect(shared.take(1, { id: 1, user: 'agent:a', slots: 'none', rate }).refused).toBeUndefined();
    expect(shared.holding()).toBe(0);
    expect(shared.take(1, { id: 2, user: 'agent:a', slots: 'request', rate }).refused?.reason).toBe('policy-rate');
  });
});

describe('PrimaryLimits (a worker)', () => {
  /** A worker's client wired to a primary in the same process, through what would be process.send. */
  function wired(shared: SharedLimits, worker = 1) {
    const sent: WorkerMessage[] = [];
    const client: PrimaryLimits = new PrimaryLimits((message) => {
      sent.push(message);
      if (message[KIND] !== 'limits') return;
      for (const id of message.releases) shared.release(worker, id);
      const answers = message.takes.map((take) => shared.take(worker, take));
      if (answers.length > 0) setImmediate(() => client.answered(answers));
    });
    return { client, sent };
  }

  it('asks once per turn for every request of that turn, and gives each slot back once, with the next message', async () => {
    const shared = new SharedLimits(quotas(10, 10));
    const { client, sent } = wired(shared);
    const releases = await Promise.all([client.take(identity('agent:a'), 'request'), client.take(identity('agent:a'), 'long-running'), client.take(identity('agent:b'), 'request')]);
    expect(sent).toHaveLength(1);
    expect(shared.holding()).toBe(3);
    releases[0]!();
    releases[0]!();
    releases[1]!();
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent).toHaveLength(1); // releases alone wait a little for company
    await new Promise((resolve) => setTimeout(resolve, RELEASE_DELAY_MS + 5));
    expect(sent).toHaveLength(2);
    expect(sent[1]).toEqual({ [KIND]: 'limits', takes: [], releases: [1, 2] });
    expect(shared.holding()).toBe(1);
  });

  it('rejects with the RelayRefusal the primary answered, naming the agent', async () => {
    const shared = new SharedLimits(quotas(10, 1));
    const { client } = wired(shared);
    await client.take(identity('agent:a'), 'long-running');
    const refusal = await client.take(identity('agent:a', { maxStreams: 1 }), 'long-running').catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(RelayRefusal);
    expect(refusal).toMatchObject({ reason: 'too-many-streams', status: 429, identity: { user: 'agent:a' } });
  });
});

describe('PrimaryLimits, releases with the next take', () => {
  it('sends the releases waiting with the next turn’s takes, in one message', async () => {
    const shared = new SharedLimits(quotas(1, 1));
    const sent: WorkerMessage[] = [];
    const client: PrimaryLimits = new PrimaryLimits((message) => {
      sent.push(message);
      if (message[KIND] !== 'limits') return;
      for (const id of message.releases) shared.release(1, id);
      const answers = message.takes.map((take) => shared.take(1, take));
      if (answers.length > 0) setImmediate(() => client.answered(answers));
    });
    const release = await client.take(identity('agent:a'), 'request');
    release();
    // The agent's one slot, given back in the same message that asks for it again: released first.
    await client.take(identity('agent:a'), 'request');
    expect(sent).toHaveLength(2);
    expect(sent[1]).toMatchObject({ releases: [1], takes: [{ id: 2 }] });
  });
});
