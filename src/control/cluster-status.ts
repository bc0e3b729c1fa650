/**
 * A cluster's live status (DESIGN §10, issue 16 item 5): the relays
 * connected to it, each with its mode, the hub replica it is attached to,
 * its version, since when it is connected, when it was last heard of, and
 * whether it is ready (or why not, in its own words); with none, since when
 * the cluster is not connected.
 *
 * Read from the store, where every hub replica records the connections it
 * holds and refreshes them every heartbeat (src/hub/connection-records.ts),
 * so any replica answers for tunnels held by the others. A replica that
 * died without closing its connections stops refreshing them: they count
 * as gone three heartbeats after they were last heard of, and the cluster
 * as not connected since then. Like every control operation, the org check
 * is getCluster's: another org's cluster is not found.
 */
import type { Registry } from '../issuer/registry.js';
import type { RelayConnection } from '../issuer/store.js';
import type { Caller } from './caller.js';
import { getCluster } from './operations.js';

export interface RelayStatus {
  /** The relay's mode: `tunnel`, or `direct` (a direct-mode relay known through its control channel). */
  mode: 'tunnel' | 'direct';
  /** The hub replica the relay's connection is attached to. */
  hubReplica: string;
  /** The relay's kube-relay version; null when it did not say. */
  version: string | null;
  /** ISO 8601. */
  connectedSince: string;
  /** ISO 8601: when its hub replica last confirmed the connection (at most a heartbeat, 10 s, ago) or heard its readiness change. */
  lastHeard: string;
  ready: boolean;
  /** Why it is not ready, as the relay said it (bounded); present only when not ready. */
  reason?: string;
}

export interface ConnectedClusterStatus {
  cluster: string;
  connected: true;
  /** Oldest connection first. */
  relays: RelayStatus[];
}

export interface DisconnectedClusterStatus {
  cluster: string;
  connected: false;
  /** ISO 8601: when its last relay connection ended; when it never had one, when the cluster was created. */
  notConnectedSince: string;
  /** True when no relay connection of the cluster was ever recorded. */
  neverConnected: boolean;
  relays: [];
}

/** The answer of `GET /v1/clusters/{name}/status` and of `kube-relay cluster status NAME --output json`. */
export type ClusterStatus = ConnectedClusterStatus | DisconnectedClusterStatus;

export async function clusterStatus(registry: Registry, caller: Caller, name: string, now: Date = new Date()): Promise<ClusterStatus> {
  const cluster = await getCluster(registry, caller, name);
  const live = await registry.liveRelayConnections(cluster.name, now);
  if (live.length > 0) return { cluster: cluster.name, connected: true, relays: live.map(relayStatus) };
  const endedAt = await registry.relayConnectionsEndedAt(cluster.name);
  return { cluster: cluster.name, connected: false, notConnectedSince: (endedAt ?? cluster.createdAt).toISOString(), neverConnected: endedAt === undefined, relays: [] };
}

function relayStatus(connection: RelayConnection): RelayStatus {
  return {
    mode: connection.mode,
    hubReplica: connection.hubReplica,
    version: connection.relayVersion ?? null,
    connectedSince: connection.connectedAt.toISOString(),
    lastHeard: connection.lastHeardAt.toISOString(),
    ready: connection.ready,
    ...(connection.ready ? {} : { reason: connection.notReadyReason ?? 'the relay did not say why' }),
  };
}
