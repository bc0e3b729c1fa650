/**
 * The tunnel hub inside the issuer (DESIGN §4). Relays dial
 * `GET /v1/tunnel` (WebSocket) with their cluster's connector key; the hub
 * derives the cluster from the key and refuses a relay that claims another.
 * Agents reach a tunnelled cluster at `/clusters/<name>/…`: the hub verifies
 * the token (`aud` = that cluster) before anything enters a tunnel, strips
 * the prefix, and hands the request to one of the cluster's relays, which
 * runs its ordinary pipeline on it. The hub keeps no state but live tunnels.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { JSONWebKeySet } from 'jose';
import { Counter, type Registry as MetricsRegistry } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import { type AuditedRequest, auditedRequest, auditRecord } from '../audit/record.js';
import type { AuditSink } from '../audit/sink.js';
import type { Registry } from '../issuer/registry.js';
import type { Cluster } from '../issuer/store.js';
import type { Logger } from '../log.js';
import { writeStatus, writeStatusToSocket } from '../request-stages/errors.js';
import { allowHalfClose, createKubernetesProxy } from '../relay/forward.js';
import { checkRequestTarget } from '../request-stages/request-target.js';
import { validatedUpgrade } from '../request-stages/strip-headers.js';
import { continueIfExpected, discardRefusedBody } from '../request-body.js';
import { type RevocationEntry, RevocationList } from '../request-stages/revocations.js';
import { READINESS_CHANGE_COST, RELAY_CONTROL_BUDGET } from '../tunnel/control-limits.js';
import { AgentAdmission, ClosingTracker, HubRefusal, refusal } from './admission.js';
import { registerTunnelGauges, type TunnelGauges } from './metrics.js';
import { Keepalive } from '../tunnel/keepalive.js';
import { MAX_MESSAGE_BYTES, MAX_STREAMS, MuxSession, sessionErrorSummary } from '../tunnel/mux.js';

export const TUNNEL_PATH = '/v1/tunnel';
/** The relay states its --cluster in this header; the key decides, a mismatch is refused. */
export const CLUSTER_HEADER = 'x-kube-relay-cluster';
/** In the handshake's answer: which hub replica this is, and how many there are (DESIGN §9). */
export const HUB_REPLICA_HEADER = 'x-kube-relay-hub-replica';
export const HUB_REPLICAS_HEADER = 'x-kube-relay-hub-replicas';
/** Kubernetes API paths that arrived without the /clusters/<name> prefix. */
const UNPREFIXED_KUBERNETES_PATH = /^\/(api|apis|version|openapi|healthz|livez|readyz)(\/|\?|$)/;
const UNPREFIXED_MESSAGE =
  'this is the kube-relay hub: Kubernetes API requests go to /clusters/<cluster>/... (kubectl proxy drops that prefix unless run with --append-server-path)';
const CLUSTER_PATH = /^\/clusters\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\/.*)?$/;
/** How often the hub reads revocations (agents and clusters) from the store, where another process may have written them. */
const REGISTRY_WATCH_INTERVAL_MS = 1_000;
/** Revocations older than this are not pushed: every token issued before them has expired. */
const REVOCATION_HORIZON_MS = 10 * 60_000;
const REVOCATIONS_PER_MESSAGE = 256;
/** WebSocket close code for a tunnel whose connector key was revoked while it was connected (4000-4999: private use). */
export const KEY_REVOKED_CLOSE_CODE = 4401;

export interface HubOptions {
  registry: Registry;
  publicUrl: string;
  jwks: () => JSONWebKeySet;
  metrics: MetricsRegistry;
  /** Records of the requests the hub refuses: they never reach a relay's audit trail. */
  audit: AuditSink;
  log: Logger;
  keepaliveMs?: number | undefined;
  /** How long a relay may read nothing while the hub holds bytes for it before its tunnel is closed (default 30 s; tests shorten it). */
  stallTimeoutMs?: number | undefined;
  /** How often revocations are read from the store (default 1 s; tests shorten it). */
  registryWatchMs?: number | undefined;
  /** Streams one tunnel carries at once (default MAX_STREAMS, which relays accept; tests lower it). */
  maxStreamsPerTunnel?: number | undefined;
  /** Requests one agent may have in flight through the hub at once (default DEFAULT_MAX_REQUESTS_PER_AGENT). */
  maxRequestsPerAgent?: number | undefined;
  /** This replica's id and the number of hub replicas behind the public URL (default: one). */
  replica?: { id: string; count: number } | undefined;
}

export class TunnelHub {
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
  private readonly revocations = new RevocationList();
  private readonly admission: AgentAdmission;
  private readonly watchRegistry: NodeJS.Timeout;
  private readonly proxy = createKubernetesProxy({});
  private readonly gauges: TunnelGauges;
  private readonly refusals: Counter;
  private next = 0;
  private closing = false;

