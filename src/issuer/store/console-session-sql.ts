/**
 * The web console's sign-in sessions (DESIGN §14) in the store, so every
 * issuer replica behind one store knows every session. A row is keyed by an
 * HMAC of the session id (the cookie's value), never the id itself: someone
 * who can read the store cannot sign in with what they read. `data` is the
 * JSON express-session keeps (the admin, the key digest, the CSRF token).
 */
import type { SqlEngine } from './engine.js';

export interface ConsoleSessionStore {
  findConsoleSession(idDigest: string, nowMs: number): Promise<string | undefined>;
  /** Writes the session's data and when it expires, replacing what it had. */
  saveConsoleSession(idDigest: string, data: string, expiresAtMs: number): Promise<void>;
  /** Moves a session's expiry on without rewriting its data. */
  touchConsoleSession(idDigest: string, expiresAtMs: number): Promise<void>;
  deleteConsoleSession(idDigest: string): Promise<void>;
  /** Deletes sessions that expired before `nowMs`; returns how many. */
  pruneConsoleSessions(nowMs: number): Promise<number>;
}

export function consoleSessionStore(engine: SqlEngine): ConsoleSessionStore {
  return {
    async findConsoleSession(idDigest, nowMs) {
      const [row] = await engine.query<{ data: string }>('SELECT data FROM console_sessions WHERE id_digest = ? AND expires_at > ?', [idDigest, nowMs]);
      return row?.data;
    },
    async saveConsoleSession(idDigest, data, expiresAtMs) {
      await engine.execute(
        `INSERT INTO console_sessions (id_digest, data, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (id_digest) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at`,
        [idDigest, data, expiresAtMs],
      );
    },
    async touchConsoleSession(idDigest, expiresAtMs) {
      await engine.execute('UPDATE console_sessions SET expires_at = ? WHERE id_digest = ?', [expiresAtMs, idDigest]);
    },
    async deleteConsoleSession(idDigest) {
      await engine.execute('DELETE FROM console_sessions WHERE id_digest = ?', [idDigest]);
    },
    pruneConsoleSessions(nowMs) {
      return engine.execute('DELETE FROM console_sessions WHERE expires_at <= ?', [nowMs]);
    },
  };
}
