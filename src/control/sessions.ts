/**
 * Reading the central audit trail and its sessions (DESIGN §12, STYLE 12),
 * for the local CLI and the admin API alike. Each operation takes the
 * caller and confines it to its org: an org admin reads its own org's
 * sessions and records only, and another org's session, agent or cluster
 * is "not found", exactly as a missing one. Filters are checked here, so
 * both doors refuse in one sentence that names the field.
 *
 * Sessions page newest first, records in time order (oldest first), each by
 * an opaque `continue` that holds the position of the page's last item: a
 * page stays stable while new records arrive.
 */
import { parseDuration } from '../duration.js';
import { InvalidInputError, NotFoundError, type Registry } from '../issuer/registry.js';
import type { AuditCursor, AuditFilter, SessionCursor, StoredAuditRecord } from '../issuer/store/audit-sql.js';
import { DECISIONS } from '../audit/record.js';
import { type Session, type SessionView, sessionView } from '../sessions/session.js';
import { type Caller, mayManage } from './caller.js';
import { getAgent, getCluster, listedOrg, type Page } from './operations.js';
import { type AuditRecordView, auditRecordView } from './views.js';

import { DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE } from '../sessions/session.js';

export { DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE };

export interface Paging {
  /** 1..MAX_AUDIT_PAGE_SIZE; default DEFAULT_AUDIT_PAGE_SIZE. */
  limit?: number | undefined;
  /** The `continue` of the previous page, unchanged. */
  continue?: string | undefined;
}

export interface SessionQuery extends Paging {
  agent?: string | undefined;
  cluster?: string | undefined;
  /** An RFC 3339 time, or a duration back from now (`90m`, `7d`). */
  since?: string | undefined;
  /** As `since`. */
  until?: string | undefined;
  /** Only this org (an all-orgs caller); an org admin may name only its own. */
  org?: string | undefined;
}

export interface AuditQuery extends SessionQuery {
  verb?: string | undefined;
  decision?: string | undefined;
  /** A session id: only its requests. */
  session?: string | undefined;
}

/** `sessions show`: the session and a page of its requests in time order. */
export interface SessionDetail {
  session: SessionView;
  requests: AuditRecordView[];
  /** Present when more requests follow. */
  continue?: string;
}

/** Sessions whose activity reaches into [since, until], newest first. */
export async function listSessions(registry: Registry, caller: Caller, query: SessionQuery = {}, now = new Date()): Promise<Page<SessionView>> {
  const scope = await scopeOf(registry, caller, query, now);
  const after = query.continue === undefined ? undefined : decodeSessionCursor(query.continue);
  const page = await pageOf(
    scope.limit,
    (limit) => registry.audit.listSessions({ org: scope.org, agent: scope.agent, cluster: scope.cluster, sinceMs: scope.sinceMs, untilMs: scope.untilMs, after, limit }),
    (last) => encodeCursor('session', [last.startedAt.getTime(), last.id]),
  );
  return { items: page.items.map((session) => sessionView(session, now)), ...continued(page) };
}

export async function showSession(registry: Registry, caller: Caller, id: string, paging: Paging = {}, now = new Date()): Promise<SessionDetail> {
  const session = await getSession(registry, caller, id);
  const requests = await recordsPage(registry, { org: session.org, session: session.id }, paging);
  return { session: sessionView(session, now), requests: requests.items, ...continued(requests) };
}

/** Audit records in time order, oldest first. */
export async function queryAudit(registry: Registry, caller: Caller, query: AuditQuery = {}, now = new Date()): Promise<Page<AuditRecordView>> {
  const scope = await scopeOf(registry, caller, query, now);
  if (query.verb !== undefined && !/^[a-z]{1,40}$/.test(query.verb)) throw new InvalidInputError(`verb: ${quoted(query.verb)} is not a Kubernetes verb (lowercase letters, such as get, list, delete or exec)`);
  if (query.decision !== undefined && !(DECISIONS as readonly string[]).includes(query.decision)) throw new InvalidInputError(`decision: ${quoted(query.decision)} is not one of ${DECISIONS.join(', ')}`);
  const session = query.session === undefined ? undefined : (await getSession(registry, caller, query.session)).id;
  return recordsPage(registry, { org: scope.org, agent: scope.agent, cluster: scope.cluster, verb: query.verb, decision: query.decision, sinceMs: scope.sinceMs, untilMs: scope.untilMs, session }, query);
}

