/**
 * The audit record (DESIGN §5): one per request, and one per upgraded
 * session when it ends. It names who did what where, never with what
 * credential: no tokens, no bodies, no header values beyond the listed ones.
 *
 * A request that is forwarded has two records with the same requestId, as
 * kube-apiserver writes one event per stage with the same auditID: a
 * smaller `RequestReceived` line, on disk before anything goes upstream,
 * so a relay killed mid-request still leaves a trace of it; and the
 * `ResponseComplete` record with every field, written when it ends. A
 * request the relay refuses has only the latter.
 */
import { type ApiRequest, requestRawHeaders } from '../http-messages.js';
import type { AgentIdentity } from '../identity.js';
import { headerValues, TOKEN_QUERY_PARAMETERS } from '../request-stages/authenticate.js';
import { FIELD_LIMITS, truncated, truncatedList } from './bounded-fields.js';
import { parseRequestInfo, type RequestInfo } from './request-info.js';

/** The header through which `kube-relay proxy` names its run's session (src/proxy/local-proxy.ts). */
export const PROXY_SESSION_HEADER = 'kube-relay-session';

export type Decision = 'allowed' | 'denied-by-relay' | 'denied-by-policy' | 'denied-by-cluster' | 'error';
export const DECISIONS: readonly Decision[] = ['allowed', 'denied-by-relay', 'denied-by-policy', 'denied-by-cluster', 'error'];

export type Stage = 'RequestReceived' | 'ResponseComplete';

/** What a request's records share: what is known of it once it is authenticated. */
interface RequestFields {
  time: string;
  requestId: string;
  stage: Stage;
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
  kubectlCommand?: string;
  kubectlSession?: string;
  /** The `Kube-Relay-Session` header `kube-relay proxy` sends: the id of its run's session (issuer-assigned; checked against the agent there). */
  proxySession?: string;
  // Upgrades (exec, attach, port-forward), from the request's query:
  command?: string[];
  container?: string;
  /** port-forward: the ports its query names; absent when it names none, as kubectl's never does (requestedPorts). */
  ports?: string[];
}

/**
 * A change made through the admin API (DESIGN §10, docs/audit.md "Admin
 * records"): which admin, which action, on which object, when. Never a key,
 * never a request body.
 */
export interface AdminAuditRecord {
  time: string;
  kind: 'admin';
  /** The admin's name, and its org (null for an all-orgs admin). */
  admin: string;
  adminOrg: string | null;
  action: AdminAction;
  /** An all-orgs admin's org is null. */
  object: { kind: 'agent' | 'cluster' | 'admin' | 'grant' | 'team'; name: string; org: string | null };
  /** `mint-token` only: the cluster the token is for. */
  cluster?: string;
  /** `mint-token` only: the token's jti, as the relays' records carry it. */
  tokenId?: string;
  /** `console`: made in the web console (DESIGN §14); absent: through the admin API. */
  via?: 'console';
  sourceIp: string | null;
}

export type AdminAction = 'create' | 'revoke' | 'rotate-key' | 'mint-token' | 'remove' | 'set-policy' | 'clear-policy';

/** Written before the request is forwarded: who asks what, without an outcome. */
export interface ReceivedRecord extends RequestFields {
  stage: 'RequestReceived';
}

