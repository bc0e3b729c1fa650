import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { INITIAL_WINDOW, MAX_WINDOW, MuxSession, type MuxStream } from '../../src/tunnel/mux.js';
import { until } from '../helpers/http.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A client and a server session joined by a real WebSocket on loopback. */
async function sessionPair(): Promise<{ client: MuxSession; server: MuxSession; clientSocket: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((resolve) => wss.once('listening', resolve));
  const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  const clientSocket = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
  await new Promise((resolve) => clientSocket.once('open', resolve));
  const server = new MuxSession(await serverSide, { role: 'server' });
  const client = new MuxSession(clientSocket, { role: 'client' });
  // Streams cut by a test's own teardown fail with an error; tests that care listen themselves.
  server.on('stream', (stream: MuxStream) => stream.on('error', () => undefined));
  const open = client.open.bind(client);
  client.open = (metadata) => open(metadata).on('error', () => undefined);
  cleanups.push(() => new Promise((resolve) => wss.close(resolve)), () => clientSocket.terminate());
  return { client, server, clientSocket };
}

const nextStream = (session: MuxSession) => new Promise<MuxStream>((resolve) => session.once('stream', resolve));
const readAll = (stream: MuxStream) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });

describe('tunnel multiplexing', () => {
  it('carries bytes both ways with the metadata of the opener, and half-closes each direction on its own', async () => {
    const { client, server } = await sessionPair();
    const accepted = nextStream(server);
    const outbound = client.open({ remoteAddress: '203.0.113.7', remotePort: 5555 });
    const inbound = await accepted;
    expect(inbound.remoteAddress).toBe('203.0.113.7');
    expect(inbound.remotePort).toBe(5555);

    const request = randomBytes(3 * INITIAL_WINDOW + 17);
    const inboundRead = readAll(inbound);
    outbound.end(request);
    const receivedByServer = await inboundRead;
    expect(receivedByServer.equals(request)).toBe(true);

    // The server can still answer after the client finished sending (exec stdin EOF, `echo | nc`).
    const reply = randomBytes(INITIAL_WINDOW + 5);
    const outboundRead = readAll(outbound);
    inbound.end(reply);
    expect((await outboundRead).equals(reply)).toBe(true);
    await until(() => client.openStreams === 0 && server.openStreams === 0, 2_000, 'both sides to forget the stream');
  });

  it('holds a stalled stream to its window while other streams keep flowing', async () => {
    const { client, server } = await sessionPair();
    const accepted: MuxStream[] = [];
    server.on('stream', (stream: MuxStream) => accepted.push(stream));
    const stalled = client.open();
    await until(() => accepted.length === 1, 2_000, 'the stalled stream');
    const stalledInbound = accepted[0]!;
    stalledInbound.pause();
    let writable = true;
    for (let i = 0; i < 64 && writable; i++) writable = stalled.write(randomBytes(64 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The receiver never buffers more than one window for the stalled stream.
    expect(stalledInbound.readableLength).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect(writable).toBe(false);

    const busy = client.open();
    await until(() => accepted.length === 2, 2_000, 'the second stream');
    const payload = randomBytes(4 * 1024 * 1024);
    const read = readAll(accepted[1]!);
    busy.end(payload);
    expect(createHash('sha256').update(await read).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));

    stalledInbound.resume();
    stalled.destroy();
  });

  it('a reader that pauses and resumes (as an HTTP parser does) gets every byte: credit returns as it reads', async () => {
    const { client, server } = await sessionPair();
    const accepted = nextStream(server);
    const outbound = client.open();
    const inbound = await accepted;
    const payload = randomBytes(8 * INITIAL_WINDOW);
    const chunks: Buffer[] = [];
    inbound.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      inbound.pause();
      setTimeout(() => inbound.resume(), 1);
    });
    const ended = new Promise((resolve) => inbound.once('end', resolve));
    outbound.end(payload);
    await ended;
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('resets the peer stream when one side destroys it', async () => {
    const { client, server } = await sessionPair();
    const accepted = nextStream(server);
    const outbound = client.open();
    const inbound = await accepted;
    const failed = new Promise<Error>((resolve) => inbound.once('error', resolve));
    outbound.destroy();
    expect((await failed).message).toContain('reset by the peer');
    await until(() => client.openStreams === 0 && server.openStreams === 0, 2_000, 'no streams left');
  });

  it('leaves no stream behind after 1 000 open/close cycles', async () => {
    const { client, server } = await sessionPair();
    server.on('stream', (stream: MuxStream) => {
      stream.resume();
      stream.on('end', () => stream.end());
    });
    for (let i = 0; i < 1000; i++) {
      const stream = client.open();
      stream.resume();
      const closed = new Promise((resolve) => stream.once('close', resolve));
      stream.end(Buffer.from('x'));
      await closed;
    }
    await until(() => client.openStreams === 0 && server.openStreams === 0, 2_000, 'no streams left');
  });

  it('fails every open stream when the WebSocket drops, and refuses new ones after GOAWAY', async () => {
    const { client, server, clientSocket } = await sessionPair();
    const accepted = nextStream(server);
    const outbound = client.open();
    await accepted;
    const failed = new Promise<Error>((resolve) => outbound.once('error', resolve));
    server.goAway();
    await until(() => client.draining, 2_000, 'the GOAWAY');
    expect(() => client.open()).toThrow(/going away/);
    clientSocket.terminate();
    expect((await failed).message).toContain('tunnel closed');
  });

  it('ends the session when the peer sends a stream more than the window it was granted', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise((resolve) => wss.once('listening', resolve));
    const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
    const peer = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
    await new Promise((resolve) => peer.once('open', resolve));
    cleanups.push(() => new Promise((resolve) => wss.close(resolve)), () => peer.terminate());
    const session = new MuxSession(await serverSide, { role: 'server' });
    const errors: Error[] = [];
    session.on('error', (err: Error) => errors.push(err));
    session.on('stream', (stream: MuxStream) => stream.on('error', () => undefined)); // accepted, never read: no credit comes back
    const frame = (type: number, payload: Buffer) => Buffer.concat([Buffer.from([type, 0, 0, 0, 1]), payload]);
    const closed = new Promise<number>((resolve) => peer.once('close', resolve));
    peer.send(frame(1, Buffer.from('{}'))); // OPEN stream 1
    for (let sent = 0; sent <= INITIAL_WINDOW; sent += 64 * 1024) peer.send(frame(2, Buffer.alloc(64 * 1024))); // DATA past the window
    expect(await closed).toBe(1006);
    expect(errors.map((err) => err.message)).toEqual(['stream 1 exceeded its window']);
  });

  it('ends the session when the peer grants a stream credit beyond the maximum window (issue 14)', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise((resolve) => wss.once('listening', resolve));
    const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
    const peer = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
    await new Promise((resolve) => peer.once('open', resolve));
    cleanups.push(() => new Promise((resolve) => wss.close(resolve)), () => peer.terminate());
    const session = new MuxSession(await serverSide, { role: 'client' });
    const errors: Error[] = [];
    session.on('error', (err: Error) => errors.push(err));
    session.open().on('error', () => undefined); // stream 1, holding the initial window already
    const closed = new Promise<number>((resolve) => peer.once('close', resolve));
    peer.send(Buffer.from([3, 0, 0, 0, 1, 0, 0, 0, 1])); // WINDOW +1 on stream 1
    expect(await closed).toBe(1006);
    expect(errors.map((err) => err.message)).toEqual([`stream 1: the peer granted credit beyond the ${MAX_WINDOW}-byte maximum window`]);
  });

  it('carries CONTROL messages outside any stream (the hub pushes revocations this way)', async () => {
    const { client, server } = await sessionPair();
    const received = new Promise<unknown>((resolve) => server.once('control', resolve));
    client.sendControl({ type: 'revocations', items: [{ user: 'agent:gone', revokedAt: '2026-01-01T00:00:00.000Z' }] });
    expect(await received).toEqual({ type: 'revocations', items: [{ user: 'agent:gone', revokedAt: '2026-01-01T00:00:00.000Z' }] });
  });

  it('reports how full a session is against its stream limit', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise((resolve) => wss.once('listening', resolve));
    const socket = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
    await new Promise((resolve) => socket.once('open', resolve));
    cleanups.push(() => new Promise((resolve) => wss.close(resolve)), () => socket.terminate());
    const session = new MuxSession(socket, { role: 'client', maxStreams: 2 });
    session.open().on('error', () => undefined);
    expect(session.full).toBe(false);
    session.open().on('error', () => undefined);
    expect(session.full).toBe(true);
  });

  it('serves HTTP on streams: an http.Server takes them as connections and an http.Agent dials them', async () => {
    const { client, server } = await sessionPair();
    const api = http.createServer((req, res) => res.end(`${req.method} ${req.url} from ${req.socket.remoteAddress}`));
    server.on('stream', (stream: MuxStream) => api.emit('connection', stream));
    const agent = new http.Agent({ keepAlive: true });
    (agent as unknown as { createConnection: () => MuxStream }).createConnection = () => client.open({ remoteAddress: '198.51.100.1' });
    cleanups.push(() => agent.destroy());
    for (const path of ['/api', '/api/v1/namespaces/default/pods?watch=0']) {
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: 'tunnel', path, agent }, (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => (text += chunk.toString()));
            res.on('end', () => resolve(text));
          })
          .on('error', reject);
      });
      expect(body).toBe(`GET ${path} from 198.51.100.1`);
    }
  });
});
