/**
 * Revoked agents (DESIGN §2): a revoked agent's tokens die within 60 s by
 * themselves; this list makes it sooner. Direct-mode relays poll the issuer's
 * `GET /v1/revocations` every 10 s; the hub pushes the same entries through
 * each tunnel. Listeners are told of each newly revoked user so its live
 * streams can be cut.
 */
import { fetchWithCa } from '../https-fetch.js';
import type { AgentIdentity } from '../identity.js';
import type { Logger } from '../log.js';

export const REVOCATION_POLL_INTERVAL_MS = 10_000;
/**
 * Each poll asks from the previous answer's time (the issuer's clock) less this overlap, for a
 * revocation written by another process, or a replica with a clock a little behind, while that
 * answer was being read. Entries seen twice are applied once.
 */
const POLL_OVERLAP_MS = 30_000;
/** Past this age a revocation no longer matters: every token issued before it has expired. */
const RETENTION_MS = 10 * 60_000;

export interface RevocationEntry {
  user: string;
  revokedAt: string;
}

export class RevocationList {
  private readonly revokedAt = new Map<string, number>();
  private readonly listeners: ((entry: RevocationEntry) => void)[] = [];

  /** A token is revoked when its agent was revoked at or after the second it was issued. */
  isRevoked(identity: AgentIdentity): boolean {
    const at = this.revokedAt.get(identity.user);
    return at !== undefined && identity.issuedAt * 1000 <= at;
  }

  onRevoked(listener: (entry: RevocationEntry) => void): void {
    this.listeners.push(listener);
  }

  /** Every revocation still remembered. */
  entries(): RevocationEntry[] {
    return [...this.revokedAt].map(([user, at]) => ({ user, revokedAt: new Date(at).toISOString() }));
  }

  apply(entries: RevocationEntry[], now: number = Date.now()): void {
    for (const entry of entries) {
      if (typeof entry?.user !== 'string' || typeof entry.revokedAt !== 'string') continue;
      const at = Date.parse(entry.revokedAt);
      if (Number.isNaN(at)) continue;
      const known = this.revokedAt.get(entry.user);
      if (known !== undefined && known >= at) continue;
      this.revokedAt.set(entry.user, at);
      for (const listener of this.listeners) listener({ user: entry.user, revokedAt: entry.revokedAt });
    }
    for (const [user, at] of this.revokedAt) if (now - at > RETENTION_MS) this.revokedAt.delete(user);
  }

  /** Polls `<issuer>/v1/revocations` until the returned function is called. */
  startPolling(issuer: string, issuerCa: string | Buffer | undefined, log: Logger, intervalMs = REVOCATION_POLL_INTERVAL_MS): () => void {
    const fetch = fetchWithCa({ ca: issuerCa });
    const url = new URL('v1/revocations', issuer.endsWith('/') ? issuer : `${issuer}/`);
    let failing = false;
    /** The issuer's clock at the last answer: the next poll asks from there, so an outage of any length skips nothing. */
    let lastGeneratedAt: string | undefined;
    const poll = async () => {
      try {
        const pollUrl = new URL(url);
        if (lastGeneratedAt) pollUrl.searchParams.set('since', new Date(Date.parse(lastGeneratedAt) - POLL_OVERLAP_MS).toISOString());
        const res = await fetch(pollUrl);
        if (!res.ok) throw new Error(`issuer answered ${res.status}`);
        const body = (await res.json()) as { items?: RevocationEntry[]; generatedAt?: unknown };
        this.apply(Array.isArray(body.items) ? body.items : []);
        if (typeof body.generatedAt === 'string' && !Number.isNaN(Date.parse(body.generatedAt))) lastGeneratedAt = body.generatedAt;
        if (failing) log.info('revocation feed reachable again');
        failing = false;
      } catch (err) {
        if (!failing) log.warn('cannot poll the revocation feed; revoked agents keep access until their tokens expire (60 s)', { error: (err as Error).message });
        failing = true;
      }
    };
    // Each poll is scheduled when the one before it has finished, so a slow issuer never has two
    // polls in flight and every poll asks from the answer before it.
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const loop = async () => {
      await poll();
      if (stopped) return;
      timer = setTimeout(() => void loop(), intervalMs);
      timer.unref();
    };
    void loop();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
}
