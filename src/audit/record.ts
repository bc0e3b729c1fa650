/**
 * The audit record (DESIGN §5): one per request, and one per upgraded
 * session when it ends. It names who did what where, never with what
 * credential: no tokens, no bodies, no header values beyond the listed ones.
 */
export type Decision = 'allowed' | 'denied-by-relay' | 'denied-by-cluster' | 'error';

export interface AuditRecord {
  time: string;
  requestId: string;
  cluster: string;
  mode: 'direct' | 'tunnel';
  user: string | null;
  groups: string[];
  tokenId: string | null;
  sourceIp: string | null;
  userAgent: string | null;
  method: string;
  path: string;
  query: string;
  verb: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  status: number;
  decision: Decision;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  kubectlCommand?: string;
  kubectlSession?: string;
  /** Why the relay refused, as a stable reason code (never token material). */
  reason?: string;
  // Upgraded sessions only:
  protocol?: string;
  command?: string[];
  container?: string;
  ports?: string[];
  startedAt?: string;
  endedAt?: string;
}

/** The decision for an answer the relay did not make itself. */
export function decisionForUpstreamStatus(status: number): Decision {
  if (status === 401 || status === 403) return 'denied-by-cluster';
  if (status >= 500 || status === 0) return 'error';
  return 'allowed';
}

/** Subresources that kube-apiserver authorizes as `create`/`get` but that the audit names by what they do. */
const STREAMING_VERBS = new Set(['exec', 'attach', 'portforward', 'proxy']);

export function auditVerb(kubernetesVerb: string, subresource: string): string {
  return STREAMING_VERBS.has(subresource) ? subresource : kubernetesVerb;
}

/**
 * The query string as sent, except that the value of each parameter in
 * `credentialNames` becomes `redacted`: a request carrying a token there is
 * refused, and its record must not keep the token (names are compared
 * decoded, as the refusal compares them, so `access%5Ftoken` counts too).
 */
export function redactQuery(query: string, credentialNames: readonly string[]): string {
  if (query === '') return query;
  return query
    .split('&')
    .map((pair) => {
      const equals = pair.indexOf('=');
      const rawName = equals === -1 ? pair : pair.slice(0, equals);
      return credentialNames.includes(decodeQueryComponent(rawName)) ? `${rawName}=redacted` : pair;
    })
    .join('&');
}

function decodeQueryComponent(component: string): string {
  try {
    return decodeURIComponent(component.replaceAll('+', ' '));
  } catch {
    return component;
  }
}
