/**
 * The two tunnel transports of DESIGN §4, measured side by side the way the
 * design measured them: one process, plain HTTP, a loopback WebSocket, HTTP/1.1
 * carried over one tunnel stream per connection.
 *
 * - lean frames: kube-relay's MuxSession (src/tunnel/mux.ts), the one shipped;
 * - HTTP/2: an HTTP/2 session over the WebSocket byte stream
 *   (`http2.connect` with `createConnection`, `http2.performServerHandshake`),
 *   one HTTP/2 stream per tunnelled connection. Kept here, not in src, only
 *   so the choice stays measured.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocket, WebSocketServer } from 'ws';
import { MuxSession } from '../src/tunnel/mux.js';

export interface DesignFigures {
  name: string;
  bodyMBps: number;
  smallGetRps: number;
}

const SMALL = Buffer.from(JSON.stringify({ kind: 'PodList', items: Array.from({ length: 5 }, (_, i) => ({ metadata: { name: `pod-${i}` } })) }));
const CHUNK = Buffer.alloc(64 * 1024, 'd');

function upstream(): http.Server {
  return http.createServer((req, res) => {
    const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size') ?? 0);
    if (size === 0) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': SMALL.length }).end(SMALL);
      return;
    }
    res.writeHead(200, { 'content-length': size });
    let left = size;
    const pump = () => {
      while (left > 0) {
        const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
}

/** The socket methods http.Agent calls on what createConnection returns. */
function withSocketMethods<T extends Duplex>(stream: T): T {
  const noop = () => stream;
  Object.assign(stream, { setNoDelay: noop, setKeepAlive: noop, setTimeout: noop, ref: noop, unref: noop });
  return stream;
}

/** An Http2Stream handed straight to http.Server corrupts the first response bytes on Node 20 (DESIGN §4): wrap it. */
function plainDuplex(inner: Duplex): Duplex {
  const outer: Duplex = new Duplex({
    write: (chunk: Buffer, _encoding, callback) => void inner.write(chunk, callback),
    final: (callback) => void inner.end(callback),
    read: () => void inner.resume(),
    destroy: (err, callback) => {
      inner.destroy(err ?? undefined);
      callback(err);
    },
  });
  inner.on('data', (chunk: Buffer) => {
    if (!outer.push(chunk)) inner.pause();
  });
  inner.on('end', () => outer.push(null));
  inner.on('error', (err: Error) => outer.destroy(err));
  return withSocketMethods(outer);
}

interface Transport {
  agent: http.Agent;
  close(): Promise<void>;
}

async function websocketPair(): Promise<{ client: WebSocket; server: WebSocket; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  await new Promise((resolve) => wss.once('listening', resolve));
  const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
  await new Promise((resolve) => client.once('open', resolve));
  const server = await serverSide;
  return {
    client,
    server,
    close: async () => {
      client.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

async function leanFrames(target: http.Server): Promise<Transport> {
  const pair = await websocketPair();
  const hubSide = new MuxSession(pair.client, { role: 'client' });
  const relaySide = new MuxSession(pair.server, { role: 'server' });
  relaySide.on('stream', (stream) => target.emit('connection', stream));
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => hubSide.open();
  return { agent, close: pair.close };
}

async function http2OverWebSocket(target: http.Server): Promise<Transport> {
  const pair = await websocketPair();
  const relaySide = http2.performServerHandshake(createWebSocketStream(pair.server));
  relaySide.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    target.emit('connection', plainDuplex(stream));
  });
  const hubSide = http2.connect('http://tunnel', { createConnection: () => createWebSocketStream(pair.client) });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => plainDuplex(hubSide.request({ ':method': 'POST', ':path': '/tunnel' }, { endStream: false }));
  return {
    agent,
    close: async () => {
      hubSide.destroy();
      relaySide.destroy();
      await pair.close();
    },
  };
}

function get(agent: http.Agent, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => resolve(bytes));
      })
      .on('error', reject);
  });
}

async function measure(name: string, agent: http.Agent, port: number, bodyBytes: number, seconds: number): Promise<DesignFigures> {
  const started = performance.now();
  const received = await get(agent, port, `/body?size=${bodyBytes}`);
  if (received !== bodyBytes) throw new Error(`${name}: body of ${received} bytes, expected ${bodyBytes}`);
  const bodyMBps = bodyBytes / 1e6 / ((performance.now() - started) / 1000);

  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      await get(agent, port, '/small');
      done++;
    }
  };
  const loadStarted = performance.now();
  await Promise.all(Array.from({ length: 16 }, worker));
  return { name, bodyMBps, smallGetRps: done / ((performance.now() - loadStarted) / 1000) };
}

export async function compareTunnelDesigns(options: { bodyBytes: number; seconds: number }): Promise<DesignFigures[]> {
  const server = upstream();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const results: DesignFigures[] = [];
  const direct = new http.Agent({ keepAlive: true });
  results.push(await measure('no tunnel (client straight to the server, keep-alive)', direct, port, options.bodyBytes, options.seconds));
  direct.destroy();
  for (const [name, build] of [
    ['lean credit-based frames on WebSocket messages (shipped)', leanFrames],
    ['HTTP/2 session over the WebSocket byte stream', http2OverWebSocket],
  ] as const) {
    const transport = await build(server);
    results.push(await measure(name, transport.agent, port, options.bodyBytes, options.seconds));
    await transport.close();
  }
  server.close();
  server.closeAllConnections();
  return results;
}
