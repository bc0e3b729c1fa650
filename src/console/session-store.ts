/**
 * express-session's Store over the issuer's store (migration 9), so a
 * console session opened on one issuer replica holds on every other. Rows
 * are keyed by the Registry's HMAC of the session id; a row lives until the
 * cookie's absolute expiry, and the idle rule (src/console/auth.ts) ends a
 * session sooner.
 */
import session from 'express-session';
import type { Registry } from '../issuer/registry.js';

/** Expired rows are deleted at most this often, on the way to saving a session. */
const PRUNE_INTERVAL_MS = 60_000;
/** A sign-in form left open longer than this is refused (its CSRF token is gone) and shown again. */
const VISITOR_LIFETIME_MS = 10 * 60_000;

export class ConsoleSessionStore extends session.Store {
  private lastPrunedMs = 0;

  constructor(
    private readonly registry: Registry,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  override get(sid: string, callback: (err: unknown, session?: session.SessionData | null) => void): void {
    this.registry.consoleSessions
      .findConsoleSession(this.registry.consoleSessionDigest(sid), this.now())
      .then((data) => callback(null, data === undefined ? null : (JSON.parse(data) as session.SessionData)), callback);
  }

  override set(sid: string, data: session.SessionData, callback?: (err?: unknown) => void): void {
    this.pruneNow()
      .then(() => this.registry.consoleSessions.saveConsoleSession(this.registry.consoleSessionDigest(sid), JSON.stringify(data), this.expiresAt(data)))
      .then(() => callback?.(), (err: unknown) => callback?.(err));
  }

  override touch(sid: string, data: session.SessionData, callback?: () => void): void {
    this.registry.consoleSessions.touchConsoleSession(this.registry.consoleSessionDigest(sid), this.expiresAt(data)).then(
      () => callback?.(),
      () => callback?.(), // a lost touch only shortens the row's life to its last save
    );
  }

  override destroy(sid: string, callback?: (err?: unknown) => void): void {
    this.registry.consoleSessions.deleteConsoleSession(this.registry.consoleSessionDigest(sid)).then(() => callback?.(), (err: unknown) => callback?.(err));
  }

  /** A signed-in session lives until its cookie expires; a visitor's (the sign-in form's CSRF token only) for minutes. */
  private expiresAt(data: session.SessionData): number {
    const expires = data.cookie.expires ? new Date(data.cookie.expires).getTime() : this.now() + 12 * 3_600_000;
    return data.admin ? expires : Math.min(expires, this.now() + VISITOR_LIFETIME_MS);
  }

  private async pruneNow(): Promise<void> {
    if (this.now() - this.lastPrunedMs < PRUNE_INTERVAL_MS) return;
    this.lastPrunedMs = this.now();
    await this.registry.consoleSessions.pruneConsoleSessions(this.now());
  }
}
