/**
 * API keys (agents), connector keys (clusters) and admin keys (DESIGN §2, §10).
 *
 * A key is `krl_agent_…` / `krl_cluster_…` / `krl_admin_…` followed by 32 random bytes in
 * base64url. Only HMAC-SHA-256(pepper, key) is stored, so a stolen database
 * cannot be replayed without the pepper, which lives outside it
 * (`<data>/pepper`, 0600, or `KUBE_RELAY_PEPPER`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type KeyKind = 'agent' | 'cluster' | 'admin';

const KEY_RANDOM_BYTES = 32;
const PEPPER_BYTES = 32;

export function generateKey(kind: KeyKind): string {
  return `krl_${kind}_${randomBytes(KEY_RANDOM_BYTES).toString('base64url')}`;
}

export function keyKindOf(key: string): KeyKind | undefined {
  if (key.startsWith('krl_agent_')) return 'agent';
  if (key.startsWith('krl_cluster_')) return 'cluster';
  if (key.startsWith('krl_admin_')) return 'admin';
  return undefined;
}

export function hashKey(pepper: Buffer, key: string): string {
  return createHmac('sha256', pepper).update(key, 'utf8').digest('hex');
}

/** Constant-time comparison of two stored hashes (hex of equal length). */
export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * The pepper: `KUBE_RELAY_PEPPER` when set (so several issuer replicas share
 * one), otherwise `<data>/pepper`, created with mode 0600 on first use.
 */
export function loadOrCreatePepper(dataDir: string, env: NodeJS.ProcessEnv = process.env, options: { pepperFile?: string | undefined; shared?: boolean } = {}): Buffer {
  if (options.pepperFile !== undefined) {
    const pepper = readFileSync(options.pepperFile);
    if (pepper.length < 16) throw new Error(`the pepper file ${options.pepperFile} holds fewer than 16 bytes; use at least 32 random bytes.`);
    return pepper;
  }
  const fromEnv = env.KUBE_RELAY_PEPPER;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (Buffer.byteLength(fromEnv) < 16) {
      throw new Error('KUBE_RELAY_PEPPER is shorter than 16 bytes; use at least 32 random bytes.');
    }
    return Buffer.from(fromEnv, 'utf8');
  }
  if (options.shared) {
    // A pepper made in one replica's data directory would differ from every other replica's.
    throw new Error('a PostgreSQL store is shared by every issuer replica, so they need one pepper: set KUBE_RELAY_PEPPER or --pepper-file (the same on every replica; after store migrate, the source data directory\'s pepper file)');
  }
  const file = path.join(dataDir, 'pepper');
  if (existsSync(file)) return readFileSync(file);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pepper = randomBytes(PEPPER_BYTES);
  writeFileSync(file, pepper, { mode: 0o600 });
  chmodSync(file, 0o600);
  return pepper;
}

const PEPPER_CHECK_SETTING = 'pepper-check';

export class PepperMismatchError extends Error {}

/**
 * The store keeps HMAC(pepper, a fixed text), written by the first issuer
 * that opens it; an issuer with another pepper would refuse every key, so it
 * refuses to start instead, saying why.
 */
export async function checkPepper(store: { location: string; initSetting(name: string, value: string): Promise<string> }, pepper: Buffer): Promise<void> {
  const mine = createHmac('sha256', pepper).update('kube-relay pepper check v1', 'utf8').digest('hex');
  const stored = await store.initSetting(PEPPER_CHECK_SETTING, mine);
  if (!hashesEqual(stored, mine)) {
    throw new PepperMismatchError(
      `the pepper this issuer uses does not match the store at ${store.location}: every replica needs the pepper the store's keys were hashed with (KUBE_RELAY_PEPPER or --pepper-file; after store migrate, the source data directory's pepper file)`,
    );
  }
}
