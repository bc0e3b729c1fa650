/** Signing test tokens with arbitrary claims and headers, against a JWKS file a verifier can load. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

export const ISSUER = 'https://issuer.test';
export const CLUSTER = 'prod-eu';

export interface TestSigner {
  jwksFile: string;
  kid: string;
  publicJwk: Record<string, unknown>;
  sign(claims?: Partial<JWTPayload> & Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** Valid claims for `now` (seconds). */
  claims(now?: number): JWTPayload & { groups: string[] };
}

export async function createTestSigner(kid = 'test-key-1'): Promise<TestSigner> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const dir = mkdtempSync(path.join(tmpdir(), 'kube-relay-jwks-'));
  const jwksFile = path.join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [publicJwk] }));
  const claims = (now = Math.floor(Date.now() / 1000)) => ({
    iss: ISSUER,
    sub: 'agent:deployer',
    aud: CLUSTER,
    iat: now,
    nbf: now,
    exp: now + 60,
    jti: `jti-${Math.random().toString(36).slice(2)}`,
    groups: ['acme/platform', 'acme/sre'],
  });
  return {
    jwksFile,
    kid,
    publicJwk,
    claims,
    async sign(overrides = {}, header = {}) {
      const payload = { ...claims(), ...overrides };
      for (const [key, value] of Object.entries(payload)) if (value === undefined) delete (payload as Record<string, unknown>)[key];
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header }).sign(privateKey);
    },
  };
}

/** A compact JWS with an arbitrary header and payload and the given signature bytes. */
export function rawJwt(header: object, payload: object, signature = ''): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part(header)}.${part(payload)}.${signature}`;
}
