/**
 * ES256 signing keys (DESIGN §2): the newest key signs, the JWKS publishes it
 * and the one before it, so tokens signed just before a rotation still verify
 * while relays pick up the new key (an unknown `kid` makes them refresh).
 * Private keys live only in the store, inside the data directory.
 */
import { randomUUID, type webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { IssuerStore, StoredSigningKey } from './store.js';

/** Current and previous. */
const KEYS_KEPT = 2;
export const SIGNING_ALGORITHM = 'ES256';

type CryptoKey = webcrypto.CryptoKey;

export interface ActiveSigningKey {
  kid: string;
  key: CryptoKey;
}

export class SigningKeys {
  private readonly imported = new Map<string, CryptoKey>();

  constructor(
    private readonly store: IssuerStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Generates a new current key; the old current becomes the previous one. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALGORITHM, { extractable: true });
    const publicJwk = await exportJWK(publicKey);
    const kid = `${await calculateJwkThumbprint(publicJwk)}.${randomUUID().slice(0, 8)}`;
    const stored: StoredSigningKey = {
      kid,
      privateJwk: JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALGORITHM }),
      publicJwk: JSON.stringify({ ...publicJwk, kid, alg: SIGNING_ALGORITHM, use: 'sig' }),
      createdAt: this.now(),
    };
    this.store.addSigningKey(stored, KEYS_KEPT);
    return kid;
  }

  /** Rotates when there is no key yet or the current one is older than `maxAgeMs`. */
  async rotateIfDue(maxAgeMs: number): Promise<boolean> {
    const newest = this.store.signingKeys()[0];
    if (newest && this.now().getTime() - newest.createdAt.getTime() < maxAgeMs) return false;
    await this.rotate();
    return true;
  }

  /**
   * The key to sign with, read from the store each time so a rotation made by
   * another process (`kube-relay issuer rotate-keys`) takes effect at once.
   */
  async current(): Promise<ActiveSigningKey> {
    const newest = this.store.signingKeys()[0];
    if (!newest) throw new Error('no signing key: the issuer has not created one yet');
    let key = this.imported.get(newest.kid);
    if (!key) {
      key = (await importJWK(JSON.parse(newest.privateJwk) as JWK, SIGNING_ALGORITHM)) as CryptoKey;
      this.imported.set(newest.kid, key);
    }
    return { kid: newest.kid, key };
  }

  jwks(): { keys: JWK[] } {
    return { keys: this.store.signingKeys().map((stored) => JSON.parse(stored.publicJwk) as JWK) };
  }
}
