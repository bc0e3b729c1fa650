/**
 * The relay's side of the tunnel (DESIGN §4): dial the hub out of the
 * cluster, keep the WebSocket alive, reconnect with backoff, and hand every
 * stream the hub opens to the relay's ordinary HTTP server. A hub that
 * refuses the connector key (401), or closes the tunnel because the key was
 * revoked, stops the relay from reconnecting: a revoked key is an
 * operator's decision, not a fault to retry. A hub that says GOAWAY (it is
 * shutting down) gets a new tunnel dialled at once while the old one
 * finishes its streams. Anything else is retried for as long as the relay
 * runs (a pending redial holds the process open), and each failed dial is
 * logged with its cause (dial-failures.ts).
 *
 * Several hub replicas behind one load balancer (DESIGN §9): each tells its
 * replica id and the replica count in the handshake, and the relay keeps
 * one tunnel per distinct replica, as Konnectivity agents do, so whichever
 * replica an agent's request lands on holds a tunnel to this cluster. A
 * dial that lands on a replica already held is closed and tried again.
 *
 * A direct-mode relay given a connector key dials the same way for a
 * control channel (`channel: 'control'`, said in the handshake): the hub
 * pushes revocations down it and knows the relay is there, but opens no
 * stream on it, and this end refuses one if it tried.
 */
import type { Duplex } from 'node:stream';
import type { Counter, Gauge, Registry as MetricsRegistry } from 'prom-client';
import WebSocket from 'ws';
import { ReconnectBackoff } from '../backoff.js';
import type { Logger } from '../log.js';
import type { RevocationEntry } from '../request-stages/revocations.js';
import { registerConnectorMetrics } from './connector-metrics.js';
import { DialFailureLog, type DialFailure, type DialTarget, dialErrorFailure, httpStatusFailure, tunnelDroppedFailure } from './dial-failures.js';
import { CHANNEL_HEADER, CLUSTER_HEADER, HUB_REPLICA_HEADER, HUB_REPLICAS_HEADER, KEY_REVOKED_CLOSE_CODE, RELAY_VERSION_HEADER, type RelayChannel, TUNNEL_PATH } from './handshake.js';
import { Keepalive } from './keepalive.js';
import { MAX_MESSAGE_BYTES, MuxSession, type MuxStream, sessionErrorSummary } from './mux.js';

export interface RelayReadiness {
  ready: boolean;
  /** Why not, when not ready: "waiting for …". */
  reason?: string;
}

export interface ConnectorOptions {
  hubUrl: string;
  cluster: string;
  connectorKey: string;
  /** Trust for the hub (`--issuer-ca-file`). */
  hubCa?: string | Buffer | undefined;
  /** Where hubCa came from, for the log of a failed TLS handshake: "the CA file /etc/ca.crt (--issuer-ca-file)". */
  hubCaDescription?: string | undefined;
  /** `tunnel` (default): agents' requests arrive as streams; `control`: a direct-mode relay's control channel, which takes none. */
  channel?: RelayChannel;
  /** This relay's version, told to the hub in the handshake. */
  version?: string;
  /** Each stream the hub opens (a tunnel only). */
  onStream?(stream: MuxStream): void;
  /** Revocations the hub pushed (DESIGN §2). */
  onRevocations?(entries: RevocationEntry[]): void;
  /** The hub says the cluster's grants changed (central grants read them now). */
  onGrantsChanged?(): void;
  /** The hub refused the connector key (401): the relay will not reconnect. */
  onRefused?(reason: string): void;
  /** Whether the relay can serve requests now, and why not (told to the hub, which prefers ready relays and shows it in cluster status). */
  readiness?(): RelayReadiness;
  log: Logger;
  metrics: MetricsRegistry;
  /** Reconnect timing, one per tunnel (tests shorten it). */
  backoff?: () => ReconnectBackoff;
  keepaliveMs?: number | undefined;
}

