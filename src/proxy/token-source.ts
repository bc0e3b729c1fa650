/**
 * The local proxy's credential (DESIGN §12): it holds the agent's API key
 * and mints 60-second tokens itself, renewing each before it expires, so
 * the clients behind the proxy hold nothing. One mint at a time however many
 * requests wait for it. A refusal by the issuer (a revoked agent, a
 * rotated key) is kept as the reason requests are refused, until a mint
 * succeeds again.
 */
import { requestToken, type IssuedToken, type TokenRequest } from '../client/token.js';

/** A token is renewed when less than this is left of it (a request started now must not carry an expiring one). */
const RENEW_BEFORE_MS = 15_000;

export class TokenSource {
  private current: { token: string; expiresAt: number } | undefined;
  private minting: Promise<string> | undefined;
  /** Why the last mint failed; cleared by the next success. */
  failure: string | undefined;

  constructor(
    private readonly request: TokenRequest,
    private readonly mint: (request: TokenRequest) => Promise<IssuedToken> = requestToken,
    private readonly now: () => number = Date.now,
  ) {}

  /** The issuer refused the key elsewhere (the run's heartbeat): the token held is dropped, so the next request asks again and gets the refusal. */
  refuse(reason: string): void {
    this.current = undefined;
    this.failure = reason;
  }

  /** A token with at least RENEW_BEFORE_MS left; rejects with the issuer's reason when none can be had. */
  token(): Promise<string> {
    if (this.current && this.current.expiresAt - this.now() > RENEW_BEFORE_MS) return Promise.resolve(this.current.token);
    this.minting ??= this.mint(this.request)
      .then((issued) => {
        this.current = { token: issued.token, expiresAt: Date.parse(issued.expiresAt) };
        this.failure = undefined;
        return issued.token;
      })
      .catch((err: Error) => {
        this.current = undefined;
        this.failure = err.message;
        throw err;
      })
      .finally(() => {
        this.minting = undefined;
      });
    return this.minting;
  }
}
