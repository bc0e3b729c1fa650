/**
 * Records of requests that carry no verified identity, limited per source
 * address (issue 14). Such a request is never forwarded: it is refused
 * (no or a bad token, a bad target, an unknown cluster at the hub) or its
 * client left first. Anyone can send them, as fast as the network allows,
 * so each address gets a token bucket of records and all addresses
 * together another; what a bucket refuses is counted, and the counts are
 * written as one summary record per address per interval, so the trail
 * says how many came, from where, when and why, without one line each.
 * Records of authenticated requests never pass through here.
 */
import type { AuditRecord } from './record.js';

/** What stands in the trail for the records of one address that were not written one by one. */
export interface SummaryRecord {
  /** When the summary was written. */
  time: string;
  kind: 'summary';
  reason: 'unauthenticated-refusals';
  /** The cluster the requests named, or null when they named several (the hub serves many). */
  cluster: string | null;
  mode: 'direct' | 'tunnel';
  /** The requests' source address; null for addresses beyond those tracked at once, counted together. */
  sourceIp: string | null;
  /** Records summarised here instead of written. */
  count: number;
  /** The `time` of the first and the last of them. */
  from: string;
  to: string;
  /** How many of them had each `reason` (or, without one, each `status`). */
  reasons: Record<string, number>;
}

export interface UnauthenticatedRecordLimits {
  /** Records an address may write at once, and how many more it earns each second. */
  perAddressBurst: number;
  perAddressPerSecond: number;
  /** The same for all addresses together, so that many addresses cannot write more than one could alone. */
  overallBurst: number;
  overallPerSecond: number;
  /** Addresses tracked at once; the rest share one bucket (summaries with `sourceIp: null`). */
  trackedAddresses: number;
  /** How often summaries are written. */
  summaryIntervalMs: number;
}

/**
 * A flood from one address writes 10 records, then one per 5 s; from any
 * number of addresses at most 100, then 10/s. With the fields bounded
 * (bounded-fields.ts) that is at most ~0.3 MB/s however fast the flood.
 */
export const DEFAULT_UNAUTHENTICATED_RECORD_LIMITS: UnauthenticatedRecordLimits = {
  perAddressBurst: 10,
  perAddressPerSecond: 0.2,
  overallBurst: 100,
  overallPerSecond: 10,
  trackedAddresses: 10_000,
  summaryIntervalMs: 60_000,
};

class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Full again: forgetting it loses nothing, a new bucket starts full. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1000) * this.perSecond);
    this.updatedAt = now;
  }
}

interface Suppressed {
  count: number;
  from: string;
  to: string;
  cluster: string | null;
  mode: 'direct' | 'tunnel';
  reasons: Record<string, number>;
}

interface AddressState {
  readonly sourceIp: string | null;
  readonly bucket: TokenBucket;
  suppressed?: Suppressed;
}

export class UnauthenticatedRecordLimiter {
  private readonly addresses = new Map<string, AddressState>();
  private readonly untracked: AddressState;
  private readonly overall: TokenBucket;

  constructor(
    private readonly limits: UnauthenticatedRecordLimits = DEFAULT_UNAUTHENTICATED_RECORD_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.untracked = this.newState(null);
    this.overall = new TokenBucket(limits.overallBurst, limits.overallPerSecond, now());
  }

  /** True when `record` is to be written; false when it was counted for the next summary instead. */
  admit(record: AuditRecord): boolean {
    if (record.user !== null) return true;
    const now = this.now();
    const state = this.stateFor(record.sourceIp);
    if (state.bucket.take(now) && this.overall.take(now)) return true;
    this.count(state, record);
    return false;
  }

  /** The summaries of what was counted since the last call; addresses whose bucket is full again are forgotten. */
  takeSummaries(): SummaryRecord[] {
    const now = this.now();
    const time = new Date(now).toISOString();
    const summaries: SummaryRecord[] = [];
    for (const state of [...this.addresses.values(), this.untracked]) {
      const suppressed = state.suppressed;
      if (suppressed) {
        summaries.push({ time, kind: 'summary', reason: 'unauthenticated-refusals', cluster: suppressed.cluster, mode: suppressed.mode, sourceIp: state.sourceIp, count: suppressed.count, from: suppressed.from, to: suppressed.to, reasons: suppressed.reasons });
        state.suppressed = undefined;
      }
    }
    for (const [key, state] of this.addresses) if (state.bucket.isFull(now)) this.addresses.delete(key);
    return summaries;
  }

  /** Addresses tracked now (for tests of the bound). */
  get trackedAddresses(): number {
    return this.addresses.size;
  }

  private stateFor(sourceIp: string | null): AddressState {
    const key = sourceIp ?? '';
    const known = this.addresses.get(key);
    if (known) return known;
    if (this.addresses.size >= this.limits.trackedAddresses) return this.untracked;
    const state = this.newState(sourceIp);
    this.addresses.set(key, state);
    return state;
  }

  private newState(sourceIp: string | null): AddressState {
    return { sourceIp, bucket: new TokenBucket(this.limits.perAddressBurst, this.limits.perAddressPerSecond, this.now()) };
  }

  private count(state: AddressState, record: AuditRecord): void {
    const why = record.reason ?? String(record.status);
    const suppressed = state.suppressed;
    if (!suppressed) {
      state.suppressed = { count: 1, from: record.time, to: record.time, cluster: record.cluster, mode: record.mode, reasons: { [why]: 1 } };
      return;
    }
    suppressed.count++;
    suppressed.to = record.time;
    if (suppressed.cluster !== record.cluster) suppressed.cluster = null;
    suppressed.reasons[why] = (suppressed.reasons[why] ?? 0) + 1;
  }
}
