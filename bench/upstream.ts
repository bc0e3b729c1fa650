/**
 * The benchmark's upstream: a lean HTTPS stand-in for kube-apiserver, in its
 * own process, so the relay (not the upstream) is what gets measured. It
 * records nothing and answers from memory:
 *
 *   GET  /version                                  version info (relay readiness)
 *   POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews   always allowed (the relay's self-check)
 *   GET  /api/v1/namespaces/bench/pods             a PodList of 50 pods (~40 KiB)
 *   GET  /api/v1/namespaces/bench/pods?watch=1     held open; events fanned out on POST /bench/event
 *   GET  /bench/bytes?size=N                       N bytes of body
 *   POST /bench/sink                               reads the body, answers with its length
 *   POST /bench/event                              one event to every open watch; answers how many
 *   GET  /bench/watches                            how many watches are open
 *   upgrade .../pods/source/portforward?size=N     101, then N bytes, then end
 *   upgrade .../pods/sink/portforward              101, then counts bytes until the client ends, then writes the count
 *   upgrade .../pods/stall/portforward             101, then echoes (a stalled client holds it back)
 *
 * It offers HTTP/2 by ALPN beside HTTP/1.1, as kube-apiserver does, so the
 * relay's watches go over its HTTP/2 pool, as they would in a cluster.
 *
 * Usage: tsx bench/upstream.ts CERT KEY — prints `listening PORT` on stdout.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';

const [certFile, keyFile] = process.argv.slice(2);
if (!certFile || !keyFile) throw new Error('usage: upstream.ts CERT KEY');

const CHUNK = Buffer.alloc(64 * 1024, 'k');
const podList = Buffer.from(
  JSON.stringify({
    kind: 'PodList',
    apiVersion: 'v1',
    metadata: { resourceVersion: '1000' },
    items: Array.from({ length: 50 }, (_, i) => ({
      metadata: { name: `pod-${i}`, namespace: 'bench', uid: `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`, resourceVersion: String(1000 + i), labels: { app: 'bench', shard: String(i % 5) } },
      spec: { nodeName: 'node-0', containers: [{ name: 'main', image: 'registry.example/bench:1.0', resources: { requests: { cpu: '100m', memory: '64Mi' } } }] },
      status: { phase: 'Running', podIP: `10.0.0.${i}`, conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ name: 'main', ready: true, restartCount: 0 }] },
    })),
  }),
);
const watches = new Set<ServerResponse | Http2ServerResponse>();

function writeBytes(out: NodeJS.WritableStream, size: number, done: () => void): void {
  let left = size;
  const pump = () => {
    while (left > 0) {
      const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= chunk.length;
      if (!out.write(chunk)) {
        out.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

// kube-apiserver's stream and window settings (k8s.io/apiserver secure_serving.go).
const server = http2.createSecureServer({
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  allowHTTP1: true,
  settings: { maxConcurrentStreams: 1000, initialWindowSize: 256 * 1024 },
});
server.on('session', (session) => session.setLocalWindowSize(256 * 1024 * 1000));
Object.assign(server, { keepAliveTimeout: 60_000 });

server.on('request', (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
  const url = new URL(req.url ?? '/', 'https://upstream');
  if (url.pathname === '/api/v1/namespaces/bench/pods' && (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true')) {
    // An HTTP/2 answer sends its headers at writeHead; HTTP/1.1 frames the open-ended body as chunked.
    res.writeHead(200, { 'content-type': 'application/json' });
    (res as ServerResponse).flushHeaders(); // Http2ServerResponse has it too (not in @types/node 20)
    watches.add(res);
    res.on('close', () => watches.delete(res));
    return;
  }
  if (url.pathname === '/api/v1/namespaces/bench/pods') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': podList.length });
    res.end(podList);
    return;
  }
  if (url.pathname === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews' && req.method === 'POST') {
    // The relay's start-up self-check: everything is allowed here.
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...(JSON.parse(body || '{}') as object), status: { allowed: true } }));
    });
    return;
  }
  if (url.pathname === '/version') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ major: '1', minor: '33', gitVersion: 'v1.33.0-bench' }));
    return;
  }
  if (url.pathname === '/bench/bytes') {
    const size = Number(url.searchParams.get('size') ?? 0);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    writeBytes(res, size, () => res.end());
    return;
  }
  if (url.pathname === '/bench/sink' && req.method === 'POST') {
    let received = 0;
    req.on('data', (chunk: Buffer) => (received += chunk.length));
    req.on('end', () => res.end(JSON.stringify({ received })));
    return;
  }
  if (url.pathname === '/bench/event' && req.method === 'POST') {
    const line = `${JSON.stringify({ type: 'MODIFIED', object: { kind: 'Pod', metadata: { name: 'pod-0', resourceVersion: String(Date.now()) } } })}\n`;
    for (const watch of watches) (watch as NodeJS.WritableStream).write(line);
    res.end(JSON.stringify({ delivered: watches.size }));
    return;
  }
  if (url.pathname === '/bench/watches') {
    res.end(JSON.stringify({ open: watches.size }));
    return;
  }
  res.writeHead(404).end();
});

server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
  const url = new URL(req.url ?? '/', 'https://upstream');
  const kind = /\/pods\/(source|sink|stall)\/portforward$/.exec(url.pathname)?.[1];
  if (!kind) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  socket.on('error', () => socket.destroy());
  socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n');
  if (kind === 'source') {
    writeBytes(socket, Number(url.searchParams.get('size') ?? 0), () => socket.end());
    socket.resume();
  } else if (kind === 'sink') {
    let received = head.length;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.on('end', () => socket.end(JSON.stringify({ received })));
  } else {
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  }
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
