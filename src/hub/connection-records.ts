/**
 * What this hub replica tells the store about the relay connections it
 * holds, so that any replica can answer a cluster's status (DESIGN §9, §10)
 * without asking the others: a row when a relay connects, when its stated
 * readiness changes and when it goes, written at once; and every heartbeat
 * ONE transaction that refreshes "last heard" on every connection held,
 * however many there are (never a write per tunnel per message).
 *
 * Writes go one batch at a time, so a burst of connections (every relay
 * redialling after a hub restart) becomes a few transactions, and a later
 * state of a connection never lands before an earlier one. A replica that
 * dies leaves its rows unrefreshed: readers treat them as gone after three
 * heartbeats (the store's liveRelayConnections), so nothing here has to
 * survive a crash. A write that fails is retried with the next heartbeat;
 * tunnels never wait for the store nor fail with it, and the status is
 * then stale, which its "last heard" shows.
 */
import { randomUUID } from 'node:crypto';
import type { Registry } from '../issuer/registry.js';
import type { RelayConnection } from '../issuer/store.js';
import type { Logger } from '../log.js';

/** How often the replica refreshes "last heard" (readers count a connection gone after three of these). */
export const RELAY_HEARTBEAT_MS = 10_000;
/** Ended connections older than this are purged, but each cluster's latest (it says since when the cluster is not connected). */
const PURGE_AFTER_MS = 60 * 60_000;
const PURGE_EVERY_MS = 10 * 60_000;
/**
 * Ended connections kept for writing while the store does not answer. Past
 * this many the oldest are let go: their rows, refreshed by nobody, go stale
 * by themselves.
 */
const MAX_UNWRITTEN_ENDS = 10_000;
/** What a connection's row says until its relay states its readiness (it does so as soon as the tunnel opens). */
export const READINESS_NOT_YET_STATED = 'the relay has not said yet whether it is ready';

export type ConnectionStore = Pick<Registry, 'saveRelayConnections' | 'touchRelayConnections' | 'purgeRelayConnections'>;

export interface ConnectionRecordsOptions {
  store: ConnectionStore;
  hubReplica: string;
  log: Logger;
  heartbeatMs?: number | undefined;
  now?: () => Date;
}

export class ConnectionRecords {
  /** Connections held, and ended ones whose end is not written yet. */
  private readonly connections = new Map<string, RelayConnection>();
  /** Connections whose latest state the store does not have. */
  private readonly unwritten = new Set<string>();
  private readonly unwrittenEnds = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  private writeQueued = false;
  private failing = false;
  private stopped = false;
  private lastPurge = 0;
  private readonly heartbeatMs: number;
  private readonly now: () => Date;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: ConnectionRecordsOptions) {
    this.heartbeatMs = options.heartbeatMs ?? RELAY_HEARTBEAT_MS;
    this.now = options.now ?? (() => new Date());
    this.lastPurge = this.now().getTime() - PURGE_EVERY_MS; // the first heartbeat purges what an earlier run left
    this.timer = setInterval(() => this.enqueue(() => this.heartbeat()), this.heartbeatMs);
    this.timer.unref();
  }

  /** A relay connected; returns the id its row goes by. */
  opened(connection: { cluster: string; mode: RelayConnection['mode']; relayVersion?: string | undefined }): string {
    const at = this.now();
    const id = randomUUID();
    this.connections.set(id, {
      id,
      cluster: connection.cluster,
      hubReplica: this.options.hubReplica,
      mode: connection.mode,
      relayVersion: connection.relayVersion,
      connectedAt: at,
      lastHeardAt: at,
      heartbeatMs: this.heartbeatMs,
      ready: false,
      notReadyReason: READINESS_NOT_YET_STATED,
    });
    this.changed(id);
    return id;
  }

  /** The relay stated its readiness anew (the hub calls this only on a change). */
  readiness(id: string, ready: boolean, reason: string | undefined): void {
    const connection = this.connections.get(id);
    if (!connection || connection.disconnectedAt) return;
    connection.ready = ready;
    connection.notReadyReason = ready ? undefined : reason;
    connection.lastHeardAt = this.now();
    this.changed(id);
  }

  closed(id: string): void {
    const connection = this.connections.get(id);
    if (!connection || connection.disconnectedAt) return;
    connection.disconnectedAt = connection.lastHeardAt = this.now();
    this.unwrittenEnds.add(id);
    this.changed(id);
    for (const oldest of this.unwrittenEnds) {
      if (this.unwrittenEnds.size <= MAX_UNWRITTEN_ENDS) break;
      this.forget(oldest);
    }
  }

  /** The hub stops: every connection it still holds ends now, and the last writes are made (once; a failure is logged). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    clearInterval(this.timer);
    for (const connection of [...this.connections.values()]) this.closed(connection.id);
    this.stopped = true;
    this.failing = false; // one last try, whatever the heartbeats saw
    this.enqueue(async () => void (await this.writeUnwritten()));
    await this.queue;
  }

  private changed(id: string): void {
    this.unwritten.add(id);
    // While the store fails, writes wait for the heartbeat instead of each trying (and waiting on) it.
    if (this.failing || this.writeQueued || this.stopped) return;
    this.writeQueued = true;
    this.enqueue(async () => {
      this.writeQueued = false;
      await this.writeUnwritten();
    });
  }

  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: Error) => this.options.log.error('recording relay connections failed', { error: err.message }));
  }

  /** Writes the latest state of every connection the store lacks, in batches; false when the store failed. */
  private async writeUnwritten(): Promise<boolean> {
    while (this.unwritten.size > 0) {
      const batch = [...this.unwritten].flatMap((id) => {
        const connection = this.connections.get(id);
        return connection ? [{ ...connection }] : [];
      });
      this.unwritten.clear();
      try {
        await this.options.store.saveRelayConnections(batch);
      } catch (err) {
        for (const { id } of batch) if (this.connections.has(id)) this.unwritten.add(id);
        this.failed(err as Error);
        return false;
      }
      this.succeeded();
      for (const { id } of batch) if (this.connections.get(id)?.disconnectedAt && !this.unwritten.has(id)) this.forget(id);
    }
    return true;
  }

  private async heartbeat(): Promise<void> {
    if (!(await this.writeUnwritten())) return;
    const at = this.now();
    const held = [...this.connections.values()].filter((connection) => !connection.disconnectedAt);
    try {
      await this.options.store.touchRelayConnections(held.map((connection) => connection.id), at);
      for (const connection of held) connection.lastHeardAt = at;
      if (at.getTime() - this.lastPurge >= PURGE_EVERY_MS) {
        this.lastPurge = at.getTime();
        await this.options.store.purgeRelayConnections(new Date(at.getTime() - PURGE_AFTER_MS));
      }
    } catch (err) {
      this.failed(err as Error);
      return;
    }
    this.succeeded();
  }

  private forget(id: string): void {
    this.connections.delete(id);
    this.unwritten.delete(id);
    this.unwrittenEnds.delete(id);
  }

  /** Said once per outage, not once per write. */
  private failed(err: Error): void {
    if (!this.failing) this.options.log.warn('cannot record relay connections in the store; cluster status shows them as last written until it answers (tunnels are not affected)', { error: err.message });
    this.failing = true;
  }

  private succeeded(): void {
    if (this.failing) this.options.log.info('relay connections are recorded in the store again');
    this.failing = false;
  }
}
