import { createHmac } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { RelayRefusal } from '../../src/request-stages/errors.js';
import { TokenVerifier, validateClaims } from '../../src/request-stages/token-verifier.js';
import { CLUSTER, createTestSigner, ISSUER, rawJwt } from '../helpers/tokens.js';

const NOW = 1_800_000_000;
const signer = await createTestSigner();
const verifier = new TokenVerifier({ issuer: ISSUER, audience: CLUSTER, jwksFile: signer.jwksFile, now: () => NOW * 1000 });

async function refusalOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RelayRefusal);
    return (err as RelayRefusal).reason;
  }
  throw new Error('expected the token to be refused');
}

describe('token verification (DESIGN §2)', () => {
  it('accepts a well-formed token and returns exactly the agent identity', async () => {
    const claims = signer.claims(NOW);
    const identity = await verifier.verify(await signer.sign(claims));
    expect(identity).toEqual({ user: 'agent:deployer', groups: ['acme/platform', 'acme/sre'], tokenId: claims.jti, issuedAt: NOW, expiresAt: NOW + 60 });
  });

  it('refuses alg "none" (unsigned tokens)', async () => {
    const token = rawJwt({ alg: 'none', kid: signer.kid }, signer.claims(NOW));
    expect(await refusalOf(verifier.verify(token))).toBe('algorithm-not-allowed');
  });

  it('refuses HS256 signed with the public key as the secret (algorithm confusion)', async () => {
    const header = { alg: 'HS256', kid: signer.kid, typ: 'JWT' };
    const signingInput = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(signer.claims(NOW))).toString('base64url')}`;
    const mac = createHmac('sha256', JSON.stringify(signer.publicJwk)).update(signingInput).digest('base64url');
    expect(await refusalOf(verifier.verify(`${signingInput}.${mac}`))).toBe('algorithm-not-allowed');
  });

  it('refuses a token signed by a key the JWKS does not have', async () => {
    const stranger = await createTestSigner(signer.kid);
    expect(await refusalOf(verifier.verify(await stranger.sign(stranger.claims(NOW))))).toBe('bad-signature');
    const unknownKid = await createTestSigner('other-key');
    expect(await refusalOf(verifier.verify(await unknownKid.sign(unknownKid.claims(NOW))))).toBe('unknown-key');
  });

  it('refuses a missing kid and a kid with path characters', async () => {
    expect(await refusalOf(verifier.verify(await signer.sign(signer.claims(NOW), { kid: undefined })))).toBe('malformed-token');
    expect(await refusalOf(verifier.verify(await signer.sign(signer.claims(NOW), { kid: '../../etc/passwd' })))).toBe('malformed-token');
  });

  it('refuses a token whose signature was tampered with', async () => {
    const token = await signer.sign(signer.claims(NOW));
    const [h, , s] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...signer.claims(NOW), sub: 'agent:admin' })).toString('base64url')}.${s}`;
    expect(await refusalOf(verifier.verify(forged))).toBe('bad-signature');
  });

  it('refuses malformed and oversized tokens before parsing them', async () => {
    expect(await refusalOf(verifier.verify('not-a-jwt'))).toBe('malformed-token');
    expect(await refusalOf(verifier.verify('a'.repeat(8 * 1024 + 1)))).toBe('oversized-token');
    const bigClaims = await signer.sign({ ...signer.claims(NOW), padding: 'x'.repeat(9000) });
    expect(await refusalOf(verifier.verify(bigClaims))).toBe('oversized-token');
  });
});

describe('verified-token cache (issue 6)', () => {
  it('verifies a signature once per token, keyed by the whole token: a changed signature is checked anew', async () => {
    let now = NOW;
    const cached = new TokenVerifier({ issuer: ISSUER, audience: CLUSTER, jwksFile: signer.jwksFile, now: () => now * 1000 });
    const token = await signer.sign(signer.claims(NOW));
    const verifySignature = vi.spyOn(cached as unknown as { verifySignature(t: string): Promise<unknown> }, 'verifySignature');
    await cached.verify(token);
    await cached.verify(token);
    expect(verifySignature).toHaveBeenCalledTimes(1);

    // Same header and payload, another signature: never served from the cache.
    const [h, p, sig] = token.split('.');
    const flipped = `${h}.${p}.${sig!.slice(0, 10)}${sig![10] === 'A' ? 'B' : 'A'}${sig!.slice(11)}`;
    expect(await refusalOf(cached.verify(flipped))).toBe('bad-signature');
    expect(verifySignature).toHaveBeenCalledTimes(2);

    // The claims are checked on every use: a cached token still expires.
    now = NOW + 60 + 5;
    expect(await refusalOf(cached.verify(token))).toBe('expired');
  });
});

