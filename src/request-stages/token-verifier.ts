/**
 * Verifying agent tokens (DESIGN §2), shared by the relay and the hub.
 *
 * Two layers, like jose's own `jwtVerify`: `compactVerify` checks the
 * signature against an algorithm allow-list and the issuer's JWKS, then
 * `validateClaims`, a pure function of the payload and a clock, decides
 * whether the claims make an agent identity. Only the claims listed in
 * DESIGN §2 are read; everything else in a token is ignored.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  compactVerify,
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
} from 'jose';
import { fetchWithCa } from '../https-fetch.js';
import type { Logger } from '../log.js';
import {
  type AgentIdentity,
  CLOCK_SKEW_SECONDS,
  isAgentUser,
  isTeamGroup,
  MAX_GROUPS,
  MAX_TOKEN_BYTES,
  TOKEN_ALGORITHMS,
  TOKEN_LIFETIME_SECONDS,
  JWKS_REFRESH_COOLDOWN_MS,
} from '../identity.js';
import { POLICY_CLAIM, readPolicyClaim } from '../policy/policy.js';
import { RelayRefusal } from './errors.js';

/** Time to wait for the issuer's JWKS before failing closed. */
const JWKS_TIMEOUT_MS = 5_000;
/** Keys are re-fetched at least this often even when every `kid` is known. */
const JWKS_MAX_AGE_MS = 10 * 60_000;
/** Verified tokens remembered at once; beyond this the oldest are forgotten (and verified again if seen). */
const VERIFIED_CACHE_SIZE = 10_000;
/** A token from another issuer is reported at most this often per distinct `iss`. */
const WRONG_ISSUER_LOG_INTERVAL_MS = 60_000;
/** Distinct `iss` values whose reports are rate-limited at once. */
const WRONG_ISSUERS_TRACKED = 100;
/** An `iss` is not a secret, but it is the client's text: the log keeps its start. */
const MAX_LOGGED_ISSUER_CHARS = 200;
const KID_FORMAT = /^[A-Za-z0-9._-]{1,128}$/;
const JTI_FORMAT = /^[\x21-\x7e]{1,128}$/;

export interface ClaimExpectations {
  issuer: string;
  audience: string;
}

/** The claims check, a pure function of the payload and the time (seconds since the epoch). */
export function validateClaims(payload: JWTPayload, expect: ClaimExpectations, nowSeconds: number): AgentIdentity {
  const { iss, aud, sub, iat, nbf, exp, jti } = payload;
  const groups = (payload as { groups?: unknown }).groups;
  if (iss !== expect.issuer) throw new RelayRefusal('wrong-issuer', 'token was issued by another issuer');
  // An array audience is refused even when it contains this cluster: a token is for exactly one cluster.
  if (typeof aud !== 'string' || aud !== expect.audience) {
    throw new RelayRefusal('wrong-audience', 'token is not for this cluster');
  }
  if (!isWholeSeconds(iat) || !isWholeSeconds(nbf) || !isWholeSeconds(exp)) {
    throw new RelayRefusal('invalid-claims', 'token lacks iat, nbf or exp');
  }
  if (nowSeconds >= exp + CLOCK_SKEW_SECONDS) throw new RelayRefusal('expired', 'token has expired');
  if (nbf > nowSeconds + CLOCK_SKEW_SECONDS) throw new RelayRefusal('not-yet-valid', 'token is not valid yet');
  if (iat > nowSeconds + CLOCK_SKEW_SECONDS) throw new RelayRefusal('issued-in-future', 'token was issued in the future');
  if (exp - iat > TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS || exp <= iat) {
    throw new RelayRefusal('lifetime-too-long', `token lifetime exceeds ${TOKEN_LIFETIME_SECONDS} seconds`);
  }
  if (typeof sub !== 'string' || !isAgentUser(sub)) throw new RelayRefusal('invalid-claims', 'token subject is not an agent');
  if (typeof jti !== 'string' || !JTI_FORMAT.test(jti)) throw new RelayRefusal('invalid-claims', 'token lacks a valid jti');
  if (!Array.isArray(groups) || groups.length > MAX_GROUPS || !groups.every((g) => typeof g === 'string' && isTeamGroup(g))) {
    throw new RelayRefusal('invalid-claims', `token groups must be at most ${MAX_GROUPS} <org>/<team> names`);
  }
  // An agent belongs to one org (DESIGN §2): the issuer never mints groups of two, so such a token is forged or from a broken issuer.
  if (new Set((groups as string[]).map((group) => group.slice(0, group.indexOf('/')))).size > 1) {
    throw new RelayRefusal('invalid-claims', 'token groups must all be of one org');
  }
  const identity: AgentIdentity = { user: sub, groups: [...(groups as string[])], tokenId: jti, issuedAt: iat, expiresAt: exp };
  const claim = (payload as Record<string, unknown>)[POLICY_CLAIM];
  if (claim !== undefined) {
    try {
      identity.policy = readPolicyClaim(claim);
    } catch (err) {
      // Inside the signature, so a bad one is a broken or newer issuer: refused, never a brake dropped.
      throw new RelayRefusal('invalid-claims', `token policy cannot be read: ${(err as Error).message}`);
    }
  }
  return identity;
}

function isWholeSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

type KeySet = (...args: Parameters<ReturnType<typeof createLocalJWKSet>>) => ReturnType<ReturnType<typeof createLocalJWKSet>>;

export interface TokenVerifierOptions extends ClaimExpectations {
  /** `--jwks-file`: verify offline against this JWKS. */
  jwksFile?: string | undefined;
  /** The issuer's own keys, read in-process (the hub inside the issuer). */
  localKeys?: () => JSONWebKeySet;
  /** `--issuer-ca-file`: PEM trust for fetching `<issuer>/.well-known/jwks.json`. */
  issuerCa?: string | Buffer | undefined;
  /** Where validly signed tokens from another issuer are reported (rate-limited): usually a misconfigured issuer URL. */
  log?: Logger | undefined;
  now?: () => number;
}

export class TokenVerifier {
  private readonly keySet: KeySet;
  private readonly remote?: ReturnType<typeof createRemoteJWKSet>;
  private readonly now: () => number;
  private keysLoaded: boolean;
  private readonly wrongIssuers: WrongIssuerLog | undefined;
  /** Where the keys are fetched from, for logs; undefined when they are read locally. */
  readonly jwksUrl?: string;
  /**
   * Payloads of tokens whose signature verified, keyed by the SHA-256 of the
   * whole token (never a prefix: two tokens sharing a header and payload
   * differ only in the signature). A token is used for many requests within
   * its 60 seconds, and the ES256 check is the costliest step of a request;
   * the claims, expiry included, are still validated on every use.
   */
  private readonly verified = new Map<string, JWTPayload>();

  constructor(private readonly options: TokenVerifierOptions) {
    this.now = options.now ?? Date.now;
    this.wrongIssuers = options.log ? new WrongIssuerLog(options.log, options.issuer, this.now) : undefined;
    if (options.jwksFile) {
      const jwks = JSON.parse(readFileSync(options.jwksFile, 'utf8')) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error(`--jwks-file ${options.jwksFile} is not a JWKS (no "keys" array)`);
      this.keySet = createLocalJWKSet(jwks);
      this.keysLoaded = true;
    } else if (options.localKeys) {
      const localKeys = options.localKeys;
      let current: { json: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
      // Re-import only when the key set changed (a rotation), not on every token.
      this.keySet = (header, token) => {
        const jwks = localKeys();
        const json = JSON.stringify(jwks);
        if (current?.json !== json) current = { json, set: createLocalJWKSet(jwks) };
        return current.set(header, token);
      };
      this.keysLoaded = true;
    } else {
      const url = new URL('.well-known/jwks.json', options.issuer.endsWith('/') ? options.issuer : `${options.issuer}/`);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`--issuer ${options.issuer} is not an http(s) URL`);
      this.jwksUrl = url.toString();
      this.remote = createRemoteJWKSet(url, {
        timeoutDuration: JWKS_TIMEOUT_MS,
        cooldownDuration: JWKS_REFRESH_COOLDOWN_MS,
        cacheMaxAge: JWKS_MAX_AGE_MS,
        [customFetch]: fetchWithCa({ ca: options.issuerCa, timeoutMs: JWKS_TIMEOUT_MS }),
      });
      this.keySet = this.remote;
      this.keysLoaded = false;
    }
  }

  /** True once the keys have been loaded at least once. */
  get ready(): boolean {
    return this.keysLoaded;
  }

  /** Fetches the JWKS now (start-up and readiness); rejects when the issuer cannot be reached. */
  async loadKeys(): Promise<void> {
    if (!this.remote) return;
    await this.remote.reload();
    this.keysLoaded = true;
  }

