/**
 * DESIGN §5 at the relay: nothing is forwarded that could not be audited.
 * With the audit webhook down and its buffer full, a new request is refused
 * with a Status (`fail`) or held until there is room (`block`), and the API
 * server sees nothing of it meanwhile.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import type { WhenFull } from '../../src/audit/sink.js';
import { ReconnectBackoff } from '../../src/backoff.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

/** Requests it takes to fill the webhook's buffer: each forwarded request leaves two records there (RequestReceived, ResponseComplete). */
const FILLING_REQUESTS = 3;
const BUFFER = 2 * FILLING_REQUESTS;
const PODS = '/api/v1/namespaces/default/pods';

/** A log collector on loopback that answers 503 while `down`. */
async function startCollector() {
  const collector = { down: true, records: [] as AuditRecord[], close: () => Promise.resolve(), url: '' };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      if (!collector.down) collector.records.push(...(JSON.parse(body) as AuditRecord[]));
      res.writeHead(collector.down ? 503 : 200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  collector.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/audit`;
  collector.close = () => new Promise((resolve) => server.close(() => resolve()));
  return collector;
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup();
});

async function relayAuditingTo(whenFull: WhenFull) {
  const collector = await startCollector();
  const stack: Stack = await startStack({
    relay: {
      audit: { webhook: { url: collector.url, batchWaitMs: 10, backoff: new ReconnectBackoff({ initialMs: 10, maxMs: 50 }) }, whenFull, bufferRecords: BUFFER, closeDeadlineMs: 500 },
      adminListen: { host: '127.0.0.1', port: 0 },
    },
  });
  cleanups.push(() => stack.close(), () => collector.close());
  const token = await stack.token();
  const get = (path = PODS) => request(`${stack.relay.url}${path}`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
  const upstreamCalls = () => stack.fake.requests.filter((r) => r.headers['impersonate-user'] !== undefined).length;
  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${stack.relay.adminPort}/readyz`);
    return { status: res.status, text: await res.text() };
  };
  // Fill the buffer: each of these was admitted while there was room.
  for (let i = 0; i < FILLING_REQUESTS; i++) expect((await get(`${PODS}?fill=${i}`)).status).toBe(200);
  await until(async () => (await readyz()).status === 503, 3_000, 'the relay to report the full audit trail');
  return { collector, stack, get, upstreamCalls, readyz };
}

describe('an audit trail that cannot keep up (DESIGN §5)', () => {
  it('fail: refuses new requests with a 503 Status and forwards nothing until the records are delivered', async () => {
    const { collector, stack, get, upstreamCalls, readyz } = await relayAuditingTo('fail');
    expect((await readyz()).text).toMatch(/room in the audit trail \(the audit webhook holds 6 undelivered records\)/);
    const before = upstreamCalls();
    const refused = await get(`${PODS}?while=full`);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body.toString())).toMatchObject({ kind: 'Status', code: 503, message: expect.stringMatching(/audit trail/) });
    expect(upstreamCalls()).toBe(before);

    collector.down = false;
    await until(async () => (await readyz()).status === 200, 5_000, 'the relay to be ready again');
    expect((await get(`${PODS}?after=drain`)).status).toBe(200);
    // Its RequestReceived record may reach the webhook in an earlier batch than its ResponseComplete.
    await until(() => collector.records.some((r) => r.query === 'after=drain' && r.stage === 'ResponseComplete'), 3_000, 'the later request’s ResponseComplete record');
    // Every forwarded request has its record; the refused one is counted, not recorded.
    expect(collector.records.filter((r) => r.stage === 'ResponseComplete').map((r) => r.query)).toEqual(['fill=0', 'fill=1', 'fill=2', 'after=drain']);
    // The webhook gets each forwarded request's RequestReceived record too, before its ResponseComplete.
    expect(collector.records.map((r) => `${r.stage} ${r.query}`).filter((line) => line.endsWith('fill=0'))).toEqual(['RequestReceived fill=0', 'ResponseComplete fill=0']);
    const metrics = await (await fetch(`http://127.0.0.1:${stack.relay.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/kube_relay_audit_full_total\{action="refused"\} 1\b/);
  });

  it('block: holds a new request, forwarding nothing, until there is room, then serves it', async () => {
    const { collector, get, upstreamCalls } = await relayAuditingTo('block');
    const before = upstreamCalls();
    let answered = false;
    const held = get(`${PODS}?while=full`).then((answer) => {
      answered = true;
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(answered).toBe(false);
    expect(upstreamCalls()).toBe(before);

    collector.down = false;
    expect((await held).status).toBe(200);
    expect(upstreamCalls()).toBe(before + 1);
    await until(() => collector.records.some((r) => r.query === 'while=full'), 3_000, 'the held request’s record');
  });
});
