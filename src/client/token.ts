/**
 * The client side of a token (DESIGN §6): `kube-relay token` asks the issuer
 * for a 60-second token and prints it as a client.authentication.k8s.io/v1
 * ExecCredential, so kubectl runs it as an exec credential plugin and runs
 * it again by itself once `expirationTimestamp` has passed.
 */
import { fetchWithCa, UNTRUSTED_CERTIFICATE_CODES } from '../https-fetch.js';

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
    throw new TokenRequestError(`cannot reach the issuer at ${url.origin}: ${(err as Error).message}${trustHint(err, request)}`);
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


function trustHint(err: unknown, request: TokenRequest): string {
  const code = (err as { code?: string }).code ?? '';
  const flag = request.trustFlag ?? '--ca-file';
  if (UNTRUSTED_CERTIFICATE_CODES.has(code)) {
    return request.issuerCa
      ? ` (the CA given with ${flag} did not sign the issuer's certificate: give the issuer's CA, e.g. DATA/tls/ca.crt of the issuer)`
      : ` (the issuer's certificate is not signed by a system CA: pass its CA with ${flag}, e.g. DATA/tls/ca.crt of the issuer)`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return " (the issuer's certificate does not name this host: use the URL the issuer prints, or add the name with the issuer's --tls-san)";
  if (code === 'CERT_HAS_EXPIRED') return " (the issuer's certificate has expired)";
  if (code === 'ECONNREFUSED') return ' (is the issuer running, and is this its address?)';
  return '';
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
