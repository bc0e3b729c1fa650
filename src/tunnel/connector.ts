/**
 * The relay's side of the tunnel (DESIGN §4): dial the hub out of the
 * cluster, keep the WebSocket alive, reconnect with backoff, and hand every
 * stream the hub opens to the relay's ordinary HTTP server. A hub that
 * refuses the connector key (401) stops the relay from reconnecting: a
 * revoked key is an operator's decision, not a fault to retry.
 */
import WebSocket from 'ws';
import type { Logger } from '../log.js';
import { Keepalive, ReconnectBackoff } from './backoff.js';
import { CLUSTER_HEADER, TUNNEL_PATH } from './hub.js';
import { MuxSession, type MuxStream } from './mux.js';

export interface ConnectorOptions {
  hubUrl: string;
  cluster: string;
  connectorKey: string;
  /** Trust for the hub (`--issuer-ca-file`). */
  hubCa?: string | Buffer | undefined;
  onStream(stream: MuxStream): void;
  log: Logger;
  backoff?: ReconnectBackoff;
  keepaliveMs?: number;
}

export class TunnelConnector {
  private socket: WebSocket | undefined;
  private session: MuxSession | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private refused = false;
  private readonly backoff: ReconnectBackoff;
  private readonly url: string;

  constructor(private readonly options: ConnectorOptions) {
    this.backoff = options.backoff ?? new ReconnectBackoff();
    const hub = new URL(options.hubUrl);
    if (hub.protocol !== 'https:' && hub.protocol !== 'http:') throw new Error(`--hub ${options.hubUrl} is not an https URL`);
    hub.protocol = hub.protocol === 'https:' ? 'wss:' : 'ws:';
    hub.pathname = TUNNEL_PATH;
    this.url = hub.toString();
  }

  get connected(): boolean {
    return this.session !== undefined && !this.session.draining;
  }

  /** Why the relay is not connected, for /readyz. */
  get state(): string {
    if (this.refused) return 'the hub refused the connector key';
    return this.connected ? 'connected' : 'connecting to the hub';
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.socket?.close();
  }

  private connect(): void {
    const { log } = this.options;
    const socket = new WebSocket(this.url, {
      headers: { authorization: `Bearer ${this.options.connectorKey}`, [CLUSTER_HEADER]: this.options.cluster },
      ...(this.options.hubCa ? { ca: this.options.hubCa } : {}),
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    });
    this.socket = socket;
    let openedAt: number | undefined;
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
        if (this.refused) log.error('the hub refused this relay; not reconnecting until restarted with a valid connector key', { status: 401, reason });
        else log.warn('the hub did not accept the tunnel', { status: res.statusCode, reason });
        socket.terminate();
      });
    });
    socket.on('open', () => {
      openedAt = Date.now();
      const session = new MuxSession(socket, { role: 'server' });
      const keepalive = new Keepalive(() => socket.ping(), () => socket.terminate(), this.options.keepaliveMs);
      socket.on('pong', () => keepalive.alive());
      socket.on('message', () => keepalive.alive());
      keepalive.start();
      session.on('stream', (stream: MuxStream) => this.options.onStream(stream));
      session.on('error', (err: Error) => log.warn('tunnel protocol error', { error: err.message }));
      session.on('close', () => keepalive.stop());
      this.session = session;
      log.info('tunnel connected', { hub: this.options.hubUrl });
    });
    socket.on('error', (err) => log.debug('tunnel socket error', { error: err.message }));
    socket.on('close', () => {
      this.session = undefined;
      if (openedAt !== undefined) {
        this.backoff.connectionEnded(Date.now() - openedAt);
        log.warn('tunnel disconnected', { hub: this.options.hubUrl });
      }
      if (this.stopped || this.refused) return;
      const delay = this.backoff.nextDelayMs();
      log.info('reconnecting to the hub', { inMs: delay });
      this.retry = setTimeout(() => this.connect(), delay);
      this.retry.unref();
    });
  }
}
