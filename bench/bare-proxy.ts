/**
 * The floor for any TLS proxy written on Node: an https server that forwards
 * each request to the upstream over a keep-alive https agent and pipes the
 * answer back, with no authentication, header rules or audit. The benchmark
 * runs it beside the relay so the relay's own cost can be told apart from
 * what Node's TLS and HTTP stacks cost on the same machine.
 *
 * Usage: tsx bench/bare-proxy.ts CERT KEY CA UPSTREAM_PORT — prints `listening PORT`.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

const [certFile, keyFile, caFile, upstreamPort] = process.argv.slice(2);
if (!certFile || !keyFile || !caFile || !upstreamPort) throw new Error('usage: bare-proxy.ts CERT KEY CA UPSTREAM_PORT');

const agent = new https.Agent({ keepAlive: true, ca: readFileSync(caFile) });
const server = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
  const upstream = https.request({ host: '127.0.0.1', port: Number(upstreamPort), path: req.url, method: req.method, headers: req.headers, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
});
// Upgrades (the port-forward-like streams): the request head as received, then raw bytes both ways.
server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
  socket.allowHalfOpen = true;
  const upstream = tls.connect({ host: '127.0.0.1', port: Number(upstreamPort), ca: readFileSync(caFile) }, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on('error', () => socket.destroy());
  socket.on('error', () => upstream.destroy());
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
