/**
 * Central audit retention (`--audit-retention`, default 30 days): records
 * and sessions older than that are deleted in the background, at start and
 * then every few minutes. Every replica prunes; a second pass finds nothing.
 */
import type { AuditStore } from '../issuer/store/audit-sql.js';
import type { Logger } from '../log.js';

export const DEFAULT_AUDIT_RETENTION_MS = 30 * 24 * 3_600_000;
const PRUNE_INTERVAL_MS = 10 * 60_000;

export function startAuditRetention(store: AuditStore, retentionMs: number, log: Logger, intervalMs = PRUNE_INTERVAL_MS): () => void {
  let failure: string | undefined;
  let running: Promise<void> | undefined;
  const prune = () => {
    running ??= store
      .pruneAudit(Date.now() - retentionMs)
      .then((pruned) => {
        if (failure) log.info('central audit pruning works again');
        failure = undefined;
        if (pruned.records > 0 || pruned.sessions > 0) log.info('central audit pruned', { ...pruned, olderThanMs: retentionMs });
      })
      .catch((err: Error) => {
        if (err.message !== failure) log.warn('central audit could not be pruned; trying again later', { error: err.message });
        failure = err.message;
      })
      .finally(() => (running = undefined));
  };
  prune();
  const timer = setInterval(prune, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
