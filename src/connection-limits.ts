/**
 * Caps on concurrent client connections (issue 14: ~20 000 idle TCP
 * connections that never started TLS used up the process's file limit, and
 * legitimate requests then got resets and `502 connect EMFILE`).
 *
 * A listener takes at most `maxConnections` at once and one source address
 * at most `maxConnectionsPerAddress`; a connection past either is closed at
 * once, before TLS, which costs the attacker more than it costs us. The
 * default cap keeps half the file limit (less a reserve for the store,
 * logs and the admin listener) for the upstream side: a relay opens one
 * connection to the API server for each client connection it forwards.
 * Connections that never finish TLS are cut by the handshake timeout, and
 * those that never send a request by the headers timeout (http-listener).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from './log.js';

export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
}

/** File descriptors kept for everything that is not a client or upstream connection. */
const RESERVED_FDS = 256;
const FALLBACK_FD_LIMIT = 1024;
/** One address may hold a quarter of the listener: a NAT or a load balancer in front counts as one. */
const PER_ADDRESS_SHARE = 4;
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** The soft limit on open files (Linux), or a conservative guess elsewhere. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number {
  try {
    const line = readFileSync(limitsFile, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    if (soft === 'unlimited') return 1_048_576;
    const value = Number(soft);
    return Number.isInteger(value) && value > 0 ? value : FALLBACK_FD_LIMIT;
  } catch {
    return FALLBACK_FD_LIMIT;
  }
}

export function defaultConnectionLimits(fdLimit = openFileLimit()): ConnectionLimits {
  const maxConnections = Math.max(64, Math.floor((fdLimit - RESERVED_FDS) / 2));
  return { maxConnections, maxConnectionsPerAddress: Math.max(16, Math.floor(maxConnections / PER_ADDRESS_SHARE)) };
}

/** The caps given, the rest by default: a given --max-connections also sets the per-address default (a quarter of it). */
export function connectionLimitsWith(given: Partial<ConnectionLimits> = {}, fdLimit = openFileLimit()): ConnectionLimits {
  const maxConnections = given.maxConnections ?? defaultConnectionLimits(fdLimit).maxConnections;
  return { maxConnections, maxConnectionsPerAddress: given.maxConnectionsPerAddress ?? Math.max(16, Math.floor(maxConnections / PER_ADDRESS_SHARE)) };
}

/** Counts the connections `server` holds and closes those past the caps. */
export function limitConnections(server: Server, limits: ConnectionLimits, metrics: Registry | undefined, log: Logger | undefined): void {
  const byAddress = new Map<string, number>();
  let open = 0;
  const registers = metrics ? [metrics] : [];
  const refused = new Counter({ name: 'kube_relay_connections_refused_total', help: 'Client connections closed on arrival because a cap was reached, by cap.', labelNames: ['cap'], registers });
  new Gauge({
    name: 'kube_relay_client_connections',
    help: 'Client connections open on the API listener.',
    registers,
    collect() {
      this.set(open);
    },
  });
  let lastLogAt = -Infinity;
  let unlogged = 0;
  const refuse = (socket: Duplex, cap: 'listener' | 'address', address: string) => {
    socket.destroy();
    refused.inc({ cap });
    unlogged++;
    const now = Date.now();
    if (now - lastLogAt < REFUSAL_LOG_INTERVAL_MS) return;
    log?.warn('refusing client connections: a connection cap is reached', {
      cap,
      address,
      refused: unlogged,
      limit: cap === 'listener' ? limits.maxConnections : limits.maxConnectionsPerAddress,
      flag: cap === 'listener' ? '--max-connections' : '--max-connections-per-address',
    });
    lastLogAt = now;
    unlogged = 0;
  };
  server.on('connection', (socket: Duplex & { remoteAddress?: string }) => {
    const address = socket.remoteAddress ?? '';
    const fromAddress = byAddress.get(address) ?? 0;
    if (open >= limits.maxConnections) return refuse(socket, 'listener', address);
    if (address !== '' && fromAddress >= limits.maxConnectionsPerAddress) return refuse(socket, 'address', address);
    open++;
    byAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      open--;
      const left = (byAddress.get(address) ?? 1) - 1;
      if (left === 0) byAddress.delete(address);
      else byAddress.set(address, left);
    });
  });
}
