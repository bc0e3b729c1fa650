/**
 * ES256 signing keys, one set per issuer replica (DESIGN §2, §9).
 *
 * Each replica (each data directory: a "signer") signs with a key of its
 * own. Its private half never leaves `<data>/signing-keys/` (files 0600);
 * its public half is published in the shared store. The JWKS every replica
 * serves lists the current and previous key of every signer heard from
 * within SIGNER_TIMEOUT_MS, so a token minted by replica A verifies at a
 * relay that fetched keys from B, and a replica gone for good drops out.
 *
 * What is read from the store is cached and refreshed every
 * REFRESH_INTERVAL_MS (the hub verifies tokens on every request and must
 * not query the store for it). A new key therefore signs only once it has
 * been published for PROPAGATION_MS, longer than any peer takes to see it;
 * until then the previous key signs. A replica's very first key has no
 * predecessor: the replica is not ready until it has propagated. (With one
 * issuer on its own SQLite store there is no peer to wait for.)
 */
import { randomUUID, type webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { JWKS_REFRESH_COOLDOWN_MS } from '../identity.js';
import type { IssuerStore } from './store/types.js';

/** Current and previous. */
const KEYS_KEPT = 2;
export const SIGNING_ALGORITHM = 'ES256';
export const REFRESH_INTERVAL_MS = 5_000;
/**
 * How long a new key is published before it signs, where replicas share a store: every peer hub has
 * read it (two refreshes), and a relay that fetched the JWKS just before it was published is past its
 * unknown-kid cooldown by then, so it may fetch again (another replica's rotation can have used its
 * refetch just before).
 */
export const PROPAGATION_MS = JWKS_REFRESH_COOLDOWN_MS + 2 * REFRESH_INTERVAL_MS + 1_000;
/**
 * A signer not heard from for this long drops out of the JWKS. Far above a token's 60 s (a replica
 * killed just after minting must keep its keys published until its tokens expire) and above a
 * restart, which keeps its data directory and so its keys.
 */
export const SIGNER_TIMEOUT_MS = 10 * 60_000;

type CryptoKey = webcrypto.CryptoKey;

export interface ActiveSigningKey {
  kid: string;
  key: CryptoKey;
}

interface LocalKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
}

export class KeyNotReadyError extends Error {}

export class SigningKeys {
  private local: LocalKey[] = [];
  private published: JWK[] = [];
  private readonly imported = new Map<string, CryptoKey>();
  readonly signer: string;
  private readonly dir: string;

  constructor(
    private readonly store: IssuerStore,
    dataDir: string,
    /** PROPAGATION_MS where other replicas share the store; 0 for one issuer on its own SQLite store. */
    private readonly propagationMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = path.join(dataDir, 'signing-keys');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const idFile = path.join(this.dir, 'signer-id');
    if (!existsSync(idFile)) writeFileSync(idFile, `${randomUUID()}\n`, { mode: 0o600, flag: 'wx' });
    this.signer = readFileSync(idFile, 'utf8').trim();
  }

  /** Generates a new key for this signer; it signs once it has propagated, the old current stays as the previous one. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALGORITHM, { extractable: true });
    const exported = await exportJWK(publicKey);
    const kid = `${await calculateJwkThumbprint(exported)}.${randomUUID().slice(0, 8)}`;
    const publicJwk: JWK = { ...exported, kid, alg: SIGNING_ALGORITHM, use: 'sig' };
    const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALGORITHM };
    await this.store.touchSigner(this.signer, new Date(this.now()));
    const createdAt = await this.store.publishSigningKey({ kid, signer: this.signer, publicJwk: JSON.stringify(publicJwk), createdAt: new Date(this.now()) }, KEYS_KEPT);
    const file = path.join(this.dir, `${kid}.jwk`);
    writeFileSync(file, JSON.stringify({ privateJwk, publicJwk, createdAt: createdAt.getTime() }), { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
    this.loadLocal();
    for (const stale of this.local.slice(KEYS_KEPT)) unlinkSync(path.join(this.dir, `${stale.kid}.jwk`));
    await this.refresh();
    return kid;
  }

  /** Rotates when this signer has no key yet or its newest is older than `maxAgeMs`. */
  async rotateIfDue(maxAgeMs: number): Promise<boolean> {
    this.loadLocal();
    const newest = this.local[0];
    if (newest && this.now() - newest.createdAt < maxAgeMs) return false;
    await this.rotate();
    return true;
  }

  /** Says this signer is alive and re-reads the published keys and this data directory's private keys. */
  async refresh(): Promise<void> {
    const now = this.now();
    await this.store.touchSigner(this.signer, new Date(now));
    const keys = await this.store.publicSigningKeys(new Date(now - SIGNER_TIMEOUT_MS));
    this.published = keys.map((key) => JSON.parse(key.publicJwk) as JWK);
    this.loadLocal();
  }

  /** Whether a key may sign now: published long enough for every peer to have read it. */
  get ready(): boolean {
    return this.signing() !== undefined;
  }

  /** The key to sign with: the newest that has propagated. */
  async current(): Promise<ActiveSigningKey> {
    const chosen = this.signing();
    if (!chosen) throw new KeyNotReadyError('this issuer replica has just made its signing key and waits for every replica to see it; retry in a few seconds');
    let key = this.imported.get(chosen.kid);
    if (!key) {
      key = (await importJWK(chosen.privateJwk, SIGNING_ALGORITHM)) as CryptoKey;
      this.imported.set(chosen.kid, key);
    }
    return { kid: chosen.kid, key };
  }

  /** Every live signer's current and previous public keys, as last refreshed (and this signer's own, always). */
  jwks(): { keys: JWK[] } {
    const kids = new Set(this.published.map((key) => key.kid));
    return { keys: [...this.published, ...this.local.map((key) => key.publicJwk).filter((key) => !kids.has(key.kid))] };
  }

  private signing(): LocalKey | undefined {
    const now = this.now();
    // Alone on its store, the newest key signs at once (its stored time may even be a millisecond ahead).
    if (this.propagationMs === 0) return this.local[0];
    return this.local.find((key) => now - key.createdAt >= this.propagationMs);
  }

  /** This data directory's private keys, newest first. */
  private loadLocal(): void {
    const keys: LocalKey[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.jwk')) continue;
      const stored = JSON.parse(readFileSync(path.join(this.dir, name), 'utf8')) as { privateJwk: JWK; publicJwk: JWK; createdAt: number };
      keys.push({ kid: stored.publicJwk.kid!, privateJwk: stored.privateJwk, publicJwk: stored.publicJwk, createdAt: stored.createdAt });
    }
    this.local = keys.sort((a, b) => b.createdAt - a.createdAt || (a.kid < b.kid ? 1 : -1));
  }
}
