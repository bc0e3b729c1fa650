/**
 * The relay's side of the tunnel (DESIGN §4): dial the hub out of the
 * cluster, keep the WebSocket alive, reconnect with backoff, and hand every
 * stream the hub opens to the relay's ordinary HTTP server. A hub that
 * refuses the connector key (401), or closes the tunnel because the key was
 * revoked, stops the relay from reconnecting: a revoked key is an
 * operator's decision, not a fault to retry. A hub that
 * says GOAWAY (it is shutting down) gets a new tunnel dialled at once while
 * the old one finishes its streams.
 */
import type { Duplex } from 'node:stream';
import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import WebSocket from 'ws';
import type { Logger } from '../log.js';
import { ReconnectBackoff } from '../backoff.js';
import { Keepalive } from './keepalive.js';
import type { RevocationEntry } from '../relay/revocations.js';
import { CLUSTER_HEADER, KEY_REVOKED_CLOSE_CODE, TUNNEL_PATH } from './hub.js';
import { MAX_MESSAGE_BYTES, MuxSession, type MuxStream } from './mux.js';

export interface ConnectorOptions {
  hubUrl: string;
  cluster: string;
  connectorKey: string;
  /** Trust for the hub (`--issuer-ca-file`). */
  hubCa?: string | Buffer | undefined;
  onStream(stream: MuxStream): void;
  /** Revocations the hub pushed (DESIGN §2). */
  onRevocations?(entries: RevocationEntry[]): void;
  /** The hub refused the connector key (401): the relay will not reconnect. */
  onRefused?(reason: string): void;
  log: Logger;
  metrics: MetricsRegistry;
  backoff?: ReconnectBackoff;
  keepaliveMs?: number | undefined;
}

/** How long a stopping relay lets the streams in flight finish before it cuts them. */
const STOP_DRAIN_MS = 10_000;

export class TunnelConnector {
  /** The tunnel new streams arrive on. */
  private current: { socket: WebSocket; session?: MuxSession } | undefined;
  /** Every tunnel still open, the current one and those draining after a GOAWAY. */
  private readonly sessions = new Set<MuxSession>();
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private refused = false;
  private readonly backoff: ReconnectBackoff;
  private readonly url: string;
  private readonly connectedGauge: Gauge;
  private readonly reconnects: Counter;
  private readonly rtt: Gauge;

  constructor(private readonly options: ConnectorOptions) {
    this.backoff = options.backoff ?? new ReconnectBackoff();
    const hub = new URL(options.hubUrl);
    if (hub.protocol !== 'https:' && hub.protocol !== 'http:') throw new Error(`--hub ${options.hubUrl} is not an https URL`);
    hub.protocol = hub.protocol === 'https:' ? 'wss:' : 'ws:';
    hub.pathname = TUNNEL_PATH;
    this.url = hub.toString();
    const registers = [options.metrics];
    this.connectedGauge = new Gauge({ name: 'kube_relay_tunnel_connected', help: '1 while the tunnel to the hub is up.', registers });
    this.reconnects = new Counter({ name: 'kube_relay_tunnel_reconnects_total', help: 'Tunnel connections dialled after the first.', registers });
    this.rtt = new Gauge({ name: 'kube_relay_tunnel_rtt_seconds', help: 'Round trip of the last tunnel ping.', registers });
    const sessions = this.sessions;
    new Gauge({
      name: 'kube_relay_tunnel_open_streams',
      help: 'Streams open on this relay\'s tunnels.',
      registers,
      collect() {
        this.set([...sessions].reduce((sum, session) => sum + session.openStreams, 0));
      },
    });
  }

  get connected(): boolean {
    return this.current?.session !== undefined && !this.current.session.draining;
  }

  /** Why the relay is not connected, for /readyz. */
  get state(): string {
    if (this.refused) return 'the hub refused the connector key';
    return this.connected ? 'connected' : 'connecting to the hub';
  }

  start(): void {
    this.connect();
  }

