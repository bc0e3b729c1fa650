/**
 * The relay's side of central grants (DESIGN §11): every few seconds, and
 * at once when the hub says the grants changed, the replica holding the
 * grants Lease reads its cluster's grants from the issuer (with the
 * connector key), reconciles them into RBAC, and reports each grant's
 * outcome and the cluster's grantable roles back. A grant added or removed
 * reaches the cluster at once when the change was made through the replica
 * the relay is connected to, and within one interval (5 s) otherwise; an
 * expired grant's binding goes within one interval of its expiry, issuer
 * reachable or not, because expiry is judged here on the last grants read.
 * Until the first successful read nothing is reconciled: a relay that has
 * not heard from the issuer never deletes bindings it cannot account for.
 */
import { fetchWithCa, type FetchLike } from '../https-fetch.js';
import { KubeUnavailableError, type KubeApi } from '../kube-api/client.js';
import type { LeaderElection } from '../kube-api/leader-election.js';
import type { Logger } from '../log.js';
import { type ClusterGrant, type GrantOutcome, reconcileGrants, type ReconcileResult } from './reconciler.js';

export const GRANT_SYNC_INTERVAL_MS = 5_000;
/** A report unchanged is sent again this often, so the issuer knows the relay is still applying. */
const REPORT_REFRESH_MS = 60_000;

export interface GrantSyncOptions {
  cluster: string;
  issuer: string;
  issuerCa?: string | Buffer | undefined;
  connectorKey: string;
  api: KubeApi;
  election: LeaderElection;
  log: Logger;
  intervalMs?: number;
  now?: () => Date;
}

export class GrantSync {
  private grants: ClusterGrant[] | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private nudged = false;
  private issuerFailing = false;
  /** The last reconciliation failure, said once until it changes or passes. */
  private reconcileFailure: string | undefined;
  private lastReport: { text: string; at: number } | undefined;
  private lastFailures = new Map<string, string>();
  private readonly fetch: FetchLike;
  private readonly now: () => Date;
  /** The outcome of the last pass. */
  lastResult: ReconcileResult | undefined;

  constructor(private readonly options: GrantSyncOptions) {
    this.fetch = fetchWithCa({ ca: options.issuerCa });
    this.now = options.now ?? (() => new Date());
  }

  start(): void {
    void this.tick();
  }

  /** Grants changed (the hub said so): a pass now, or right after the one under way. */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) {
      this.nudged = true;
      return;
    }
    clearTimeout(this.timer);
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    do {
      this.nudged = false;
      this.running = this.pass();
      await this.running;
    } while (this.nudged && !this.stopped);
    this.running = undefined;
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.options.intervalMs ?? GRANT_SYNC_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private async pass(): Promise<void> {
    if (!this.options.election.isLeader) return;
    const { log } = this.options;
    try {
      this.grants = await this.readGrants();
      if (this.issuerFailing) log.info("this cluster's grants are read from the issuer again");
      this.issuerFailing = false;
    } catch (err) {
      // Said once per outage, not every pass.
      if (!this.issuerFailing) log.warn(`cannot read this cluster's grants from the issuer; ${this.grants ? 'reconciling the last ones read' : 'nothing is reconciled until they are read once'}`, { error: (err as Error).message });
      this.issuerFailing = true;
    }
    if (!this.grants) return;
    let result: ReconcileResult;
    try {
      result = await reconcileGrants(this.options.api, this.options.cluster, this.grants, this.now());
    } catch (err) {
      const message = (err as Error).message;
      if (this.reconcileFailure !== message) log[err instanceof KubeUnavailableError ? 'warn' : 'error']('grants not reconciled; retrying every pass', { error: message });
      this.reconcileFailure = message;
      return;
    }
    if (this.reconcileFailure !== undefined) log.info('grants reconciled again');
    this.reconcileFailure = undefined;
    this.lastResult = result;
    for (const [change, places] of [['created', result.created], ['updated', result.updated], ['deleted', result.deleted]] as const) {
      for (const place of places) log.info(`grant binding ${change}`, { binding: place });
    }
    this.logNewFailures(result.outcomes);
    await this.report(result).catch((err: Error) => log.warn('cannot report grant states to the issuer; retrying next time', { error: err.message }));
  }

  private async readGrants(): Promise<ClusterGrant[]> {
    const res = await this.fetch(new URL('v1/relay/grants', withSlash(this.options.issuer)), { headers: { authorization: `Bearer ${this.options.connectorKey}` } });
    const body = (await res.json().catch(() => ({}))) as { grants?: ClusterGrant[]; message?: string };
    if (!res.ok || !Array.isArray(body.grants)) throw new Error(`the issuer answered HTTP ${res.status}${body.message ? `: ${body.message}` : ''}`);
    return body.grants;
  }

  private async report(result: ReconcileResult): Promise<void> {
    const text = JSON.stringify({ grants: result.outcomes, grantableRoles: result.grantableRoles });
    const now = this.now().getTime();
    if (this.lastReport?.text === text && now - this.lastReport.at < REPORT_REFRESH_MS) return;
    const res = await this.fetch(new URL('v1/relay/grants/status', withSlash(this.options.issuer)), {
      method: 'POST',
      headers: { authorization: `Bearer ${this.options.connectorKey}`, 'content-type': 'application/json' },
      body: text,
    });
    if (!res.ok) throw new Error(`the issuer answered HTTP ${res.status}`);
    this.lastReport = { text, at: now };
  }

  /** Each grant's failure is logged when it starts or its reason changes, not on every pass. */
  private logNewFailures(outcomes: GrantOutcome[]): void {
    const failing = new Map<string, string>();
    for (const outcome of outcomes) {
      if (outcome.state !== 'failed') continue;
      failing.set(outcome.id, outcome.reason ?? '');
      if (this.lastFailures.get(outcome.id) !== outcome.reason) this.options.log.warn('grant not applied', { grant: outcome.id, reason: outcome.reason });
    }
    this.lastFailures = failing;
  }
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}
