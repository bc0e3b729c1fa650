/**
 * Long-running requests are cuttable from the moment the relay admits them
 * (issue 14): an exec whose 101 the agent's own backend delays (through
 * pods/proxy or services/proxy), or a watch whose answer has not started,
 * must not outlive the agent's revocation nor --max-stream-duration. The
 * client gets a refusal Status instead of the late 101 or watch, and the
 * upstream connection is closed. In both modes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedRequest } from '../fixtures/fake-apiserver.js';
import { until } from '../helpers/http.js';
import { type RawAnswer, sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

/** Far longer than the revocation takes to arrive: a 101 seen by the client can only be the late one. */
const SLOW_ANSWER_MS = 25_000;
const ANSWER_TIMEOUT_MS = 60_000;

type Kind = 'SPDY exec' | 'WebSocket exec' | 'watch';

function requestBytes(stack: Stack, kind: Kind, namespace: string, token: string): { bytes: string; path: string } {
  const url = new URL(stack.relay.url);
  const base = url.pathname.replace(/\/$/, '');
  const head = (method: string, target: string, extra: string[]) =>
    [`${method} ${base}${target} HTTP/1.1`, `Host: ${url.host}`, `Authorization: Bearer ${token}`, ...extra, '', ''].join('\r\n');
  const exec = `/api/v1/namespaces/${namespace}/pods/pod-0/exec`;
  switch (kind) {
    case 'SPDY exec':
      return { path: exec, bytes: head('POST', `${exec}?command=cat&stdin=true&stdout=true`, ['Connection: Upgrade', 'Upgrade: SPDY/3.1', 'X-Stream-Protocol-Version: v4.channel.k8s.io']) };
    case 'WebSocket exec':
      return {
        path: exec,
        bytes: head('GET', `${exec}?command=cat&stdin=true&stdout=true`, ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol: v5.channel.k8s.io']),
      };
    case 'watch':
      return { path: `/api/v1/namespaces/${namespace}/pods`, bytes: head('GET', `/api/v1/namespaces/${namespace}/pods?watch=1`, ['Connection: close']) };
  }
}

describe.each(['direct', 'tunnel'] as const)('long-running requests before their answer, %s mode', (mode) => {
  describe('revocation', () => {
    let stack: Stack;
    let agents = 0;

    beforeAll(async () => {
      // Direct mode polls the revocation feed; tunnel mode is told by the hub, which reads the store every second.
      stack = await startStack({ mode, fake: { slowAnswersMs: SLOW_ANSWER_MS }, relay: { revocationPollIntervalMs: 300 } });
    });

    afterAll(async () => {
      await stack?.close();
    });

    /** Sends the request for a fresh agent, waits until the API server holds it, revokes the agent; the client's answer. */
    async function revokedWhileWaiting(kind: Kind): Promise<{ answer: RawAnswer; upstream: RecordedRequest; user: string; path: string }> {
      const name = `waiting-${++agents}`;
      const setup = await stack.registry();
      const key = await setup.registry.createAgent(name, 'acme', ['sre']);
      await setup.close();
      const token = await stack.token(key);
      const namespace = `ns-${name}`;
      const { bytes, path } = requestBytes(stack, kind, namespace, token);
      const answer = sendRaw({ url: stack.relay.url, ca: stack.caPem }, bytes, { timeoutMs: ANSWER_TIMEOUT_MS });
      const held = () => stack.fake.requests.find((r) => r.url.startsWith(`${path}`) && r.headers['impersonate-user'] === `agent:${name}`);
      await until(() => held() !== undefined, 15_000, 'the API server to hold the request');
      const revoke = await stack.registry();
      await revoke.registry.revokeAgent(name);
      await revoke.close();
      return { answer: await answer, upstream: held()!, user: `agent:${name}`, path };
    }

    it.each<Kind>(['SPDY exec', 'WebSocket exec', 'watch'])('a %s still waiting for its answer is refused with a 401 Status when its agent is revoked, and its upstream request closed', async (kind) => {
      const { answer, upstream, user, path } = await revokedWhileWaiting(kind);
      expect(answer.status, answer.body).toBe(401);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', status: 'Failure', code: 401, reason: 'Unauthorized', message: expect.stringContaining('revoked') });
      await until(() => upstream.closedByClient, 10_000, 'the upstream request to be closed');
      const record = await stack.awaitRecord(path, (r) => r.user === user);
      expect(record).toMatchObject({ status: 401, decision: 'denied-by-relay', reason: 'agent-revoked' });
      expect(record.protocol).toBeUndefined(); // no session began
    }, ANSWER_TIMEOUT_MS + 30_000);
  });

  describe('--max-stream-duration', () => {
    let stack: Stack;

    beforeAll(async () => {
      stack = await startStack({ mode, fake: { slowAnswersMs: SLOW_ANSWER_MS }, relay: { maxStreamDurationMs: 1_500 } });
    });

    afterAll(async () => {
      await stack?.close();
    });

    it.each<Kind>(['SPDY exec', 'watch'])('counts from admission: a %s whose answer has not come by then is refused with a 504 Status, and its upstream request closed', async (kind) => {
      const { bytes, path } = requestBytes(stack, kind, 'ns-duration', await stack.token());
      const before = stack.fake.requests.length;
      const answer = await sendRaw({ url: stack.relay.url, ca: stack.caPem }, bytes, { timeoutMs: ANSWER_TIMEOUT_MS });
      expect(answer.status, answer.body).toBe(504);
      expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', code: 504, reason: 'Timeout', message: expect.stringContaining('--max-stream-duration') });
      const upstream = stack.fake.requests.slice(before).find((r) => r.url.startsWith(path));
      expect(upstream).toBeDefined();
      await until(() => upstream!.closedByClient, 10_000, 'the upstream request to be closed');
      expect(await stack.awaitRecord(path, (r) => r.status === 504)).toMatchObject({ decision: 'error', reason: 'max-stream-duration' });
    }, ANSWER_TIMEOUT_MS + 30_000);
  });
});