/** How long a stopping relay lets the streams in flight finish before it cuts them. */
const STOP_DRAIN_MS = 10_000;
/** Redial timing after landing on a hub replica another tunnel already holds (the load balancer's choice). */
const DUPLICATE_BACKOFF = { initialMs: 1_000, maxMs: 30_000 };
/** How often the relay's readiness is checked for a change worth telling the hub. */
const READINESS_POLL_MS = 1_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Bytes of a refusing hub's answer kept to explain it (a Status body is far smaller). */
const MAX_REFUSAL_BODY_BYTES = 4_096;

export class TunnelConnector {
  private readonly links: TunnelLink[] = [];
  /** Hub replica id → the link whose tunnel reaches it. */
  private readonly held = new Map<string, TunnelLink>();
  /** Hub replicas, as the last handshake told. */
  private replicas = 1;
  private refused = false;
  private readiness: RelayReadiness = { ready: true };
  private readinessPoll: NodeJS.Timeout | undefined;
  readonly url: string;
  readonly channel: RelayChannel;
  /** The hub as dialled, for the log of a failed dial. */
  readonly dialTarget: DialTarget;
  /** Every tunnel still open, current or draining after a GOAWAY. */
  readonly sessions = new Set<MuxSession>();
  readonly reconnects: Counter;
  readonly rtt: Gauge;

  constructor(readonly options: ConnectorOptions) {
    this.channel = options.channel ?? 'tunnel';
    const hub = new URL(options.hubUrl);
    if (hub.protocol !== 'https:' && hub.protocol !== 'http:') throw new Error(`--hub ${options.hubUrl} is not an https URL`);
    hub.protocol = hub.protocol === 'https:' ? 'wss:' : 'ws:';
    hub.pathname = TUNNEL_PATH;
    this.url = hub.toString();
    this.dialTarget = {
      address: `${hub.hostname}:${hub.port || (hub.protocol === 'wss:' ? 443 : 80)}`,
      trust: options.hubCaDescription ?? (options.hubCa ? 'the CA given with --issuer-ca-file' : 'the system roots'),
      caGiven: options.hubCa !== undefined,
      handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    };
    const connector = this;
    const metrics = registerConnectorMetrics(options.metrics, {
      get heldReplicas() {
        return connector.held.size;
      },
      get replicas() {
        return connector.replicas;
      },
      sessions: this.sessions,
    });
    this.reconnects = metrics.reconnects;
    this.rtt = metrics.rtt;
  }

  /** Ready: at least one tunnel takes new streams. */
  get connected(): boolean {
    return this.links.some((link) => link.connected);
  }

  /** Why the relay is not connected, for /readyz. */
  get state(): string {
    if (this.refused) return 'the hub refused the connector key';
    if (!this.connected) return 'connecting to the hub';
    return this.replicas > 1 ? `connected to ${this.held.size} of ${this.replicas} hub replicas` : 'connected';
  }

  start(): void {
    this.addLink();
    const { readiness } = this.options;
    if (!readiness) return;
    this.readiness = readiness();
    this.readinessPoll = setInterval(() => {
      const now = readiness();
      if (now.ready === this.readiness.ready && now.reason === this.readiness.reason) return;
      this.readiness = now;
      for (const session of this.sessions) this.tellReadiness(session);
    }, READINESS_POLL_MS);
    this.readinessPoll.unref();
  }

  /**
   * In tunnel mode the hub is the relays' load balancer: like a Service,
   * which sends nothing to a pod that is not ready, it prefers the relays
   * that say they are.
   */
  tellReadiness(session: MuxSession): void {
    if (!this.options.readiness) return;
    const { ready, reason } = this.readiness;
    session.sendControl({ type: 'ready', ready, ...(ready || reason === undefined ? {} : { reason }) });
  }

  /** Stops dialling, tells the hub GOAWAY and lets the streams in flight finish (up to `drainMs`). */
  async stop(drainMs = STOP_DRAIN_MS): Promise<void> {
    if (this.readinessPoll) clearInterval(this.readinessPoll);
    for (const link of this.links) link.stop();
    await Promise.all([...this.sessions].map((session) => session.drain(drainMs)));
  }

