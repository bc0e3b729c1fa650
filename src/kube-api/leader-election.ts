/**
 * One leader among a cluster's relay replicas, on a coordination.k8s.io
 * Lease, as client-go's leaderelection package does it: the holder renews
 * the Lease every retry period; the others take it over once it has not
 * been renewed for its duration (measured on their own clock, from when they
 * last saw it change, so clocks need not agree); every write carries the
 * resourceVersion read, so two replicas cannot both win. A leader that has
 * not renewed for the renew deadline stops leading before another can take
 * over. On stop the leader gives the Lease up so a peer takes over at once.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../log.js';
import { KubeApiError, type KubeApi } from './client.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** Unique per replica; default the host name and a random suffix. */
  identity?: string;
  /** client-go's defaults for controllers: 15 s, 10 s, 2 s. */
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onChange?: (leading: boolean) => void;
  now?: () => number;
}

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElection {
  readonly identity: string;
  private leading = false;
  private lastRenewedAt = 0;
  private observed: { record: string; at: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;
  private stopped = false;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;

  constructor(
    private readonly api: KubeApi,
    private readonly options: LeaderElectionOptions,
  ) {
    this.identity = options.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.now = options.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      this.attempt = this.tryAcquireOrRenew();
      await this.attempt;
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.retryPeriodMs);
    };
    void tick();
  }

  /** Stops; a leader releases the Lease (holder cleared) so a peer need not wait out its duration. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // An attempt under way could otherwise read the Lease after it is released and take it back.
    await this.attempt;
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.api.find<Lease>(this.leasePath());
      if (lease?.spec?.holderIdentity === this.identity) {
        await this.api.request('PUT', this.leasePath(), { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.now()) } });
      }
    } catch (err) {
      this.options.log.debug('could not release the grants Lease; a peer takes over once it lapses', { error: (err as Error).message });
    }
  }

  private leasePath(name = this.options.name): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.options.namespace)}/leases${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = this.now();
    const spec = { holderIdentity: this.identity, leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000), renewTime: microTime(now) };
    try {
      const lease = await this.api.find<Lease>(this.leasePath());
      if (this.stopped) return;
      if (!lease) {
        await this.api.request('POST', this.leasePath(''), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.options.name, namespace: this.options.namespace },
          spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
        });
        return this.won(now);
      }
      const holder = lease.spec?.holderIdentity ?? '';
      const record = `${holder}|${lease.spec?.renewTime ?? ''}`;
      if (this.observed?.record !== record) this.observed = { record, at: now };
      const heldByPeer = holder !== '' && holder !== this.identity;
      const lapsed = this.observed.at + (lease.spec?.leaseDurationSeconds ?? 15) * 1000 <= now;
      if (heldByPeer && !lapsed) {
        if (this.leading) this.options.log.warn('another relay replica holds the grants Lease now; this one stands by', { lease: `${this.options.namespace}/${this.options.name}`, holder });
        return this.setLeading(false);
      }
      const takingOver = holder !== this.identity;
      await this.api.request('PUT', this.leasePath(), {
        ...lease,
        spec: {
          ...lease.spec,
          ...spec,
          acquireTime: takingOver ? microTime(now) : (lease.spec?.acquireTime ?? microTime(now)),
          leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + (takingOver && holder !== '' ? 1 : 0),
        },
      });
      return this.won(now);
    } catch (err) {
      // 409: a peer wrote the Lease since we read it (it won this round). Anything else: the API server is away.
      const conflict = err instanceof KubeApiError && (err.status === 409 || err.status === 422);
      return this.lost(now, conflict ? 'a peer renewed it first' : (err as Error).message);
    }
  }

  private won(now: number): void {
    this.lastRenewedAt = now;
    this.setLeading(true);
  }

  private lost(now: number, why: string): void {
    // A leader that cannot renew keeps leading until the renew deadline, as client-go's does,
    // which is shorter than the lease duration: it stops before a peer can take over.
    if (this.leading && now - this.lastRenewedAt < this.renewDeadlineMs) return;
    if (this.leading) this.options.log.warn('lost the grants Lease: another relay replica reconciles grants now', { lease: `${this.options.namespace}/${this.options.name}`, why });
    this.setLeading(false);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) this.options.log.info('holding the grants Lease: this relay replica reconciles grants', { lease: `${this.options.namespace}/${this.options.name}`, identity: this.identity });
    this.options.onChange?.(leading);
  }
}
