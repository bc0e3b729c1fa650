/**
 * The hub is shared by every tenant; a relay holds one cluster's connector
 * key and must not be able to exhaust the hub with it (issue 14). Each
 * attacker here is a hand-written relay with a real key speaking raw mux
 * frames; the hub is measured directly (its gauges, its log), not through
 * the process's memory, which is too noisy to assert on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../../src/log.js';
import { CONTROL_FLOOD_CLOSE_CODE, RELAY_CONTROL_BUDGET } from '../../src/tunnel/control-limits.js';
import { FrameType, MAX_MESSAGE_BYTES, MAX_SEND_BUFFER_BYTES } from '../../src/tunnel/mux.js';
import { dialHub, frame, hubGauge, upload } from '../helpers/fake-relay.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

/** Shortened from 30 s; long enough for the uploads below to have started on a busy machine. */
const STALL_TIMEOUT_MS = 10_000;
/** The hub's send buffer may pass its bound by the frame that crossed it, and by the few small frames that are never held. */
const SEND_BUFFER_CEILING = MAX_SEND_BUFFER_BYTES + 2 * MAX_MESSAGE_BYTES;

let stack: Stack;
const keys: Record<string, string> = {};
const hubLog: string[] = [];
const logged = (cluster: string, sinceLine = 0) => hubLog.slice(sinceLine).map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.cluster === cluster);

beforeAll(async () => {
  stack = await startStack({
    mode: 'tunnel',
    issuer: { log: createLogger('info', {}, (line) => hubLog.push(line)), adminListen: { host: '127.0.0.1', port: 0 }, tunnelStallTimeoutMs: STALL_TIMEOUT_MS },
  });
  const setup = await stack.registry();
  for (const cluster of ['staging', 'credit', 'flood']) keys[cluster] = await setup.registry.createCluster(cluster, 'acme');
  await setup.close();
});

afterAll(async () => {
  await stack?.close();
});

/**
 * Resolves once the hub has logged the end of `cluster`'s tunnel (a relay
 * that stopped reading cannot see the close itself), or after `timeoutMs`.
 */