  async verify(token: string): Promise<AgentIdentity> {
    if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new RelayRefusal('oversized-token', 'token is too large');
    const digest = createHash('sha256').update(token).digest('base64');
    const known = this.verified.get(digest);
    if (known) {
      try {
        return validateClaims(known, this.options, Math.floor(this.now() / 1000));
      } catch (err) {
        this.verified.delete(digest);
        throw err;
      }
    }
    const payload = await this.verifySignature(token);
    let identity: AgentIdentity;
    try {
      identity = validateClaims(payload, this.options, Math.floor(this.now() / 1000));
    } catch (err) {
      // Signed by the issuer's own key yet naming another URL: kubectl shows only "You must be logged in".
      if (err instanceof RelayRefusal && err.reason === 'wrong-issuer') this.wrongIssuers?.report(payload.iss);
      throw err;
    }
    this.remember(digest, payload);
    return identity;
  }

  private remember(digest: string, payload: JWTPayload): void {
    if (this.verified.size >= VERIFIED_CACHE_SIZE) {
      const nowSeconds = Math.floor(this.now() / 1000);
      for (const [key, cached] of this.verified) {
        if ((cached.exp ?? 0) + CLOCK_SKEW_SECONDS <= nowSeconds) this.verified.delete(key);
      }
      // Still full of live tokens: forget the oldest (Map iterates in insertion order).
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    }
    this.verified.set(digest, payload);
  }

  private async verifySignature(token: string): Promise<JWTPayload> {
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      throw new RelayRefusal('malformed-token', 'token is not a signed JWT');
    }
    if (typeof kid !== 'string' || !KID_FORMAT.test(kid)) throw new RelayRefusal('malformed-token', 'token header lacks a valid kid');
    let payload: JWTPayload;
    try {
      const verified = await compactVerify(token, this.keySet, { algorithms: [...TOKEN_ALGORITHMS] });
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as JWTPayload;
      this.keysLoaded = true;
    } catch (err) {
      throw refusalFor(err);
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      throw new RelayRefusal('malformed-token', 'token payload is not a JSON object');
    }
    return payload;
  }
}

/**
 * Reports tokens whose `iss` is not the expected issuer, once per interval
 * per received value, with how many were not reported in between. The
 * usual cause is one issuer reached by two URLs (`https://localhost:8443`
 * against `https://127.0.0.1:8443`), which no client message names.
 */
class WrongIssuerLog {
  private readonly reported = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly expected: string,
    private readonly now: () => number,
  ) {}

  report(iss: unknown): void {
    const received = boundedIssuer(iss);
    const now = this.now();
    const last = this.reported.get(received);
    if (last && now - last.at < WRONG_ISSUER_LOG_INTERVAL_MS) {
      last.suppressed++;
      return;
    }
    this.reported.delete(received);
    if (this.reported.size >= WRONG_ISSUERS_TRACKED) this.reported.delete(this.reported.keys().next().value!);
    this.reported.set(received, { at: now, suppressed: 0 });
    this.log.warn(`refused a token issued by ${received}: tokens must be issued by ${this.expected} (the issuer URL must match exactly)`, {
      expectedIssuer: this.expected,
      receivedIssuer: received,
      ...(last ? { notLoggedSince: new Date(last.at).toISOString(), notLogged: last.suppressed } : {}),
    });
  }
}

function boundedIssuer(iss: unknown): string {
  const text = typeof iss === 'string' ? iss : iss === undefined ? '(no iss claim)' : JSON.stringify(iss);
  return text.length > MAX_LOGGED_ISSUER_CHARS ? `${text.slice(0, MAX_LOGGED_ISSUER_CHARS)}…` : text;
}

function refusalFor(err: unknown): RelayRefusal {
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new RelayRefusal('algorithm-not-allowed', 'token algorithm is not allowed');
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new RelayRefusal('unknown-key', 'token was signed by an unknown key');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new RelayRefusal('bad-signature', 'token signature is invalid');
  if (err instanceof errors.JWSInvalid || err instanceof SyntaxError || err instanceof errors.JWTInvalid) {
    return new RelayRefusal('malformed-token', 'token is not a signed JWT');
  }
  // Timeouts, unreachable or broken JWKS: fail closed, and say it is the relay's problem.
  return new RelayRefusal('jwks-unavailable', 'the relay cannot load the issuer keys right now; try again');
}
