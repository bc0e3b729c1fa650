/**
 * The tunnels relays hold to this hub (DESIGN §4, §9): the handshake at
 * `GET /v1/tunnel`, where the connector key decides the cluster and a relay
 * claiming another is refused; each tunnel's session, keepalive and stated
 * readiness; revocations pushed down every tunnel; and the tunnels of a
 * revoked cluster, or opened with a replaced key, closed. Which tunnel an
 * agent's request takes is chosen here too (`choose`), since only this
 * module knows which are ready.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Registry as MetricsRegistry } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AgentIdentity } from '../identity.js';
import type { Registry } from '../issuer/registry.js';
import type { Cluster } from '../issuer/store.js';
import type { Logger } from '../log.js';
import { writeStatusToSocket } from '../request-stages/errors.js';
import type { RevocationEntry, RevocationList } from '../request-stages/revocations.js';
import { READINESS_CHANGE_COST, RELAY_CONTROL_BUDGET } from '../tunnel/control-limits.js';
import { CLUSTER_HEADER, HUB_REPLICA_HEADER, HUB_REPLICAS_HEADER, KEY_REVOKED_CLOSE_CODE } from '../tunnel/handshake.js';
import { Keepalive } from '../tunnel/keepalive.js';
import { MAX_MESSAGE_BYTES, MAX_STREAMS, MuxSession, sessionErrorSummary } from '../tunnel/mux.js';
import { HubRefusal } from './admission.js';
import { registerTunnelGauges, type TunnelGauges } from './metrics.js';

/** How often the hub reads revocations (agents and clusters) from the store, where another process may have written them. */
const REGISTRY_WATCH_INTERVAL_MS = 1_000;
/** Revocations older than this are not pushed: every token issued before them has expired. */
const REVOCATION_HORIZON_MS = 10 * 60_000;
const REVOCATIONS_PER_MESSAGE = 256;

export interface RelayTunnelsOptions {
  registry: Registry;
  /** The hub's list: filled from the store here, read by the hub's admission. */
  revocations: RevocationList;
  metrics: MetricsRegistry;
  log: Logger;
  keepaliveMs?: number | undefined;
  /** How long a relay may read nothing while the hub holds bytes for it before its tunnel is closed (default 30 s; tests shorten it). */
  stallTimeoutMs?: number | undefined;
  /** How often revocations are read from the store (default 1 s; tests shorten it). */
  registryWatchMs?: number | undefined;
  /** Streams one tunnel carries at once (default MAX_STREAMS, which relays accept; tests lower it). */
  maxStreamsPerTunnel?: number | undefined;
  /** This replica's id and the number of hub replicas behind the public URL (default: one). */
  replica?: { id: string; count: number } | undefined;
}