async function hubDisconnected(cluster: string, timeoutMs: number, sinceLine = 0): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (logged(cluster, sinceLine).some((entry) => entry.msg === 'tunnel disconnected')) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/** Samples the hub's send buffer for `cluster` until `done` settles; the largest value seen. */
async function peakSendBuffer(cluster: string, done: Promise<unknown>): Promise<number> {
  let finished = false;
  void done.finally(() => (finished = true));
  let peak = 0;
  while (!finished) {
    peak = Math.max(peak, await hubGauge(stack, 'kube_relay_tunnel_send_buffer_bytes', cluster));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return peak;
}

describe('a relay that stops reading cannot make the hub buffer its uploads (issue 14)', () => {
  it('is disconnected at once when it grants itself credit beyond the maximum window, before a 512 MiB upload piles up', async () => {
    const relay = await dialHub(stack, keys.credit!, 'credit');
    const agentUpload = upload(stack, '/clusters/credit/api/v1/namespaces/default/configmaps', await stack.token(stack.agentKey, 'credit'), 512 * 1024 * 1024);
    try {
      await until(() => relay.frames.some((f) => f.type === FrameType.Open), 10_000, 'the hub to open the upload stream');
      const id = relay.frames.find((f) => f.type === FrameType.Open)!.id;
      const huge = Buffer.alloc(4);
      huge.writeUInt32BE(0x7fff_0000, 0);
      relay.ws.send(frame(FrameType.Window, id, huge));
      relay.stopReading();
      const disconnected = hubDisconnected('credit', 20_000);
      const peak = await peakSendBuffer('credit', disconnected);
      expect(await disconnected).toBe(true);
      expect(logged('credit').find((entry) => entry.msg === 'tunnel protocol error')?.error).toMatch(/credit beyond the \d+-byte maximum window/);
      expect(peak).toBeLessThanOrEqual(SEND_BUFFER_CEILING);
      expect([0, 502]).toContain(await agentUpload.result);
      expect(agentUpload.sent()).toBeLessThan(512 * 1024 * 1024);
    } finally {
      agentUpload.abort();
      relay.ws.terminate();
    }
  });

  it('holds at most its bound for a relay within its windows that never reads, over 128 uploads of 4 MiB, and closes that tunnel once nothing has been read for the stall timeout', async () => {
    const relay = await dialHub(stack, keys.staging!, 'staging');
    relay.ws.send(frame(FrameType.Control, 0, JSON.stringify({ type: 'ready', ready: true })));
    relay.stopReading();
    const token = await stack.token(stack.agentKey, 'staging');
    // 128 streams of 256 KiB credit each: 32 MiB the hub may send by the windows alone.
    const uploads = Array.from({ length: 128 }, () => upload(stack, '/clusters/staging/api/v1/namespaces/default/configmaps', token, 4 * 1024 * 1024));
    try {
      const disconnected = hubDisconnected('staging', 60_000);
      const peak = await peakSendBuffer('staging', disconnected);
      expect(await disconnected).toBe(true);
      expect(peak).toBeGreaterThan(0); // the gauge saw the bytes waiting
      expect(peak).toBeLessThanOrEqual(SEND_BUFFER_CEILING);
      expect(logged('staging').find((entry) => entry.msg === 'tunnel closed: the relay stopped reading')?.error).toMatch(/read nothing for 10 s/);
      // Stalled, never answered: each upload ends with the tunnel (or, arriving after it, finds none), none reached an API server.
      const statuses = await Promise.all(uploads.map((u) => u.result));
      expect(statuses.filter((status) => ![0, 502, 503].includes(status))).toEqual([]);
    } finally {
      for (const u of uploads) u.abort();
      relay.ws.terminate();
    }
  }, 90_000);
});

describe('a relay flooding the hub with frames that carry no stream data (issue 14)', () => {
  const notReady = frame(FrameType.Control, 0, JSON.stringify({ type: 'ready', ready: false }));
  // A new reason is recorded for cluster status but neither logged nor rerouted: only the frames' budget holds it back.
  const notReadyBecause = (reason: string) => frame(FrameType.Control, 0, JSON.stringify({ type: 'ready', ready: false, reason }));
  let reasons = 0;
  it.each([
    ['up to 200 000 CONTROL messages saying it is not ready', (relay: WebSocket) => relay.send(notReady)],
    ['up to 200 000 CONTROL messages saying it is not ready, each for another reason', (relay: WebSocket) => relay.send(notReadyBecause(`reason ${++reasons}`))],
    ['up to 200 000 CONTROL messages of a type the hub does not know', (relay: WebSocket) => relay.send(frame(FrameType.Control, 0, '{"type":"noise"}'))],
    ['up to 200 000 WebSocket pings', (relay: WebSocket) => relay.ping()],
    ['up to 200 000 GOAWAYs', (relay: WebSocket) => relay.send(frame(FrameType.GoAway, 0))],
  ])('sending %s is disconnected within its budget, with a handful of log lines, while another cluster is served', async (_name, sendOne) => {
    const firstLine = hubLog.length;
    const relay = await dialHub(stack, keys.flood!, 'flood');
    const startedAt = performance.now();
    let sent = 0;
    const flood = (async () => {
      // As fast as the client can, in batches that let the close frame in between.
      while (sent < 200_000 && relay.ws.readyState === WebSocket.OPEN) {
        for (let i = 0; i < 1_000; i++) sendOne(relay.ws);
        sent += 1_000;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    try {
      const otherTenant = await request(`${stack.issuer.url}/clusters/prod-eu/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${await stack.token()}` } });
      expect(otherTenant.status).toBe(200);
      const closed = await Promise.race([relay.closed, new Promise((resolve) => setTimeout(resolve, 20_000, 'still open'))]);
      await flood;
      expect(closed).toBe(CONTROL_FLOOD_CLOSE_CODE);
      const elapsedSeconds = (performance.now() - startedAt) / 1000;
      expect(await hubDisconnected('flood', 5_000, firstLine)).toBe(true);
      const lines = logged('flood', firstLine);
      // At most: connected, not ready (once), the flood, disconnected.
      expect(lines.length).toBeLessThanOrEqual(4);
      const flooded = lines.find((entry) => entry.msg === 'tunnel closed: the relay sent too many frames without stream data');
      const accepted = Number(/after (\d+) frames/.exec(String(flooded?.error))?.[1]);
      expect(accepted).toBeLessThanOrEqual(RELAY_CONTROL_BUDGET.burst + RELAY_CONTROL_BUDGET.perSecond * elapsedSeconds);
    } finally {
      relay.ws.terminate();
    }
  });
});
