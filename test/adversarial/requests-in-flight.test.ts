/**
 * One agent holding thousands of ordinary requests open (issue 14: 13 785
 * stalled uploads through the hub, as many connections to the API server):
 * every request in flight counts toward a per-agent cap, at each relay and
 * at the hub, from admission to the end of its response. Past the cap a 429
 * Status; another agent is unaffected; slots come back exactly once.
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/http.js';
import { sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const CAP = 20;
const UPLOADS = CAP + 12;

type Layer = 'relay' | 'hub';

describe.each<[mode: 'direct' | 'tunnel', capped: Layer]>([
  ['direct', 'relay'],
  ['tunnel', 'hub'],
  ['tunnel', 'relay'],
])('requests in flight per agent, %s mode, capped at the %s', (mode, capped) => {
  let stack: Stack;
  let token: string;
  let otherToken: string;
  const sockets = new Set<tls.TLSSocket>();

  beforeAll(async () => {
    stack = await startStack({ mode, ...(capped === 'relay' ? { relay: { maxRequestsPerAgent: CAP } } : { issuer: { maxRequestsPerAgent: CAP } }) });
    const setup = await stack.registry();
    const otherKey = await setup.registry.createAgent('bystander', 'acme', ['sre']);
    await setup.close();
    token = await stack.token();
    otherToken = await stack.token(otherKey);
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await stack?.close();
  });

  const base = () => new URL(stack.relay.url).pathname.replace(/\/$/, '');
  const host = () => new URL(stack.relay.url).host;

  /** A POST that sends its headers and a few bytes of a 1 MB body, then nothing: the answer, if one comes. */
  function stalledUpload(namespace: string): { socket: tls.TLSSocket; answer: () => string } {
    const url = new URL(stack.relay.url);
    let answer = '';
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.caPem }, () => {
      socket.write(
        `POST ${base()}/api/v1/namespaces/${namespace}/configmaps HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${token}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"kind":"ConfigMap",',
      );
    });
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    sockets.add(socket);
    return { socket, answer: () => answer };
  }

  const get = (agentToken: string) =>
    sendRaw({ url: stack.relay.url, ca: stack.caPem }, `GET ${base()}/api/v1/namespaces/default/pods HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${agentToken}\r\nConnection: close\r\n\r\n`);

  /** Opens UPLOADS stalled uploads and waits until each is either refused or held by the API server. */
  async function openUploads(namespace: string): Promise<{ uploads: ReturnType<typeof stalledUpload>[]; refused: string[]; held: number }> {
    const uploads = Array.from({ length: UPLOADS }, () => stalledUpload(namespace));
    const heldUpstream = () => stack.fake.requests.filter((r) => r.url === `/api/v1/namespaces/${namespace}/configmaps`).length;
    const answered = () => uploads.filter((upload) => /\r\n\r\n/.test(upload.answer()));
    // Every upload is accounted for once it was answered or reached the API server (none is both: the fake answers only complete bodies).
    await until(() => answered().length + heldUpstream() >= UPLOADS, 30_000, 'every upload to be refused or held upstream');
    return { uploads, refused: answered().map((upload) => upload.answer()), held: heldUpstream() };
  }

  it(`admits exactly ${CAP} stalled uploads of one agent, refuses the rest with a 429 Status, and leaves another agent alone`, async () => {
    const { uploads, refused, held } = await openUploads('stalled-1');
    expect(held).toBe(CAP);
    expect(refused).toHaveLength(UPLOADS - CAP);
    for (const answer of refused) {
      expect(answer).toMatch(/^HTTP\/1\.1 429 /);
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      expect(body).toMatchObject({ kind: 'Status', status: 'Failure', code: 429, reason: 'TooManyRequests', message: expect.stringContaining(`${CAP} requests in flight`) });
    }
    // Ordinary requests count too: the agent gets nothing more while it holds its cap...
    const mine = await get(token);
    expect(mine.status).toBe(429);
    // ...and another agent is not affected.
    expect((await get(otherToken)).status).toBe(200);
    const trail = capped === 'hub' ? stack.hubAuditRecords() : stack.auditRecords();
    expect(trail.filter((r) => r.path === '/api/v1/namespaces/stalled-1/configmaps' && r.reason === 'too-many-requests' && r.status === 429 && r.user === 'agent:deployer').length).toBeGreaterThanOrEqual(1);

    // Slots come back when the uploads end, each exactly once: the next round is admitted to the same count.
    for (const upload of uploads) upload.socket.destroy();
    await until(async () => (await get(token)).status === 200, 15_000, 'the slots to come back');
    const again = await openUploads('stalled-2');
    expect(again.held).toBe(CAP);
    expect(again.refused).toHaveLength(UPLOADS - CAP);
    for (const upload of again.uploads) upload.socket.destroy();
  }, 90_000);

  it('gives every slot back when clients leave before their answer, round after round', async () => {
    // Requests the client abandons at once, over and over: none may keep its slot.
    for (let round = 0; round < 3; round++) {
      const uploads = Array.from({ length: CAP }, () => stalledUpload('abandoned'));
      await until(() => stack.fake.requests.filter((r) => r.url === '/api/v1/namespaces/abandoned/configmaps').length >= CAP * (round + 1), 20_000, 'the uploads upstream');
      for (const upload of uploads) upload.socket.destroy();
      await until(async () => (await get(token)).status === 200, 15_000, 'the slots to come back');
    }
    const { held, refused, uploads } = await openUploads('after-abandoned');
    expect(held).toBe(CAP);
    expect(refused).toHaveLength(UPLOADS - CAP);
    for (const upload of uploads) upload.socket.destroy();
  }, 90_000);
});
