/**
 * The one seam between the issuer's store and a database (DESIGN §9): the
 * store's queries are written once, in portable SQL with `?` placeholders,
 * and run on SQLite (better-sqlite3, the embedded default) or PostgreSQL
 * (pg). An engine only runs statements, maps a unique-key violation to one
 * error, and gives transactions.
 */

export type EngineKind = 'sqlite' | 'postgres';

export interface SqlRunner {
  /** Rows of a SELECT. */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Rows changed by an INSERT, UPDATE or DELETE. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>;
}

export interface SqlEngine extends SqlRunner {
  readonly kind: EngineKind;
  /** Where the store is, for messages: a file, or a URL without its password. */
  readonly location: string;
  /**
   * Runs `work` in one transaction: committed when it resolves, rolled back when it throws. With
   * `lock`, transactions naming the same lock run one at a time across every process on the store
   * (PostgreSQL: a transaction-scoped advisory lock; SQLite's BEGIN IMMEDIATE already serializes writers).
   */
  transaction<T>(work: (tx: SqlRunner) => Promise<T>, options?: { lock?: string }): Promise<T>;
  /** Runs `work` while holding the store-wide migration lock (two replicas starting at once migrate once). */
  withMigrationLock<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** An INSERT hit a primary or unique key that exists. */
export class UniqueViolationError extends Error {}

/** The store cannot be reached or refused us: the message says where and why, never a password. */
export class StoreUnavailableError extends Error {}
