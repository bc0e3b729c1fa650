/**
 * The connections relays hold to this hub (DESIGN §4, §9): the handshake at
 * `GET /v1/tunnel`, where the connector key decides the cluster and a relay
 * claiming another is refused; each connection's session, keepalive and
 * stated readiness; revocations pushed down every connection; and the
 * connections of a revoked cluster, or opened with a replaced key, closed.
 *
 * A connection is a tunnel (a tunnel-mode relay: agents' requests go down
 * it) or a control channel (a direct-mode relay with a connector key, which
 * says so in the handshake: it gets revocations and is known to be there,
 * but agents reach it at its own listener, never through the hub). The two
 * are kept apart, so that only tunnels can ever be chosen for a request.
 * Which tunnel a request takes is chosen here (`choose`), since only this
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
import { CHANNEL_HEADER, CLUSTER_HEADER, HUB_REPLICA_HEADER, HUB_REPLICAS_HEADER, KEY_REVOKED_CLOSE_CODE, RELAY_CHANNELS, RELAY_VERSION_HEADER, type RelayChannel } from '../tunnel/handshake.js';
import { Keepalive } from '../tunnel/keepalive.js';
import { MAX_MESSAGE_BYTES, MAX_STREAMS, MuxSession, sessionErrorSummary } from '../tunnel/mux.js';
import { HubRefusal } from './admission.js';
import type { ConnectionRecords } from './connection-records.js';
import { registerTunnelGauges, type TunnelGauges } from './metrics.js';
import { relayVersionOf, type StatedReadiness, statedReadiness } from './relay-statements.js';

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
  /** Where each connection's coming, readiness and going are recorded, for cluster status. */
  records: ConnectionRecords;
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
  /** Cluster → its tunnels: what agents' requests may take. */
  private readonly tunnels = new Map<string, MuxSession[]>();
  /** Cluster → its direct-mode relays' control channels: never chosen for a request. */
  private readonly controlChannels = new Map<string, MuxSession[]>();
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
    this.gauges = registerTunnelGauges(options.metrics, this.tunnels, this.controlChannels);
    options.revocations.onRevoked((entry) => {
      for (const session of this.everySession()) session.sendControl({ type: 'revocations', items: [entry] });
    });
    if (options.replica) {
      const { id, count } = options.replica;
      this.wss.on('headers', (headers: string[]) => headers.push(`${HUB_REPLICA_HEADER}: ${id}`, `${HUB_REPLICAS_HEADER}: ${count}`));
    }
    this.watchRegistry = setInterval(() => void this.applyRevocations(), options.registryWatchMs ?? REGISTRY_WATCH_INTERVAL_MS);
    this.watchRegistry.unref();
    void this.applyRevocations();
  }

  /** Tells every relay of `cluster` connected here that its grants changed, so it reads them now rather than at its next poll. */
  notifyGrantsChanged(cluster: string): void {
    for (const connections of [this.tunnels, this.controlChannels]) for (const session of connections.get(cluster) ?? []) session.sendControl({ type: 'grants-changed' });
  }

  /** A connected relay proves its cluster exists (its key was checked). */
  hasRelay(cluster: string): boolean {
    return this.tunnels.has(cluster) || this.controlChannels.has(cluster);
  }

  /**
   * The tunnel an agent's request for `cluster` takes: one with room for a
   * stream, ready relays first; when none is ready, one of them answers why
   * (a Status), which beats a guess here.
   */
  choose(cluster: string, identity: AgentIdentity): MuxSession {
    // A tunnel whose WebSocket is closing stays listed until its close event; it takes no new streams.
    // Control channels are not looked at: a cluster with only those has no relay to route to.
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
    await Promise.all([...this.everySession()].map((session) => session.drain(drainMs)));
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
      for (const connections of [this.tunnels, this.controlChannels]) await this.closeRevoked(connections);
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

  /** Closes the connections in `connections` of revoked clusters, and those opened with a key since replaced. */
  private async closeRevoked(connections: Map<string, MuxSession[]>): Promise<void> {
    const { registry, log } = this.options;
    for (const [cluster, sessions] of [...connections]) {
      if ((await registry.findCluster(cluster))?.revokedAt) {
        log.warn('closing the tunnels of a revoked cluster', { cluster, tunnels: sessions.length });
        // Routed nowhere from now on, even while a relay takes its time to answer the close.
        connections.delete(cluster);
        for (const session of sessions) session.close(KEY_REVOKED_CLOSE_CODE, 'the connector key was revoked');
        continue;
      }
      const stale: MuxSession[] = [];
      for (const session of sessions) if ((await registry.clusterForKey(this.connectorKeys.get(session) ?? ''))?.name !== cluster) stale.push(session);
      if (stale.length === 0) continue;
      log.warn("closing tunnels opened with a cluster's replaced connector key", { cluster, tunnels: stale.length });
      const current = sessions.filter((session) => !stale.includes(session));
      if (current.length > 0) connections.set(cluster, current);
      else connections.delete(cluster);
      for (const session of stale) session.close(KEY_REVOKED_CLOSE_CODE, 'the connector key was replaced (kube-relay cluster rotate-key): restart the relay with the new key');
    }
  }

  private *everySession(): Iterable<MuxSession> {
    for (const connections of [this.tunnels, this.controlChannels]) for (const sessions of connections.values()) yield* sessions;
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
    const channel = (req.headers[CHANNEL_HEADER] ?? 'tunnel') as RelayChannel;
    if (!RELAY_CHANNELS.includes(channel)) {
      log.warn('tunnel refused: unknown channel', { cluster: cluster.name, channel: String(channel).slice(0, 64) });
      writeStatusToSocket(socket, 400, `${CHANNEL_HEADER} must be one of ${RELAY_CHANNELS.join(', ')}`);
      return;
    }
    const claimed = req.headers[CLUSTER_HEADER];
    if (claimed !== cluster.name) {
      log.warn('tunnel refused: relay claims another cluster', { keyCluster: cluster.name, claimed });
      writeStatusToSocket(socket, 401, `the connector key is for cluster "${cluster.name}", not "${String(claimed)}"`);
      return;
    }
    const relayVersion = relayVersionOf(req.headers[RELAY_VERSION_HEADER]);
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.register({ cluster: cluster.name, channel, relayVersion }, key!, ws, socket));
  }

  private register({ cluster, channel, relayVersion }: { cluster: string; channel: RelayChannel; relayVersion: string | undefined }, connectorKey: string, ws: WebSocket, transport: Duplex): void {
    const { log } = this.options;
    const connections = channel === 'tunnel' ? this.tunnels : this.controlChannels;
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
    const sessions = connections.get(cluster) ?? [];
    sessions.push(session);
    connections.set(cluster, sessions);
    if (channel === 'tunnel') this.gauges.connected.inc({ cluster });
    const keepalive = new Keepalive(() => session.ping(), () => ws.terminate(), this.options.keepaliveMs);
    ws.on('pong', () => keepalive.alive());
    ws.on('message', () => keepalive.alive());
    keepalive.start();
    session.on('error', (err: Error) => log.warn(sessionErrorSummary(err, 'relay'), { cluster, error: err.message }));
    const record = this.options.records.opened({ cluster, mode: channel === 'tunnel' ? 'tunnel' : 'direct', relayVersion });
    let stated: StatedReadiness | undefined;
    session.on('control', (message: unknown) => {
      const readiness = statedReadiness(message);
      // Readiness said again changes nothing and is not logged again (issue 14: 200 000 of them wrote 37 MB of log).
      if (!readiness || (readiness.ready === stated?.ready && readiness.reason === stated.reason)) return;
      // Only a flip is logged and reroutes, and costs that; a new reason is recorded (writes are batched) and costs its frame.
      const flipped = readiness.ready !== stated?.ready;
      if (flipped && !session.chargeControl(READINESS_CHANGE_COST)) return;
      stated = readiness;
      this.options.records.readiness(record, readiness.ready, readiness.reason);
      if (!flipped) return;
      if (readiness.ready) {
        this.unready.delete(session);
        log.debug('relay ready', { cluster, channel });
      } else {
        this.unready.add(session);
        if (channel === 'tunnel') log.info('relay not ready: it gets requests only while no other relay of its cluster is ready', { cluster, reason: readiness.reason });
        else log.info('direct-mode relay not ready', { cluster, channel, reason: readiness.reason });
      }
    });
    session.on('close', () => {
      keepalive.stop();
      const remaining = (connections.get(cluster) ?? []).filter((s) => s !== session);
      if (remaining.length > 0) connections.set(cluster, remaining);
      else connections.delete(cluster);
      if (channel === 'tunnel') this.gauges.connected.dec({ cluster });
      this.options.records.closed(record);
      log.info(channel === 'tunnel' ? 'tunnel disconnected' : 'control channel disconnected', { cluster });
    });
    if (channel === 'tunnel') log.info('tunnel connected', { cluster, tunnels: sessions.length });
    else log.info('control channel connected: a direct-mode relay, never sent requests', { cluster, controlChannels: sessions.length });
  }
}