/** The session `id`, if the caller may see it; another org's is "not found". */
export async function getSession(registry: Registry, caller: Caller, id: string): Promise<Session> {
  const session = id.length <= 100 ? await registry.audit.findSession(id) : undefined;
  if (!session || !mayManage(caller, session.org)) throw new NotFoundError(`no session "${id.slice(0, 100)}"; see kube-relay sessions list`);
  return session;
}

interface Scope {
  org: string | undefined;
  agent: string | undefined;
  cluster: string | undefined;
  sinceMs: number | undefined;
  untilMs: number | undefined;
  limit: number;
}

/** The filters every query shares, checked: the org the caller may read, an agent and a cluster it may see, the times, the page size. */
async function scopeOf(registry: Registry, caller: Caller, query: SessionQuery, now: Date): Promise<Scope> {
  const sinceMs = pointInTime('since', query.since, now);
  const untilMs = pointInTime('until', query.until, now);
  const limit = pageSize(query.limit);
  return {
    org: listedOrg(caller, query.org),
    agent: query.agent === undefined ? undefined : (await getAgent(registry, caller, query.agent)).name,
    cluster: query.cluster === undefined ? undefined : (await getCluster(registry, caller, query.cluster)).name,
    sinceMs,
    untilMs,
    limit,
  };
}

type RecordFilter = Omit<AuditFilter, 'after' | 'limit'>;

async function recordsPage(registry: Registry, filter: RecordFilter, paging: Paging): Promise<Page<AuditRecordView>> {
  const limit = pageSize(paging.limit);
  const after = paging.continue === undefined ? undefined : decodeAuditCursor(paging.continue);
  const page = await pageOf(
    limit,
    (fetchLimit) => registry.audit.queryAudit({ ...filter, after, limit: fetchLimit }),
    (last: StoredAuditRecord) => encodeCursor('audit', [last.time.getTime(), last.cluster, last.id]),
  );
  return { items: page.items.map(auditRecordView), ...continued(page) };
}

/** One page: asks for one item more than `limit` to learn whether another page follows. */
async function pageOf<T>(limit: number, fetch: (limit: number) => Promise<T[]>, cursorOf: (last: T) => string): Promise<Page<T>> {
  const items = await fetch(limit + 1);
  if (items.length <= limit) return { items };
  const shown = items.slice(0, limit);
  return { items: shown, continue: cursorOf(shown[shown.length - 1]!) };
}

function continued(page: { continue?: string }): { continue?: string } {
  return page.continue === undefined ? {} : { continue: page.continue };
}

function pageSize(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_AUDIT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE_SIZE) throw new InvalidInputError(`limit must be a whole number from 1 to ${MAX_AUDIT_PAGE_SIZE}, not ${limit}`);
  return limit;
}

const RFC3339 = /^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)$/;

/** An RFC 3339 time, or a duration back from `now`, in milliseconds. */
function pointInTime(field: 'since' | 'until', value: string | undefined, now: Date): number | undefined {
  if (value === undefined) return undefined;
  const back = parseDuration(value);
  if (back !== undefined) return now.getTime() - back;
  const at = RFC3339.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at)) throw new InvalidInputError(`${field}: ${quoted(value)} is neither an RFC 3339 time nor a duration such as 1h`);
  return at;
}

function quoted(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

// ---- cursors: opaque to callers, checked when they come back ----

function encodeCursor(kind: 'session' | 'audit', position: (string | number)[]): string {
  return Buffer.from(JSON.stringify([kind, ...position]), 'utf8').toString('base64url');
}

function decodeSessionCursor(token: string): SessionCursor {
  const [startedMs, id] = decodeCursor(token, 'session', ['number', 'string']);
  return { startedMs: startedMs as number, id: id as string };
}

function decodeAuditCursor(token: string): AuditCursor {
  const [timeMs, cluster, id] = decodeCursor(token, 'audit', ['number', 'string', 'string']);
  return { timeMs: timeMs as number, cluster: cluster as string, id: id as string };
}

function decodeCursor(token: string, kind: string, types: ('number' | 'string')[]): unknown[] {
  let decoded: unknown;
  try {
    decoded = token.length <= 1000 && /^[A-Za-z0-9_-]+$/.test(token) ? JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) : undefined;
  } catch {
    decoded = undefined;
  }
  const position = Array.isArray(decoded) && decoded[0] === kind ? decoded.slice(1) : [];
  const valid = position.length === types.length && position.every((part, i) => (types[i] === 'number' ? Number.isSafeInteger(part) : typeof part === 'string'));
  if (!valid) throw new InvalidInputError('continue is not one this issuer gave: pass the continue of the previous page unchanged, or leave it out for the first page');
  return position;
}
