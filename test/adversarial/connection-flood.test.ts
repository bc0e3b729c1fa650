/**
 * Connection floods (issue 14: ~20 000 idle TCP connections that never
 * started TLS reached the file limit; legitimate requests got resets and
 * `502 connect EMFILE`). Each listener carrying agent traffic — the
 * direct-mode relay's and the issuer's, which holds the hub — closes
 * connections past its caps on arrival, cuts TLS handshakes that do not
 * finish, and keeps serving legitimate clients meanwhile.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionLimitsWith } from '../../src/connection-limits.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const PER_ADDRESS = 20;
const PER_LISTENER = 60;
const limits = { tlsHandshakeTimeoutMs: 1_000, connections: { maxConnections: PER_LISTENER, maxConnectionsPerAddress: PER_ADDRESS } };

/** A TCP connection that never starts TLS; resolves with whether the server closed it within `withinMs`. */
function idleConnection(port: number, localAddress: string): { socket: net.Socket; closed: Promise<number> } {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  const openedAt = Date.now();
  socket.on('error', () => undefined);
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve(Date.now() - openedAt))) };
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function connected(socket: net.Socket): Promise<void> {
  if (!socket.connecting) return;
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()).once('close', () => resolve()));
}

describe.each([
  ['direct-mode relay', 'direct' as const],
  ['issuer and hub', 'tunnel' as const],
])('connection floods at the %s', (_name, mode) => {
  let stack: Stack;
  let port: number;
  let metricsUrl: string;
  const held: net.Socket[] = [];

  beforeAll(async () => {
    stack = await startStack({
      mode,
      relay: { limits, adminListen: { host: '127.0.0.1', port: 0 } },
      issuer: { limits, adminListen: { host: '127.0.0.1', port: 0 } },
    });
    const target = new URL(mode === 'direct' ? stack.relay.url : stack.issuer.url);
    port = Number(target.port);
    metricsUrl = `http://127.0.0.1:${mode === 'direct' ? stack.relay.adminPort : stack.issuer.adminPort}/metrics`;
  });

  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await stack?.close();
  });

  const apiUrl = () => (mode === 'direct' ? `${stack.relay.url}/version` : `${stack.issuer.url}/clusters/prod-eu/version`);
  const legitimate = async () => (await request(apiUrl(), { ca: stack.caPem, headers: { authorization: `Bearer ${await stack.token()}` } })).status;

  it('a TLS handshake that never finishes is cut (here after 1 s; 10 s by default)', async () => {
    const { closed } = idleConnection(port, '127.0.0.1');
    const afterMs = await Promise.race([closed, wait(15_000).then(() => Infinity)]);
    expect(afterMs).toBeGreaterThanOrEqual(900);
    expect(afterMs).toBeLessThan(15_000);
  });

  it('one address is held to its cap, closed on arrival past it, and others are served meanwhile', async () => {
    const flood = Array.from({ length: PER_ADDRESS + 10 }, () => idleConnection(port, '127.0.0.7'));
    for (const { socket } of flood) held.push(socket);
    await Promise.all(flood.map(({ socket }) => connected(socket)));
    const closedEarly = await Promise.all(flood.map(({ closed }) => Promise.race([closed.then(() => true), wait(500).then(() => false)])));
    expect(closedEarly.filter(Boolean).length).toBe(10);
    expect(await legitimate()).toBe(200);
    const metrics = await (await fetch(metricsUrl)).text();
    expect(Number(/kube_relay_connections_refused_total\{cap="address"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(10);
    for (const { socket } of flood) socket.destroy();
  });

  it('the listener is held to its cap; once the flood is gone, clients are served again', async () => {
    // Let the previous test's connections close on the server's side first; the hub's listener also holds the relay's tunnel.
    const baseline = mode === 'tunnel' ? 1 : 0;
    await until(async () => Number(/kube_relay_client_connections (\d+)/.exec(await (await fetch(metricsUrl)).text())?.[1]) === baseline, 10_000, 'only the baseline connections left');
    const flood = Array.from({ length: PER_LISTENER - baseline }, (_, i) => idleConnection(port, `127.0.0.${10 + Math.floor(i / PER_ADDRESS)}`));
    for (const { socket } of flood) held.push(socket);
    await Promise.all(flood.map(({ socket }) => connected(socket)));
    await until(async () => /kube_relay_client_connections (\d+)/.exec(await (await fetch(metricsUrl)).text())?.[1] === String(PER_LISTENER), 5_000, 'the listener full');
    const extra = idleConnection(port, '127.0.0.20');
    held.push(extra.socket);
    expect(await Promise.race([extra.closed.then(() => 'closed'), wait(2_000).then(() => 'open')])).toBe('closed');
    for (const { socket } of flood) socket.destroy();
    await until(async () => (await legitimate().catch(() => 0)) === 200, 10_000, 'a legitimate request after the flood');
  });
});

describe('connection cap defaults', () => {
  it('keep half the open-file limit (less a reserve) for the upstream side, and give one address a quarter', () => {
    expect(connectionLimitsWith({}, 20_000)).toEqual({ maxConnections: 9_872, maxConnectionsPerAddress: 2_468 });
  });

  it('a given --max-connections sets the per-address default too, and a given per-address cap stays', () => {
    expect(connectionLimitsWith({ maxConnections: 400 }, 20_000)).toEqual({ maxConnections: 400, maxConnectionsPerAddress: 100 });
    expect(connectionLimitsWith({ maxConnections: 400, maxConnectionsPerAddress: 7 }, 20_000)).toEqual({ maxConnections: 400, maxConnectionsPerAddress: 7 });
  });
});