  constructor(private readonly options: HubOptions) {
    this.admission = new AgentAdmission({ publicUrl: options.publicUrl, jwks: options.jwks, revocations: this.revocations, log: options.log, maxRequestsPerAgent: options.maxRequestsPerAgent });
    this.gauges = registerTunnelGauges(options.metrics, this.tunnels);
    this.refusals = new Counter({
      name: 'kube_relay_hub_refusals_total',
      help: 'Requests for tunnelled clusters the hub refused before they entered a tunnel, by HTTP code.',
      labelNames: ['code'],
      registers: [options.metrics],
    });
    this.revocations.onRevoked((entry) => {
      for (const session of [...this.tunnels.values()].flat()) session.sendControl({ type: 'revocations', items: [entry] });
    });
    if (options.replica) {
      const { id, count } = options.replica;
      this.wss.on('headers', (headers: string[]) => headers.push(`${HUB_REPLICA_HEADER}: ${id}`, `${HUB_REPLICAS_HEADER}: ${count}`));
    }
    this.watchRegistry = setInterval(() => void this.applyRevocations(), options.registryWatchMs ?? REGISTRY_WATCH_INTERVAL_MS);
    this.watchRegistry.unref();
    void this.applyRevocations();
    // A client that hangs up mid-response (a watch) must end the tunnelled request too; http-proxy only
    // aborts upstream for requests whose body was still arriving.
    this.proxy.on('proxyReq', (proxyReq: http.ClientRequest, _req: IncomingMessage, res: ServerResponse) => {
      const abortIfUnfinished = () => !res.writableFinished && proxyReq.destroy();
      if (res.closed) abortIfUnfinished();
      else res.once('close', abortIfUnfinished);
    });
  }