  /**
   * A link's tunnel reached hub replica `replica` of `replicas`: true if it
   * may keep it (no other link holds that replica). Dials more links when
   * the hub says there are more replicas than links.
   */
  claim(link: TunnelLink, replica: string, replicas: number): boolean {
    if (replicas !== this.replicas) this.options.log.info('the hub has replicas: keeping a tunnel to each', { replicas });
    this.replicas = replicas;
    while (this.links.length < replicas && !this.refused) this.addLink();
    const holder = this.held.get(replica);
    if (holder && holder !== link) return false;
    this.held.set(replica, link);
    return true;
  }

  release(link: TunnelLink, replica: string): void {
    if (this.held.get(replica) === link) this.held.delete(replica);
  }

  /** A link without a tunnel that the hub's replica count no longer calls for stops for good. */
  retire(link: TunnelLink): boolean {
    if (this.links.length <= this.replicas) return false;
    this.links.splice(this.links.indexOf(link), 1);
    return true;
  }

  refuse(reason: string): void {
    if (this.refused) return;
    this.refused = true;
    for (const link of this.links) link.stop();
    this.options.onRefused?.(reason);
  }

  get isRefused(): boolean {
    return this.refused;
  }

  private addLink(): void {
    const link = new TunnelLink(this, this.links.length);
    this.links.push(link);
    if (this.links.length > 1) this.reconnects.inc();
    link.connect();
  }
}

/** One tunnel slot: dials, keeps its tunnel alive, and redials after it ends. */
class TunnelLink {
  /** The tunnel new streams arrive on. */
  private current: { socket: WebSocket; session?: MuxSession } | undefined;
  /**
   * The pending redial. Left ref'd on purpose: between two dials it is all
   * that keeps a relay without an admin listener from exiting, and stop()
   * clears it.
   */
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly backoff: ReconnectBackoff;
  private readonly duplicateBackoff = new ReconnectBackoff(DUPLICATE_BACKOFF);
  private readonly log: Logger;
  private readonly failures: DialFailureLog;

  constructor(
    private readonly connector: TunnelConnector,
    index: number,
  ) {
    const { options } = connector;
    this.backoff = options.backoff?.() ?? new ReconnectBackoff();
    this.log = index === 0 ? options.log : options.log.child({ tunnel: index });
    this.failures = new DialFailureLog(this.log, options.hubUrl);
  }

