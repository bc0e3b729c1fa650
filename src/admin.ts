/**
 * The admin listener (DESIGN §3.7): `/healthz`, `/readyz` and `/metrics`,
 * kept off the API listener where they would shadow the API server's own
 * paths of the same names. Plain HTTP, for kubelet probes and Prometheus.
 */
import http from 'node:http';
import type net from 'node:net';
import type { HostPort } from './net.js';

export interface Readiness {
  ready: boolean;
  /** What is not ready yet, in words, for the `/readyz` body. */
  waitingFor: string[];
}

export async function startAdminServer(
  listen: HostPort,
  /** A registry, or what serves as one (a relay with workers sums theirs, workers/primary.ts). */
  metrics: { metrics(): Promise<string>; readonly contentType: string },
  readiness: () => Readiness,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const state = readiness();
      res
        .writeHead(state.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(state.ready ? 'ok\n' : `not ready: waiting for ${state.waitingFor.join(', ')}\n`);
    } else if (path === '/metrics') {
      metrics.metrics().then(
        (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await listenOn(server, listen);
  return server;
}

/**
 * Connections the kernel queues before they are accepted. Node's default (511) overflowed when
 * thousands of clients connected at once on a busy host, and the kernel reset them before TLS
 * (seen in the limits suite); the kernel caps it at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096;

export function listenOn(server: net.Server, listen: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: listen.port, host: listen.host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function boundPort(server: net.Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return address.port;
}

export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
