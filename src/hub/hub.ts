/**
 * The tunnel hub inside the issuer (DESIGN §4): a front door of its own.
 * Relays dial `GET /v1/tunnel` (WebSocket) with their cluster's connector
 * key (relay-tunnels.ts); agents reach a tunnelled cluster at
 * `/clusters/<name>/…` (agent-requests.ts), admitted here before anything
 * enters a tunnel (admission.ts) with the same stages the relay runs
 * (src/request-stages). The tunnel itself is only a transport
 * (src/tunnel). The hub keeps no state but live tunnels, which it records
 * in the store (connection-records.ts) so that any replica can tell a
 * cluster's status.
 */
import type { IncomingMessage } from 'node:http';
import type { ApiRequest, ApiResponse } from '../http-messages.js';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import type { JSONWebKeySet } from 'jose';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { AuditSink } from '../audit/sink.js';
import type { Registry } from '../issuer/registry.js';
import type { Logger } from '../log.js';
import { RevocationList } from '../request-stages/revocations.js';
import { TUNNEL_PATH } from '../tunnel/handshake.js';
import { AgentAdmission } from './admission.js';
import { AgentRequests } from './agent-requests.js';
import { ConnectionRecords } from './connection-records.js';
import { RelayTunnels } from './relay-tunnels.js';

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
  /** This replica's id and the number of hub replicas behind the public URL (default: one, named after the host). */
  replica?: { id: string; count: number } | undefined;
  /** How often the store's record of the relay connections held here is refreshed (default RELAY_HEARTBEAT_MS; tests shorten it). */
  relayHeartbeatMs?: number | undefined;
}

export class TunnelHub {
  private readonly tunnels: RelayTunnels;
  private readonly agents: AgentRequests;
  private readonly records: ConnectionRecords;

  constructor(options: HubOptions) {
    const { registry, metrics, log } = options;
    const revocations = new RevocationList();
    this.records = new ConnectionRecords({ store: registry, hubReplica: options.replica?.id ?? hostname(), heartbeatMs: options.relayHeartbeatMs, log });
    this.tunnels = new RelayTunnels({
      registry,
      revocations,
      metrics,
      records: this.records,
      log,
      keepaliveMs: options.keepaliveMs,
      stallTimeoutMs: options.stallTimeoutMs,
      registryWatchMs: options.registryWatchMs,
      maxStreamsPerTunnel: options.maxStreamsPerTunnel,
      replica: options.replica,
    });
    const admission = new AgentAdmission({ publicUrl: options.publicUrl, jwks: options.jwks, revocations, log, maxRequestsPerAgent: options.maxRequestsPerAgent });
    this.agents = new AgentRequests({ registry, tunnels: this.tunnels, admission, metrics, audit: options.audit, log });
  }

  /** True when the request is the hub's (a /clusters/ path) and has been handled. */
  handleRequest(req: ApiRequest, res: ApiResponse): boolean {
    return this.agents.handleRequest(req, res);
  }

  /** True when the upgrade is the hub's (a tunnel, or a /clusters/ path) and has been handled. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if ((req.url ?? '').split('?')[0] === TUNNEL_PATH) {
      this.tunnels.accept(req, socket, head);
      return true;
    }
    return this.agents.handleUpgrade(req, socket, head);
  }

  /** A grant of `cluster` was added or removed: its relays connected to this replica read their grants at once (DESIGN §11). */
  notifyGrantsChanged(cluster: string): void {
    this.tunnels.notifyGrantsChanged(cluster);
  }

  /**
   * Hub shutdown: no new tunnels, GOAWAY on every tunnel (relays dial a new
   * one, elsewhere), requests in flight finish; after `drainMs` whatever is
   * still open (watches) is cut.
   */
  async close(drainMs: number): Promise<void> {
    await this.tunnels.close(drainMs);
    await this.records.stop();
  }
}