  get connected(): boolean {
    return this.current?.session !== undefined && !this.current.session.draining;
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.current && !this.current.session) this.current.socket.terminate();
  }

  connect(): void {
    const { options } = this.connector;
    const log = this.log;
    const socket = new WebSocket(this.connector.url, {
      headers: {
        authorization: `Bearer ${options.connectorKey}`,
        [CLUSTER_HEADER]: options.cluster,
        [CHANNEL_HEADER]: this.connector.channel,
        ...(options.version ? { [RELAY_VERSION_HEADER]: options.version } : {}),
      },
      ...(options.hubCa ? { ca: options.hubCa } : {}),
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    const tunnel: { socket: WebSocket; session?: MuxSession } = { socket };
    this.current = tunnel;
    let openedAt: number | undefined;
    let transport: Duplex | undefined;
    let replica = '';
    let duplicate = false;
    /** Why this dial failed, or why its open tunnel ended: the first sign wins, later errors are its consequences. */
    let failure: DialFailure | undefined;
    let dropCause: string | undefined;
    socket.on('upgrade', (response) => {
      transport = response.socket;
      replica = String(response.headers[HUB_REPLICA_HEADER] ?? '');
      const replicas = Number(response.headers[HUB_REPLICAS_HEADER]);
      duplicate = !this.connector.claim(this, replica, Number.isInteger(replicas) && replicas >= 1 ? replicas : 1);
    });
    socket.on('unexpected-response', (_req, res) => {
      // Decided now, before 'close' schedules a reconnect; the body only explains it.
      const refused = res.statusCode === 401;
      let body = '';
      res.on('data', (chunk: Buffer) => {
        if (body.length < MAX_REFUSAL_BODY_BYTES) body += chunk.toString();
      });
      res.on('end', () => {
        let reason = body;
        try {
          reason = (JSON.parse(body) as { message?: string }).message ?? body;
        } catch {
          // not a Status body: keep the text
        }
        if (refused) {
          log.error('the hub refused this relay; not reconnecting until restarted with a valid connector key', { status: 401, reason });
          this.connector.refuse(reason);
        } else failure ??= httpStatusFailure(res.statusCode ?? 0, reason);
        socket.terminate();
      });
      if (refused) this.stopped = true;
    });
    socket.on('open', () => {
      if (duplicate) {
        log.debug('this tunnel reached a hub replica another one holds; dialling again', { replica });
        socket.close(1000, 'the relay holds a tunnel to this hub replica already');
        return;
      }
      openedAt = Date.now();
      this.duplicateBackoff.reset();
      const session = new MuxSession(socket, { role: 'server', acceptStreams: this.connector.channel === 'tunnel', ...(transport ? { transport } : {}) });
      let pingSentAt = 0;
      const keepalive = new Keepalive(
        () => {
          pingSentAt = performance.now();
          socket.ping();
        },
        () => {
          dropCause ??= 'the hub stopped answering pings';
          socket.terminate();
        },
        options.keepaliveMs,
      );
      socket.on('pong', () => {
        if (pingSentAt > 0) this.connector.rtt.set((performance.now() - pingSentAt) / 1000);
        keepalive.alive();
      });
      socket.on('message', () => keepalive.alive());
      keepalive.start();
      session.on('stream', (stream: MuxStream) => (options.onStream ? options.onStream(stream) : stream.destroy()));
      session.on('control', (message: { type?: unknown; items?: unknown }) => {
        if (message?.type === 'revocations' && Array.isArray(message.items)) options.onRevocations?.(message.items as RevocationEntry[]);
        else if (message?.type === 'grants-changed') options.onGrantsChanged?.();
      });
      session.on('error', (err: Error) => {
        dropCause ??= err.message;
        log.warn(sessionErrorSummary(err, 'hub'), { error: err.message });
      });
      session.on('goaway', () => {
        if (this.current !== tunnel || this.stopped) return;
        log.info('the hub is draining this tunnel; dialling a new one', { hub: options.hubUrl });
        this.connector.release(this, replica);
        this.connector.reconnects.inc();
        this.connect();
      });
      session.on('close', () => {
        keepalive.stop();
        this.connector.sessions.delete(session);
      });
      this.connector.sessions.add(session);
      this.connector.tellReadiness(session);
      tunnel.session = session;
      this.failures.connected(replica ? { replica } : {});
    });
    socket.on('error', (err) => {
      log.debug('tunnel socket error', { error: err.message });
      if (openedAt === undefined) failure ??= dialErrorFailure(err, this.connector.dialTarget);
      else dropCause ??= `the connection failed (${(err as { code?: unknown }).code ?? 'error'}: ${err.message})`;
    });
    socket.on('close', (code: number, reason: Buffer) => {
      if (code === KEY_REVOKED_CLOSE_CODE) {
        log.error("the hub closed the tunnel: this cluster's connector key was revoked; not reconnecting", { reason: reason.toString() });
        this.connector.refuse(reason.toString());
      }
      if (openedAt !== undefined) this.backoff.connectionEnded(Date.now() - openedAt);
      // A tunnel drained after a GOAWAY has been replaced already.
      if (this.current !== tunnel) {
        if (openedAt !== undefined) log.info('a drained tunnel closed', { hub: options.hubUrl });
        return;
      }
      this.current = undefined;
      if (!duplicate) this.connector.release(this, replica);
      if (this.stopped || this.connector.isRefused || this.connector.retire(this)) {
        if (openedAt !== undefined) log.info('tunnel closed', { hub: options.hubUrl });
        return;
      }
      const delay = duplicate ? this.duplicateBackoff.nextDelayMs() : this.backoff.nextDelayMs();
      if (!duplicate) {
        const why =
          openedAt !== undefined
            ? tunnelDroppedFailure(code, reason.toString(), dropCause)
            : (failure ?? dialErrorFailure(new Error(`the connection closed before the tunnel opened (WebSocket close ${code})`), this.connector.dialTarget));
        this.failures.failed(why, delay);
      }
      this.retry = setTimeout(() => {
        this.connector.reconnects.inc();
        this.connect();
      }, delay);
    });
  }
}
