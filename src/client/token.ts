/**
 * The client side of a token (DESIGN §6): `kube-relay token` asks the issuer
 * for a 60-second token and prints it as a client.authentication.k8s.io/v1
 * ExecCredential, so kubectl runs it as an exec credential plugin and runs
 * it again by itself once `expirationTimestamp` has passed.
 */
import { fetchWithCa, issuerTrustHint } from '../https-fetch.js';

export interface TokenRequest {
  issuer: string;
  cluster: string;
  apiKey: string;
  issuerCa?: string | Buffer | undefined;
  /** The flag that sets `issuerCa`, named when the issuer's certificate is not trusted. */
  trustFlag?: string;
}

export interface IssuedToken {
  token: string;
  expiresAt: string;
}

export class TokenRequestError extends Error {}

export async function requestToken(request: TokenRequest): Promise<IssuedToken> {
  const url = new URL('v1/token', request.issuer.endsWith('/') ? request.issuer : `${request.issuer}/`);
  let res: Response;
  try {
    res = await fetchWithCa({ ca: request.issuerCa })(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${request.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cluster: request.cluster }),
    });
  } catch (err) {
    throw new TokenRequestError(`cannot reach the issuer at ${url.origin}: ${(err as Error).message}${issuerTrustHint(err, request.issuerCa, request.trustFlag ?? '--ca-file')}`);
  }
  const body = (await res.json().catch(() => ({}))) as { token?: unknown; expiresAt?: unknown; message?: unknown };
  if (!res.ok) {
    const why = typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
    throw new TokenRequestError(`the issuer refused a token for cluster "${request.cluster}": ${why}`);
  }
  if (typeof body.token !== 'string' || typeof body.expiresAt !== 'string') {
    throw new TokenRequestError(`the issuer at ${url.origin} answered without a token`);
  }
  return { token: body.token, expiresAt: body.expiresAt };
}


export function execCredential(issued: IssuedToken): object {
  return {
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    status: {
      token: issued.token,
      // RFC 3339 without fractions, as client-go's metav1.Time expects.
      expirationTimestamp: new Date(issued.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
  };
}
