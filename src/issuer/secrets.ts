/**
 * API keys (agents) and connector keys (clusters), DESIGN §2.
 *
 * A key is `krl_agent_…` / `krl_cluster_…` followed by 32 random bytes in
 * base64url. Only HMAC-SHA-256(pepper, key) is stored, so a stolen database
 * cannot be replayed without the pepper, which lives outside it
 * (`<data>/pepper`, 0600, or `KUBE_RELAY_PEPPER`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type KeyKind = 'agent' | 'cluster';

const KEY_RANDOM_BYTES = 32;
const PEPPER_BYTES = 32;

export function generateKey(kind: KeyKind): string {
  return `krl_${kind}_${randomBytes(KEY_RANDOM_BYTES).toString('base64url')}`;
}

export function keyKindOf(key: string): KeyKind | undefined {
  if (key.startsWith('krl_agent_')) return 'agent';
  if (key.startsWith('krl_cluster_')) return 'cluster';
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
export function loadOrCreatePepper(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env.KUBE_RELAY_PEPPER;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (Buffer.byteLength(fromEnv) < 16) {
      throw new Error('KUBE_RELAY_PEPPER is shorter than 16 bytes; use at least 32 random bytes.');
    }
    return Buffer.from(fromEnv, 'utf8');
  }
  const file = path.join(dataDir, 'pepper');
  if (existsSync(file)) return readFileSync(file);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pepper = randomBytes(PEPPER_BYTES);
  writeFileSync(file, pepper, { mode: 0o600 });
  chmodSync(file, 0o600);
  return pepper;
}
