/**
 * Stage 2, strip (DESIGN §3.3): the upstream header set is built from the
 * client's headers minus everything that could carry identity or that only
 * concerns this hop. The order is fixed and mirrors Go's
 * httputil.ReverseProxy (removeHopByHopHeaders, golang/go#50580): tokens
 * named in `Connection` first, then the hop-by-hop list, then identity
 * headers. Only a validated `Upgrade` is re-added.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { BEARER_SUBPROTOCOL_PREFIX, listHeaderValues } from './authenticate.js';
import { RelayRefusal } from './errors.js';

/** RFC 9110 §7.6.1, plus the de-facto `Proxy-Connection` and `Keep-Alive`. */
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * A header name as a proxy that folds `_` into `-` would read it (nginx with
 * underscores_in_headers, CGI-style servers): `Impersonate_User` must never
 * become `Impersonate-User` one hop further on.
 */
function canonicalName(lowerName: string): string {
  return lowerName.replaceAll('_', '-');
}

/**
 * Headers through which a client could claim an identity or a source
 * address: never forwarded. kube-apiserver takes the client address for its
 * audit log from X-Forwarded-For, then X-Real-Ip (k8s.io/apimachinery
 * util/net GetClientIP).
 */
function isIdentityHeader(lowerName: string): boolean {
  const name = canonicalName(lowerName);
  return (
    name === 'authorization' ||
    name.startsWith('impersonate-') ||
    name.startsWith('x-remote-') ||
    name.startsWith('proxy-') ||
    name === 'forwarded' ||
    name.startsWith('x-forwarded-') ||
    name === 'x-real-ip'
  );
}

/** Upgrade protocols the API server speaks for exec, attach and port-forward (DESIGN §3.5). */
export type UpgradeProtocol = 'websocket' | 'SPDY/3.1';

/**
 * A client choosing its own identity is refused loudly (kube-oidc-proxy does
 * the same), in any letter case, with `_` for `-`, and whether or not
 * `Connection` names it.
 */
export function refuseClientImpersonation(rawHeaders: readonly string[]): void {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (canonicalName(rawHeaders[i]!.toLowerCase()).startsWith('impersonate-')) {
      throw new RelayRefusal('impersonation-forbidden', 'impersonation headers are not allowed through kube-relay: requests run as the agent named by the token');
    }
  }
}

/** The one `Upgrade` the relay will forward, or undefined for plain requests. */
export function validatedUpgrade(rawHeaders: readonly string[]): UpgradeProtocol | undefined {
  const offered = listHeaderValues(rawHeaders, 'upgrade');
  if (offered.length === 0) return undefined;
  if (offered.length === 1) {
    const protocol = offered[0]!.toLowerCase();
    if (protocol === 'websocket') return 'websocket';
    if (protocol === 'spdy/3.1') return 'SPDY/3.1';
  }
  throw new RelayRefusal('unsupported-upgrade', 'only "websocket" and "SPDY/3.1" upgrades are supported');
}

/** Adds a value under `name`, keeping the values of a repeated header apart and in order. */
export function appendHeader(headers: Record<string, string | string[]>, name: string, value: string): void {
  const earlier = headers[name];
  if (earlier === undefined) headers[name] = value;
  else if (typeof earlier === 'string') headers[name] = [earlier, value];
  else earlier.push(value);
}

/**
 * The client's headers that may travel upstream, as lower-case names; values
 * of repeated headers stay separate so nothing is merged or reordered.
 */
export function stripClientHeaders(rawHeaders: readonly string[], upgrade: UpgradeProtocol | undefined): OutgoingHttpHeaders {
  const connectionTokens = listHeaderValues(rawHeaders, 'connection');
  const namedInConnection = connectionTokens.length === 0 ? undefined : new Set(connectionTokens.map((token) => token.toLowerCase()));
  // No prototype: a header named __proto__ is a header like any other.
  const headers: Record<string, string | string[]> = Object.create(null);
  let chunked = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'transfer-encoding') chunked = true;
    if (namedInConnection?.has(name) || HOP_BY_HOP.has(name) || isIdentityHeader(name)) continue;
    appendHeader(headers, name, rawHeaders[i + 1]!);
  }
  const protocols = headers['sec-websocket-protocol'];
  if (protocols !== undefined) {
    // The bearer subprotocol carried the client's credential: it never goes upstream.
    const remaining = (typeof protocols === 'string' ? [protocols] : protocols)
      .flatMap((value) => value.split(','))
      .map((item) => item.trim())
      .filter((item) => item !== '' && !item.startsWith(BEARER_SUBPROTOCOL_PREFIX));
    if (remaining.length > 0) headers['sec-websocket-protocol'] = remaining.join(', ');
    else delete headers['sec-websocket-protocol'];
  }
  if (upgrade) {
    headers.connection = 'Upgrade';
    headers.upgrade = upgrade;
  } else if (chunked && headers['content-length'] === undefined) {
    // The body arrived chunked (Node has already de-chunked and validated it); keep it chunked upstream,
    // or a DELETE body would be sent without framing.
    headers['transfer-encoding'] = 'chunked';
  }
  return headers;
}