  /** True when the request is the hub's (a tunnel or a /clusters/ path) and has been handled. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const route = this.route(req);
    if (!route) {
      if (!UNPREFIXED_KUBERNETES_PATH.test(req.url ?? '')) return false;
      discardRefusedBody(req, res);
      writeStatus(res, 404, UNPREFIXED_MESSAGE);
      return true;
    }
    const closes = new ClosingTracker(res);
    this.admit(req, route, closes).then(
      (session) => {
        if (closes.hasClosed) return; // the client left while it was admitted: nothing enters the tunnel
        continueIfExpected(req, res);
        req.url = route.rest;
        this.proxy.web(req, res, { target: 'http://tunnel', agent: this.agentFor(session, req) }, (err) => {
          this.options.log.warn('tunnelled request failed', { cluster: route.cluster, error: err.message });
          writeStatus(res, 502, `the tunnel to cluster "${route.cluster}" broke off`);
        });
      },
      (err: unknown) => {
        const { code, message } = this.refuse(req, route, err);
        discardRefusedBody(req, res);
        writeStatus(res, code, message);
      },
    );
    return true;
  }

  /** True when the upgrade is the hub's and has been handled. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if ((req.url ?? '').split('?')[0] === TUNNEL_PATH) {
      this.acceptTunnel(req, socket, head).catch((err: Error) => {
        this.options.log.error('accepting a tunnel failed', { error: err.message });
        socket.destroy();
      });
      return true;
    }
    const route = this.route(req);
    if (!route) {
      if (!UNPREFIXED_KUBERNETES_PATH.test(req.url ?? '')) return false;
      writeStatusToSocket(socket, 404, UNPREFIXED_MESSAGE);
      return true;
    }
    socket.on('error', () => socket.destroy());
    const closes = new ClosingTracker(socket);
    Promise.resolve()
      .then(() => {
        validatedUpgrade(req.rawHeaders); // h2c and friends never enter a tunnel
        return this.admit(req, route, closes);
      })
      .then(
      (session) => {
        if (closes.hasClosed) return;
        req.url = route.rest;
        allowHalfClose(socket);
        this.proxy.ws(req, socket, head, { target: 'http://tunnel', agent: this.agentFor(session, req) }, () => {
          // Before any answer (the tunnel closed since it was chosen), a Status; after the 101, only the cut.
          if ((socket as Duplex & { bytesWritten?: number }).bytesWritten) socket.destroy();
          else writeStatusToSocket(socket, 502, `the tunnel to cluster "${route.cluster}" broke off`);
        });
      },
      (err: unknown) => {
        const { code, message } = this.refuse(req, route, err);
        writeStatusToSocket(socket, code, message);
      },
    );
    return true;
  }

  /**
   * Hub shutdown: no new tunnels, GOAWAY on every tunnel (relays dial a new
   * one, elsewhere), requests in flight finish; after `drainMs` whatever is
   * still open (watches) is cut.
   */
  async close(drainMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.watchRegistry);
    const sessions = [...this.tunnels.values()].flat();
    await Promise.all(sessions.map((session) => session.drain(drainMs)));
    this.wss.close();
    for (const client of this.wss.clients) client.terminate();
  }

  private route(req: IncomingMessage): { cluster: string; rest: string } | undefined {
    const url = req.url ?? '';
    const queryStart = url.indexOf('?');
    const path = queryStart === -1 ? url : url.slice(0, queryStart);
    const match = CLUSTER_PATH.exec(path);
    if (!match) return undefined;
    return { cluster: match[1]!, rest: `${match[3] ?? '/'}${queryStart === -1 ? '' : url.slice(queryStart)}` };
  }

  /**
   * The target must be one the relay can forward unchanged, the token for
   * this cluster, and the agent within its quota, before anything enters its
   * tunnel; the agent's slot is held until `closes` closes.
   */
  private async admit(req: IncomingMessage, { cluster, rest }: { cluster: string; rest: string }, closes: ClosingTracker): Promise<MuxSession> {
    checkRequestTarget(rest);
    const identity = await this.admission.identify(req, cluster);
    // Only now, so that a caller without a valid token learns nothing of which clusters exist. A
    // connected tunnel proves the cluster exists (its key was checked): the store is asked only without one.
    if (!this.tunnels.has(cluster) && !(await this.options.registry.findCluster(cluster))) throw new HubRefusal(404, 'unknown-cluster', `no cluster named "${cluster}"`, identity);
    // A tunnel whose WebSocket is closing stays listed until its close event; it takes no new streams.
    const sessions = (this.tunnels.get(cluster) ?? []).filter((session) => !session.draining && session.connected);
    if (sessions.length === 0) throw new HubRefusal(503, 'no-tunnel', `cluster "${cluster}" has no relay connected to this hub right now`, identity);
    const open = sessions.filter((session) => !session.full);
    if (open.length === 0) throw new HubRefusal(429, 'tunnel-full', `the tunnel to cluster "${cluster}" carries as many streams as it can; retry when some have finished`, identity);
    // Ready relays first; when none is, one of them answers why (a Status), which beats a guess here.
    const ready = open.filter((session) => !this.unready.has(session));
    const pool = ready.length > 0 ? ready : open;
    this.admission.holdSlot(identity, closes);
    return pool[this.next++ % pool.length]!;
  }

  /**
   * A request that never reaches a relay leaves no record in a relay's audit
   * trail: the hub writes it to its own, in the same shape (the path as the
   * relay would have seen it), and logs why (never the token: the path
   * without the query).
   */
  private refuse(req: IncomingMessage, route: { cluster: string; rest: string }, err: unknown): { code: number; message: string } {
    const refused = refusal(err);
    this.refusals.inc({ code: String(refused.code) });
    if (refused.reason === 'internal-error') this.options.log.error('the hub failed to handle a request', { cluster: route.cluster, error: (err as Error).message });
    else this.options.log.info('request refused at the hub', { cluster: route.cluster, status: refused.code, reason: refused.message, method: req.method, path: (req.url ?? '').split('?')[0], sourceIp: req.socket.remoteAddress });
    const request: AuditedRequest = {
      ...auditedRequest(req, route.cluster, 'tunnel', route.rest, randomUUID()),
      identity: refused.identity,
      status: refused.code,
      decision: refused.code >= 500 ? 'error' : 'denied-by-relay',
      reason: refused.reason,
    };
    this.options.audit.writeIfRoom(auditRecord(request, Date.now()));
    return refused;
  }

  /**
   * Revocations reach the hub through the store (`kube-relay agent revoke`
   * runs in another process): newly revoked agents are refused here at once
   * and pushed to every relay through its tunnel (DESIGN §2), which cuts
   * their live streams; a revoked cluster's tunnels are closed.
   */
  private async applyRevocations(): Promise<void> {
    const { registry, log } = this.options;
    if (this.readingRegistry) return;
    this.readingRegistry = true;
    try {
      const since = new Date(Date.now() - REVOCATION_HORIZON_MS);
      this.revocations.apply((await registry.revocationsSince(since)).map((r) => ({ user: r.subject, revokedAt: r.revokedAt.toISOString() })));
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

  /**
   * An agent that opens one tunnel stream per connection, carrying the
   * client's address for the relay's audit. A tunnel that closed since it
   * was chosen fails the request (the proxy's error handler answers 502)
   * through the callback form of createConnection, not with a throw.
   */
  private agentFor(session: MuxSession, req: IncomingMessage): http.Agent {
    const agent = new http.Agent({ keepAlive: false });
    const remote = { remoteAddress: req.socket.remoteAddress, remotePort: req.socket.remotePort };
    (agent as unknown as { createConnection: (options: unknown, done: (err: Error | null, stream?: Duplex) => void) => undefined }).createConnection = (_options, done) => {
      let stream: Duplex;
      try {
        stream = session.open(remote);
      } catch (err) {
        done(err as Error);
        return undefined;
      }
      done(null, stream);
      return undefined;
    };
    return agent;
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
    const recent: RevocationEntry[] = this.revocations.entries();
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
