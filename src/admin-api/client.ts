/**
 * A client of a remote issuer's admin API (DESIGN §10), for the remote CLI.
 * Refusals come back as the same errors the control operations throw
 * locally (NotFoundError for 404, …) with the issuer's sentence, so a
 * command reports and exits alike on either path. Lists are read to the
 * end, page by page; sessions and audit records, which grow without end,
 * one page at a time.
 */
import type { Page } from '../control/operations.js';
import type { AuditQuery, Paging, SessionDetail, SessionQuery } from '../control/sessions.js';
import { policySubject, type PolicySubjectRequest } from '../control/policies.js';
import type { AuditRecordView, PolicyView } from '../control/views.js';
import { formatDenyRule, type Policy } from '../policy/policy.js';
import type { SessionView } from '../sessions/session.js';
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from '../issuer/errors.js';
import { AlreadyExistsError } from '../issuer/store/types.js';
import { fetchWithCa, type FetchLike, issuerTrustHint } from '../https-fetch.js';

export interface AdminApiClientOptions {
  /** The issuer's URL (https). */
  issuer: string;
  adminKey: string;
  /** Trust for the issuer's certificate (PEM); undefined: the system roots. */
  ca?: string | undefined;
  /** The flag that sets `ca`, named when the certificate is not trusted. */
  trustFlag?: string;
}

/** A refusal the issuer gave that has no local twin (401, 429, 501, 503): exit 1 with its sentence. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The page size the client asks for; the server's largest. */
const PAGE_SIZE = 500;

export class AdminApiClient {
  private readonly fetch: FetchLike;
  private readonly base: URL;

  constructor(private readonly options: AdminApiClientOptions) {
    this.fetch = fetchWithCa({ ca: options.ca, timeoutMs: 30_000 });
    this.base = new URL(options.issuer.endsWith('/') ? options.issuer : `${options.issuer}/`);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: object = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  put<T>(path: string, body: object): Promise<T> {
    return this.request<T>('PUT', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** An agent's or a team's policy (`GET …/policy`): an empty one when it has none. */
  getPolicy(subject: PolicySubjectRequest): Promise<PolicyView> {
    return this.get(policyPath(subject));
  }

  /** Replaces the whole policy (`PUT …/policy`); `now`: cut the tokens of the agents it applies to. */
  setPolicy(subject: PolicySubjectRequest, policy: Policy, now: boolean): Promise<PolicyView> {
    return this.put(policyPath(subject), {
      ...(policy.readOnly ? { readOnly: true } : {}),
      ...(policy.dryRun ? { dryRun: true } : {}),
      ...(policy.deny?.length ? { deny: policy.deny.map(formatDenyRule) } : {}),
      ...(policy.rate ? { rate: { perSecond: policy.rate.perSecond, burst: policy.rate.burst } } : {}),
      ...(policy.maxStreams !== undefined ? { maxStreams: policy.maxStreams } : {}),
      ...(now ? { now: true } : {}),
    });
  }

  /** Removes the policy (`DELETE …/policy`, `?now=true` to cut tokens too). */
  clearPolicy(subject: PolicySubjectRequest, now: boolean): Promise<PolicyView> {
    return this.delete(withQuery(policyPath(subject), { now: now ? 'true' : undefined }));
  }

  /** Every item of a list, following `continue` to the last page. */
  async list<T>(path: string): Promise<T[]> {
    const items: T[] = [];
    let next: string | undefined;
    do {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE), ...(next ? { continue: next } : {}) });
      const page = await this.get<{ items: T[]; continue?: string }>(`${path}${path.includes('?') ? '&' : '?'}${query}`);
      items.push(...page.items);
      next = page.continue;
    } while (next);
    return items;
  }

  /** One page of sessions, newest first (`GET /v1/sessions`). */
  listSessions(query: SessionQuery): Promise<Page<SessionView>> {
    return this.get(withQuery('/v1/sessions', query));
  }

  /** A session and one page of its requests (`GET /v1/sessions/{id}`). */
  showSession(id: string, paging: Paging): Promise<SessionDetail> {
    return this.get(withQuery(`/v1/sessions/${encodeURIComponent(id)}`, paging));
  }

  /** One page of audit records in time order (`GET /v1/audit`). */
  queryAudit(query: AuditQuery): Promise<Page<AuditRecordView>> {
    return this.get(withQuery('/v1/audit', query));
  }

  private async request<T>(method: string, path: string, body?: object): Promise<T> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.options.adminKey}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new AdminApiError(0, 'unreachable', `cannot reach the issuer at ${url.origin}: ${(err as Error).message}${issuerTrustHint(err, this.options.ca, this.options.trustFlag ?? '--issuer-ca-file')}`);
    }
    const text = await res.text();
    let answer: unknown;
    try {
      answer = text === '' ? undefined : JSON.parse(text);
    } catch {
      answer = undefined;
    }
    if (!res.ok) throw refusalError(res.status, answer, `${method} ${url.pathname}`, url.origin);
    if (typeof answer !== 'object' || answer === null) {
      throw new AdminApiError(res.status, 'bad-answer', `the issuer at ${url.origin} answered ${method} ${url.pathname} without a JSON object: is ${this.options.issuer} a kube-relay issuer?`);
    }
    return answer as T;
  }
}

/** The local error of an API refusal: 404 NotFoundError, 403 ForbiddenError, 409, 422; others AdminApiError. */
function refusalError(status: number, answer: unknown, request: string, origin: string): Error {
  const { error, message } = (answer ?? {}) as { error?: unknown; message?: unknown };
  if (typeof message !== 'string' || typeof error !== 'string') {
    return new AdminApiError(status, 'bad-answer', `the issuer at ${origin} refused ${request} with HTTP ${status} and no explanation: is this a kube-relay issuer of this version or newer?`);
  }
  if (status === 404 && error === 'not-found') return new NotFoundError(message);
  if (status === 403) return new ForbiddenError(message);
  if (status === 409) return error === 'already-exists' ? new AlreadyExistsError(message) : new ConflictError(message);
  if (status === 422) return new InvalidInputError(message);
  if (status === 401) return new AdminApiError(status, error, `the issuer refused the admin key: ${message}`);
  return new AdminApiError(status, error, `the issuer refused ${request}: ${message}`);
}

/** `/v1/agents/{name}/policy` or `/v1/teams/{org}/{team}/policy`; a malformed subject is refused here, as the issuer would. */
function policyPath(request: PolicySubjectRequest): string {
  const subject = policySubject(request);
  if (subject.kind === 'agent') return `/v1/agents/${encodeURIComponent(subject.name)}/policy`;
  const [org, team] = subject.name.split('/') as [string, string];
  return `/v1/teams/${encodeURIComponent(org)}/${encodeURIComponent(team)}/policy`;
}

/** `path?name=value&…` of the parameters that have a value. */
export function withQuery(path: string, parameters: object): string {
  const given = Object.entries(parameters).filter((entry): entry is [string, string | number] => entry[1] !== undefined);
  const query = new URLSearchParams(given.map(([name, value]): [string, string] => [name, String(value)]));
  return query.size > 0 ? `${path}?${query}` : path;
}
