/**
 * A `fetch` that trusts a given CA. Node 20's global fetch cannot take a CA
 * without the undici package's Agent, and the issuer's certificate usually
 * comes from the data directory's own CA (DESIGN §3.1), so clients of the
 * issuer (the token command, JWKS and revocation polling) go through this.
 */
import http from 'node:http';
import https from 'node:https';
import { createSecureContext } from 'node:tls';

export interface FetchWithCaOptions {
  /** PEM bundle to trust instead of the system roots; undefined = system roots. */
  ca?: string | Buffer | undefined;
  timeoutMs?: number;
}

export type FetchLike = (url: string | URL, init?: { method?: string; headers?: Record<string, string> | Headers; body?: string; signal?: AbortSignal | null }) => Promise<Response>;

const DEFAULT_TIMEOUT_MS = 10_000;

/** Node's codes for a certificate chain it would not trust (OpenSSL's X509_V_ERR_* names): the CA given is the usual fix. */
export const UNTRUSTED_CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);
/** Answers from the issuer are small; a larger one is a misconfiguration, not data. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

export function fetchWithCa(options: FetchWithCaOptions = {}): FetchLike {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // Parsed once: given `ca` instead, every call would build an OpenSSL context and parse the bundle again
  // (a relay under load posts central-audit batches several times a second; issue 21).
  const secureContext = options.ca ? createSecureContext({ ca: options.ca }) : undefined;
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(String(input));
      const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
      if (!transport) {
        reject(new Error(`unsupported URL scheme in ${url.origin}`));
        return;
      }
      const req = transport.request(url, {
        method: init.method ?? 'GET',
        headers: Object.fromEntries(new Headers(init.headers)),
        ...(url.protocol === 'https:' && secureContext ? { secureContext } : {}),
        timeout: timeoutMs,
        signal: init.signal ?? undefined,
        // A fresh connection per call: these calls are seconds apart, and a pooled socket reused just as
        // the server's keep-alive timeout closes it fails with "socket hang up" (Node's global agent and
        // server both default to 5 s).
        agent: false,
      });
      req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new Error(`answer from ${url.origin} exceeds ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
          }
          const body = [101, 204, 205, 304].includes(res.statusCode ?? 0) ? null : Buffer.concat(chunks);
          resolve(new Response(body, { status: res.statusCode ?? 502, headers }));
        });
      });
      req.end(init.body);
    });
}

/** What to do about a failed call to the issuer, when its cause suggests it; `trustFlag` sets `ca`. */
export function issuerTrustHint(err: unknown, ca: unknown, trustFlag: string): string {
  const code = (err as { code?: string }).code ?? '';
  if (UNTRUSTED_CERTIFICATE_CODES.has(code)) {
    return ca
      ? ` (the CA given with ${trustFlag} did not sign the issuer's certificate: give the issuer's CA, e.g. DATA/tls/ca.crt of the issuer)`
      : ` (the issuer's certificate is not signed by a system CA: pass its CA with ${trustFlag}, e.g. DATA/tls/ca.crt of the issuer)`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return " (the issuer's certificate does not name this host: use the URL the issuer prints, or add the name with the issuer's --tls-san)";
  if (code === 'CERT_HAS_EXPIRED') return " (the issuer's certificate has expired)";
  if (code === 'ECONNREFUSED') return ' (is the issuer running, and is this its address?)';
  return '';
}