  /** Stops dialling, tells the hub GOAWAY and lets the streams in flight finish (up to `drainMs`). */
  async stop(drainMs = STOP_DRAIN_MS): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.current && !this.current.session) this.current.socket.terminate();
    await Promise.all([...this.sessions].map((session) => session.drain(drainMs)));
  }

  private connect(): void {
    const { log } = this.options;
    const socket = new WebSocket(this.url, {
      headers: { authorization: `Bearer ${this.options.connectorKey}`, [CLUSTER_HEADER]: this.options.cluster },
      ...(this.options.hubCa ? { ca: this.options.hubCa } : {}),
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: 10_000,
    });
    const tunnel: { socket: WebSocket; session?: MuxSession } = { socket };
    this.current = tunnel;
    let openedAt: number | undefined;
    let transport: Duplex | undefined;
    socket.on('upgrade', (response) => (transport = response.socket));
    socket.on('unexpected-response', (_req, res) => {
      // Decided now, before 'close' schedules a reconnect; the body only explains it.
      if (res.statusCode === 401) this.refused = true;
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        let reason = body;
        try {
          reason = (JSON.parse(body) as { message?: string }).message ?? body;
        } catch {
          // not a Status body: keep the text
        }
        if (this.refused) {
          log.error('the hub refused this relay; not reconnecting until restarted with a valid connector key', { status: 401, reason });
          this.options.onRefused?.(reason);
        } else log.warn('the hub did not accept the tunnel', { status: res.statusCode, reason });
        socket.terminate();
      });
    });
    socket.on('open', () => {
      openedAt = Date.now();
      const session = new MuxSession(socket, { role: 'server', ...(transport ? { transport } : {}) });
      let pingSentAt = 0;
      const keepalive = new Keepalive(
        () => {
          pingSentAt = performance.now();
          socket.ping();
        },
        () => {
          log.warn('the hub stopped answering pings; reconnecting', { hub: this.options.hubUrl });
          socket.terminate();
        },
        this.options.keepaliveMs,
      );
      socket.on('pong', () => {
        if (pingSentAt > 0) this.rtt.set((performance.now() - pingSentAt) / 1000);
        keepalive.alive();
      });
      socket.on('message', () => keepalive.alive());
      keepalive.start();
      session.on('stream', (stream: MuxStream) => this.options.onStream(stream));
      session.on('control', (message: { type?: unknown; items?: unknown }) => {
        if (message?.type === 'revocations' && Array.isArray(message.items)) this.options.onRevocations?.(message.items as RevocationEntry[]);
      });
      session.on('error', (err: Error) => log.warn('tunnel protocol error', { error: err.message }));
      session.on('goaway', () => {
        if (this.current !== tunnel || this.stopped) return;
        log.info('the hub is draining this tunnel; dialling a new one', { hub: this.options.hubUrl });
        this.connectedGauge.set(0);
        this.reconnects.inc();
        this.connect();
      });
      session.on('close', () => {
        keepalive.stop();
        this.sessions.delete(session);
      });
      this.sessions.add(session);
      tunnel.session = session;
      this.connectedGauge.set(1);
      log.info('tunnel connected', { hub: this.options.hubUrl });
    });
    socket.on('error', (err) => log.debug('tunnel socket error', { error: err.message }));
    socket.on('close', (code: number, reason: Buffer) => {
      if (code === KEY_REVOKED_CLOSE_CODE) {
        this.refused = true;
        log.error('the hub closed the tunnel: this cluster\'s connector key was revoked; not reconnecting', { reason: reason.toString() });
        this.options.onRefused?.(reason.toString());
      }
      if (openedAt !== undefined) {
        this.backoff.connectionEnded(Date.now() - openedAt);
        log.warn('tunnel disconnected', { hub: this.options.hubUrl });
      }
      // A tunnel drained after a GOAWAY has been replaced already.
      if (this.current !== tunnel) return;
      this.current = undefined;
      this.connectedGauge.set(0);
      if (this.stopped || this.refused) return;
      const delay = this.backoff.nextDelayMs();
      log.info('reconnecting to the hub', { inMs: delay });
      this.retry = setTimeout(() => {
        this.reconnects.inc();
        this.connect();
      }, delay);
      this.retry.unref();
    });
  }
}
