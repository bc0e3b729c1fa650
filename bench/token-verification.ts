/**
 * What verifying an agent token costs the relay (issue 6): ES256 signature
 * checks of distinct tokens, against the same token seen again (served from
 * the verified-token cache, claims still validated on every use).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { TokenVerifier } from '../src/request-stages/token-verifier.js';

export interface VerificationFigures {
  distinctPerSecond: number;
  repeatedPerSecond: number;
}

export async function measureTokenVerification(count: number): Promise<VerificationFigures> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwksFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-jwks-')), 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] }));
  const now = Math.floor(Date.now() / 1000);
  const tokens = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      new SignJWT({ iss: 'https://issuer.bench', aud: 'bench', sub: 'agent:loader', iat: now, nbf: now, exp: now + 60, jti: `bench-${i}`, groups: ['bench/load'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'bench', typ: 'JWT' })
        .sign(privateKey),
    ),
  );
  const verifier = new TokenVerifier({ issuer: 'https://issuer.bench', audience: 'bench', jwksFile });

  let started = performance.now();
  for (const token of tokens) await verifier.verify(token);
  const distinctPerSecond = count / ((performance.now() - started) / 1000);

  started = performance.now();
  for (let i = 0; i < count; i++) await verifier.verify(tokens[0]!);
  const repeatedPerSecond = count / ((performance.now() - started) / 1000);
  return { distinctPerSecond, repeatedPerSecond };
}