/** The record of a request that has ended, with every field of DESIGN §5. */
export interface AuditRecord extends RequestFields {
  stage: 'ResponseComplete';
  status: number;
  decision: Decision;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Why the relay refused, as a stable reason code (never token material). */
  reason?: string;
  /** The agent policy's rule that refused the request, or `dry-run` for a change sent with dryRun=All (DESIGN §13). */
  policyRule?: string;
  // Upgraded sessions only:
  protocol?: string;
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

/** What the audit knows of a request, filled in as it is handled, whoever answers it (relay or hub). */
export interface AuditedRequest {
  readonly requestId: string;
  readonly cluster: string;
  readonly mode: 'direct' | 'tunnel';
  readonly receivedAt: number;
  readonly method: string;
  /** The origin-form target as the relay sees it (through the hub: without `/clusters/<name>`). */
  readonly target: string;
  readonly info: RequestInfo;
  readonly verb: string;
  readonly sourceIp: string | null;
  readonly rawHeaders: readonly string[];
  identity?: AgentIdentity | undefined;
  status?: number;
  decision?: Decision;
  reason?: string;
  policyRule?: string;
  bytesIn: number;
  bytesOut: number;
  session?: { protocol: string; startedAt: number };
}

export function auditedRequest(req: ApiRequest, cluster: string, mode: 'direct' | 'tunnel', target: string, requestId: string): AuditedRequest {
  const method = req.method ?? 'GET';
  const info = parseRequestInfo(method, target.startsWith('/') ? target : '/');
  return {
    requestId,
    cluster,
    mode,
    receivedAt: Date.now(),
    method,
    target,
    info,
    verb: auditVerb(info.verb, info.subresource),
    sourceIp: req.socket.remoteAddress ?? null,
    // An HTTP/2 request's as HTTP/1.1 carries them (no pseudo-headers), for every stage and record alike.
    rawHeaders: requestRawHeaders(req),
    bytesIn: 0,
    bytesOut: 0,
  };
}

export function pathOf(target: string): string {
  const queryStart = target.indexOf('?');
  return queryStart === -1 ? target : target.slice(0, queryStart);
}

/**
 * The fields every record of the request carries, each client-controlled
 * one bounded (bounded-fields.ts). The session fields are filled in for
 * upgrade requests only (`upgraded`): `command`, `container`, `ports`.
 */
function requestFields<S extends Stage>(request: AuditedRequest, stage: S, time: number, upgraded: boolean): RequestFields & { stage: S } {
  const queryStart = request.target.indexOf('?');
  const query = queryStart === -1 ? '' : request.target.slice(queryStart + 1);
  const firstHeader = (name: string) => headerValues(request.rawHeaders, name)[0];
  const userAgent = firstHeader('user-agent');
  const fields: RequestFields & { stage: S } = {
    time: new Date(time).toISOString(),
    requestId: request.requestId,
    stage,
    cluster: request.cluster,
    mode: request.mode,
    user: request.identity?.user ?? null,
    groups: request.identity?.groups ?? [],
    tokenId: request.identity?.tokenId ?? null,
    sourceIp: request.sourceIp,
    userAgent: userAgent === undefined ? null : truncated(userAgent, FIELD_LIMITS.userAgent),
    method: request.method,
    path: truncated(pathOf(request.target), FIELD_LIMITS.path),
    // Redacted first, so a cut can never leave part of a token behind.
    query: truncated(redactQuery(query, TOKEN_QUERY_PARAMETERS), FIELD_LIMITS.query),
    verb: request.verb,
    namespace: truncated(request.info.namespace, FIELD_LIMITS.identifier),
    resource: truncated(request.info.resource, FIELD_LIMITS.identifier),
    subresource: truncated(request.info.subresource, FIELD_LIMITS.identifier),
    name: truncated(request.info.name, FIELD_LIMITS.identifier),
  };
  const kubectlCommand = firstHeader('kubectl-command');
  const kubectlSession = firstHeader('kubectl-session');
  if (kubectlCommand) fields.kubectlCommand = truncated(kubectlCommand, FIELD_LIMITS.kubectlCommand);
  if (kubectlSession) fields.kubectlSession = truncated(kubectlSession, FIELD_LIMITS.kubectlSession);
  const proxySession = firstHeader(PROXY_SESSION_HEADER);
  if (proxySession) fields.proxySession = truncated(proxySession, FIELD_LIMITS.kubectlSession);
  if (upgraded) {
    const params = new URLSearchParams(query);
    if (request.info.subresource === 'exec') fields.command = truncatedList(params.getAll('command'), FIELD_LIMITS.command);
    if (params.has('container')) fields.container = truncated(params.get('container')!, FIELD_LIMITS.identifier);
    if (request.info.subresource === 'portforward') {
      const ports = requestedPorts(params);
      if (ports.length > 0) fields.ports = truncatedList(ports, FIELD_LIMITS.ports);
    }
  }
  return fields;
}

/** The RequestReceived record: written once the request is admitted, before it is forwarded; `time` is its arrival. */
export function receivedRecord(request: AuditedRequest, upgrade: boolean): ReceivedRecord {
  return requestFields(request, 'RequestReceived', request.receivedAt, upgrade);
}

/** The ResponseComplete record: `time` is when the request or session ended. */
export function auditRecord(request: AuditedRequest, endedAt: number): AuditRecord {
  // Completed in place rather than spread into a new object: this runs once per request (issue 21).
  const record = requestFields(request, 'ResponseComplete', endedAt, request.session !== undefined) as AuditRecord;
  record.status = request.status ?? 0;
  record.decision = request.decision ?? 'error';
  record.durationMs = endedAt - request.receivedAt;
  record.bytesIn = request.bytesIn;
  record.bytesOut = request.bytesOut;
  if (request.reason) record.reason = request.reason;
  if (request.policyRule) record.policyRule = request.policyRule;
  if (request.session) {
    record.protocol = request.session.protocol;
    record.startedAt = new Date(request.session.startedAt).toISOString();
    record.endedAt = new Date(endedAt).toISOString();
  }
  return record;
}

/**
 * The ports a port-forward request names in its query: `ports` repeated or
 * comma-separated, as kube-apiserver reads PodPortForwardOptions
 * (Convert_Slice_string_To_Slice_int32). kubectl (1.27 to 1.33) names none:
 * over SPDY, and SPDY tunnelled in a WebSocket, each stream carries its port
 * in a `port` header inside the SPDY framing, which the relay forwards
 * without parsing, so such a record has no `ports`.
 */
function requestedPorts(params: URLSearchParams): string[] {
  return params.getAll('ports').flatMap((value) => value.split(',')).filter((port) => port !== '');
}