export class RelayTunnels {
  private readonly tunnels = new Map<string, MuxSession[]>();
  /**
   * Tunnels whose relay has not said it is ready: new ones until it does (a
   * relay closes a tunnel that reached a hub replica it holds already, and
   * must not get requests meanwhile), and those whose relay said it is not
   * (no API server, a full audit trail).
   */
  private readonly unready = new WeakSet<MuxSession>();
  /** A read of revocations from the store is under way (they may take longer than the interval). */
  private readingRegistry = false;
  private registryFailing = false;
  /** The connector key each tunnel was opened with: a tunnel whose key was replaced is closed. */
  private readonly connectorKeys = new WeakMap<MuxSession, string>();
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_MESSAGE_BYTES });
  private readonly watchRegistry: NodeJS.Timeout;
  private readonly gauges: TunnelGauges;
  private next = 0;
  private closing = false;

  constructor(private readonly options: RelayTunnelsOptions) {
    this.gauges = registerTunnelGauges(options.metrics, this.tunnels);
    options.revocations.onRevoked((entry) => {
      for (const session of [...this.tunnels.values()].flat()) session.sendControl({ type: 'revocations', items: [entry] });
    });
    if (options.replica) {
      const { id, count } = options.replica;
      this.wss.on('headers', (headers: string[]) => headers.push(`${HUB_REPLICA_HEADER}: ${id}`, `${HUB_REPLICAS_HEADER}: ${count}`));
    }
    this.watchRegistry = setInterval(() => void this.applyRevocations(), options.registryWatchMs ?? REGISTRY_WATCH_INTERVAL_MS);
    this.watchRegistry.unref();
    void this.applyRevocations();
  }

  /** A connected tunnel proves its cluster exists (its key was checked). */
  hasTunnel(cluster: string): boolean {
    return this.tunnels.has(cluster);
  }

  /**
   * The tunnel an agent's request for `cluster` takes: one with room for a
   * stream, ready relays first; when none is ready, one of them answers why
   * (a Status), which beats a guess here.
   */
  choose(cluster: string, identity: AgentIdentity): MuxSession {
    // A tunnel whose WebSocket is closing stays listed until its close event; it takes no new streams.
    const sessions = (this.tunnels.get(cluster) ?? []).filter((session) => !session.draining && session.connected);
    if (sessions.length === 0) throw new HubRefusal(503, 'no-tunnel', `cluster "${cluster}" has no relay connected to this hub right now`, identity);
    const open = sessions.filter((session) => !session.full);
    if (open.length === 0) throw new HubRefusal(429, 'tunnel-full', `the tunnel to cluster "${cluster}" carries as many streams as it can; retry when some have finished`, identity);
    const ready = open.filter((session) => !this.unready.has(session));
    const pool = ready.length > 0 ? ready : open;
    return pool[this.next++ % pool.length]!;
  }

  /** A relay dialling in at the tunnel path. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.acceptTunnel(req, socket, head).catch((err: Error) => {
      this.options.log.error('accepting a tunnel failed', { error: err.message });
      socket.destroy();
    });
  }

  /** No new tunnels, GOAWAY on every tunnel, requests in flight finish; after `drainMs` what is still open is cut. */
  async close(drainMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.watchRegistry);
    const sessions = [...this.tunnels.values()].flat();
    await Promise.all(sessions.map((session) => session.drain(drainMs)));
    this.wss.close();
    for (const client of this.wss.clients) client.terminate();
  }

  /**
   * Revocations reach the hub through the store (`kube-relay agent revoke`
   * runs in another process): newly revoked agents are refused at once and
   * pushed to every relay through its tunnel (DESIGN §2), which cuts their
   * live streams; a revoked cluster's tunnels are closed.
   */
  private async applyRevocations(): Promise<void> {
    const { registry, log } = this.options;
    if (this.readingRegistry) return;
    this.readingRegistry = true;
    try {
      const since = new Date(Date.now() - REVOCATION_HORIZON_MS);
      this.options.revocations.apply((await registry.revocationsSince(since)).map((r) => ({ user: r.subject, revokedAt: r.revokedAt.toISOString() })));
      for (const [cluster, sessions] of [...this.tunnels]) {
        if ((await registry.findCluster(cluster))?.revokedAt) {
          log.warn('closing the tunnels of a revoked cluster', { cluster, tunnels: sessions.length });
          // Routed nowhere from now on, even while a relay takes its time to answer the close.
          this.tunnels.delete(cluster);
          for (const session of sessions) session.close(KEY_REVOKED_CLOSE_CODE, 'the connector key was revoked');
          continue;
        }
        const stale: MuxSession[] = [];
        for (const session of sessions) if ((await registry.clusterForKey(this.connectorKeys.get(session) ?? ''))?.name !== cluster) stale.push(session);
        if (stale.length === 0) continue;
        log.warn("closing tunnels opened with a cluster's replaced connector key", { cluster, tunnels: stale.length });
        const current = sessions.filter((session) => !stale.includes(session));
        if (current.length > 0) this.tunnels.set(cluster, current);
        else this.tunnels.delete(cluster);
        for (const session of stale) session.close(KEY_REVOKED_CLOSE_CODE, 'the connector key was replaced (kube-relay cluster rotate-key): restart the relay with the new key');
      }
      if (this.registryFailing) log.info('the hub reads revocations from the store again');
      this.registryFailing = false;
    } catch (err) {
      // Once per outage, not every second.
      if (!this.registryFailing) log.error('cannot read revocations from the store; tunnels keep forwarding, new revocations wait for it', { error: (err as Error).message });
      this.registryFailing = true;
    } finally {
      this.readingRegistry = false;
    }
  }

  private async acceptTunnel(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { registry, log } = this.options;
    if (this.closing) {
      writeStatusToSocket(socket, 503, 'this hub is shutting down');
      return;
    }
    const key = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    let cluster: Cluster | undefined;
    try {
      cluster = key ? await registry.clusterForKey(key) : undefined;
    } catch (err) {
      log.warn('tunnel refused: the store cannot be read', { error: (err as Error).message });
      writeStatusToSocket(socket, 503, 'the hub cannot check connector keys right now; retry');
      return;
    }
    if (socket.destroyed) return;
    if (!cluster || cluster.revokedAt) {
      log.warn('tunnel refused: unknown or revoked connector key', { address: req.socket.remoteAddress });
      writeStatusToSocket(socket, 401, 'the connector key is not valid (unknown or revoked)');
      return;
    }
    const claimed = req.headers[CLUSTER_HEADER];
    if (claimed !== cluster.name) {
      log.warn('tunnel refused: relay claims another cluster', { keyCluster: cluster.name, claimed });
      writeStatusToSocket(socket, 401, `the connector key is for cluster "${cluster.name}", not "${String(claimed)}"`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.register(cluster.name, key!, ws, socket));
  }

  private register(cluster: string, connectorKey: string, ws: WebSocket, transport: Duplex): void {
    const { log } = this.options;
    const session = new MuxSession(ws, {
      role: 'client',
      transport,
      acceptStreams: false,
      maxStreams: this.options.maxStreamsPerTunnel ?? MAX_STREAMS,
      controlBudget: RELAY_CONTROL_BUDGET,
      ...(this.options.stallTimeoutMs ? { stallTimeoutMs: this.options.stallTimeoutMs } : {}),
    });
    this.connectorKeys.set(session, connectorKey);
    // Everything revoked recently, in messages that each fit one frame (an entry is at most ~120 bytes).
    const recent: RevocationEntry[] = this.options.revocations.entries();
    for (let i = 0; i < recent.length; i += REVOCATIONS_PER_MESSAGE) session.sendControl({ type: 'revocations', items: recent.slice(i, i + REVOCATIONS_PER_MESSAGE) });
    this.unready.add(session);
    const sessions = this.tunnels.get(cluster) ?? [];
    sessions.push(session);
    this.tunnels.set(cluster, sessions);
    this.gauges.connected.inc({ cluster });
    const keepalive = new Keepalive(() => session.ping(), () => ws.terminate(), this.options.keepaliveMs);
    ws.on('pong', () => keepalive.alive());
    ws.on('message', () => keepalive.alive());
    keepalive.start();
    session.on('error', (err: Error) => log.warn(sessionErrorSummary(err, 'relay'), { cluster, error: err.message }));
    let statedReady: boolean | undefined;
    session.on('control', (message: { type?: unknown; ready?: unknown }) => {
      // Readiness said again changes nothing and is not logged again (issue 14: 200 000 of them wrote 37 MB of log).
      if (message?.type !== 'ready' || typeof message.ready !== 'boolean' || message.ready === statedReady) return;
      if (!session.chargeControl(READINESS_CHANGE_COST)) return;
      statedReady = message.ready;
      if (message.ready) {
        this.unready.delete(session);
        log.debug('relay ready', { cluster });
      } else {
        this.unready.add(session);
        log.info('relay not ready: it gets requests only while no other relay of its cluster is ready', { cluster });
      }
    });
    session.on('close', () => {
      keepalive.stop();
      const remaining = (this.tunnels.get(cluster) ?? []).filter((s) => s !== session);
      if (remaining.length > 0) this.tunnels.set(cluster, remaining);
      else this.tunnels.delete(cluster);
      this.gauges.connected.dec({ cluster });
      log.info('tunnel disconnected', { cluster });
    });
    log.info('tunnel connected', { cluster, tunnels: sessions.length });
  }
}