describe('claims validation with a frozen clock', () => {
  const expect_ = { issuer: ISSUER, audience: CLUSTER };
  const valid = () => {
    const c = { iss: ISSUER, sub: 'agent:deployer', aud: CLUSTER, iat: NOW, nbf: NOW, exp: NOW + 60, jti: 'abc', groups: ['acme/sre'] };
    return c as Record<string, unknown>;
  };
  const reason = (payload: Record<string, unknown>, now = NOW) => {
    try {
      validateClaims(payload, expect_, now);
      return 'accepted';
    } catch (err) {
      return (err as RelayRefusal).reason;
    }
  };

  it.each([
    ['expired by 1 s past the 5 s skew', { exp: NOW - 6, iat: NOW - 66, nbf: NOW - 66 }, 'expired'],
    ['expired by a day', { exp: NOW - 86_400, iat: NOW - 86_460, nbf: NOW - 86_460 }, 'expired'],
    ['nbf in the future beyond skew', { nbf: NOW + 6 }, 'not-yet-valid'],
    ['iat in the future beyond skew', { iat: NOW + 6, nbf: NOW, exp: NOW + 60 }, 'issued-in-future'],
    ['lifetime over 60 s', { exp: NOW + 3600 }, 'lifetime-too-long'],
    ['wrong issuer', { iss: 'https://evil.test' }, 'wrong-issuer'],
    ['wrong audience', { aud: 'other-cluster' }, 'wrong-audience'],
    ['audience array containing the cluster', { aud: [CLUSTER, 'other'] }, 'wrong-audience'],
    ['subject that is not agent:<name>', { sub: 'system:admin' }, 'invalid-claims'],
    ['33 groups', { groups: Array.from({ length: 33 }, (_, i) => `acme/t${i}`) }, 'invalid-claims'],
    ['group not <org>/<team>', { groups: ['system:masters'] }, 'invalid-claims'],
    ['no groups claim', { groups: undefined }, 'invalid-claims'],
    ['groups of two orgs', { groups: ['acme/sre', 'globex/admins'] }, 'invalid-claims'],
    ['missing exp', { exp: undefined }, 'invalid-claims'],
    ['missing jti', { jti: undefined }, 'invalid-claims'],
  ])('refuses %s', (_name, overrides, expected) => {
    const payload: Record<string, unknown> = { ...valid(), ...overrides };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    expect(reason(payload)).toBe(expected);
  });

  it('tolerates up to 5 s of clock skew in both directions', () => {
    expect(reason(valid(), NOW + 64)).toBe('accepted');
    expect(reason(valid(), NOW - 5)).toBe('accepted');
    expect(reason(valid(), NOW + 65)).toBe('expired');
  });
});

describe('remote JWKS (DESIGN §2)', () => {
  it('refreshes at most once per cooldown for unknown kids, and fails closed when the issuer is unreachable', async () => {
    const http = await import('node:http');
    let fetches = 0;
    const server = http.createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [signer.publicJwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const remote = new TokenVerifier({ issuer: `http://127.0.0.1:${port}`, audience: CLUSTER });
      await remote.loadKeys();
      expect(fetches).toBe(1);
      const now = Math.floor(Date.now() / 1000);
      const good = await signer.sign({ ...signer.claims(now), iss: `http://127.0.0.1:${port}` });
      await expect(remote.verify(good)).resolves.toMatchObject({ user: 'agent:deployer' });
      const stranger = await createTestSigner('rotated-key');
      const unknown = await stranger.sign({ ...stranger.claims(now), iss: `http://127.0.0.1:${port}` });
      for (let i = 0; i < 5; i++) expect(await refusalOf(remote.verify(unknown))).toBe('unknown-key');
      expect(fetches).toBeLessThanOrEqual(2);
    } finally {
      server.close();
    }
    const unreachable = new TokenVerifier({ issuer: `http://127.0.0.1:${port}`, audience: CLUSTER });
    expect(await refusalOf(unreachable.verify(await signer.sign(signer.claims())))).toBe('jwks-unavailable');
  });
});
