/**
 * What a relay says about itself, read as untrusted input (a connector key
 * proves the cluster, nothing more): its version in the handshake and its
 * readiness in CONTROL messages. Both end up in the store and in cluster
 * status, so each is checked and bounded here, once.
 */

/** Characters of a not-ready reason kept; relays send a line such as "waiting for the Kubernetes API server". */
export const MAX_READINESS_REASON_CHARS = 300;
const RELAY_VERSION = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;
/** Said for a relay that reports it is not ready without saying why (relays before the reason existed). */
export const READINESS_REASON_UNSAID = 'the relay did not say why';

export interface StatedReadiness {
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
}

/** A `{"type": "ready", "ready": bool, "reason"?: string}` message, or undefined for anything else. */
export function statedReadiness(message: unknown): StatedReadiness | undefined {
  const { type, ready, reason } = (message ?? {}) as { type?: unknown; ready?: unknown; reason?: unknown };
  if (type !== 'ready' || typeof ready !== 'boolean') return undefined;
  if (ready) return { ready };
  const said = typeof reason === 'string' ? boundedText(reason, MAX_READINESS_REASON_CHARS) : '';
  return { ready, reason: said === '' ? READINESS_REASON_UNSAID : said };
}

/** The version a relay gave in its handshake, if it looks like one (a semver and the like), else undefined. */
export function relayVersionOf(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && RELAY_VERSION.test(header) ? header : undefined;
}

/** One line of at most `max` characters (code points, so no pair is cut): control characters become spaces. */
export function boundedText(text: string, max: number): string {
  // max + 1 characters take at most 2 (max + 1) UTF-16 units: enough to see whether the text is longer.
  const line = text.slice(0, (max + 1) * 2).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
  const points = Array.from(line);
  return points.length <= max ? line : `${points.slice(0, max - 1).join('')}…`;
}
