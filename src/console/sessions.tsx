/**
 * The Sessions pages (DESIGN §12, §14): the sessions of the admin's org,
 * filtered by agent, cluster and time, newest first; and one session with
 * its facts, its commands and its requests in order, refusals marked. Open
 * sessions grow while someone watches, so the list and an open session's
 * page refresh in place every few seconds (an ended session's page does not:
 * nothing about it changes). They call listSessions and showSession, as
 * `GET /v1/sessions` and `kube-relay sessions` do.
 */
import type { Request, Response, Router } from 'express';
import type { VNode } from 'preact';
import type { Page } from '../control/operations.js';
import { listSessions, type SessionDetail, showSession } from '../control/sessions.js';
import type { AuditRecordView } from '../control/views.js';
import type { SessionCommand, SessionView } from '../sessions/session.js';
import { Decision, FILTER_FIELDS, isRefusal, listQuery, objectText, resourceText, text, TIME_HINT } from './audit.js';
import { callerOf, requireAdmin } from './auth.js';
import { LIVE_REFRESH } from './clusters.js';
import { errorFor, type FormProblem, formProblem, queryText } from './forms.js';
import { Banner, Empty, Field, NextPage, sendFragment, sendPage, Time } from './layout.js';
import { type ConsolePageDeps, pageContext } from './page-deps.js';

const SESSION_FILTERS = ['agent', 'cluster', 'since', 'until'];

export function addSessionPages(router: Router, deps: ConsolePageDeps): void {
  const signedIn = requireAdmin(deps.auth);
  const live = requireAdmin(deps.auth, { live: true });

  router.get('/sessions', signedIn, async (req, res) => {
    await listPage(req, res, deps);
  });
  // Before /sessions/:id, which would take "live" for an id.
  router.get('/sessions/live', live, async (req, res) => {
    try {
      sendFragment(res, <SessionTable page={await sessionsFor(req, res, deps)} values={filterValues(req)} />);
    } catch (err) {
      sendLiveRefusal(res, formProblem(err, FILTER_FIELDS));
    }
  });
  router.get('/sessions/:id', signedIn, async (req, res) => {
    await detailPage(req, res, deps);
  });
  router.get('/sessions/:id/live', live, async (req, res) => {
    try {
      sendFragment(res, <SessionActivity detail={await detailFor(req, res, deps)} paging={pagingValues(req)} />);
    } catch (err) {
      sendLiveRefusal(res, formProblem(err));
    }
  });
}

/** A refreshing part that cannot be shown now is left as it is: htmx swaps in no answer that is not 2xx. */
function sendLiveRefusal(res: Response, problem: FormProblem): void {
  res.status(problem.status).type('text').send(problem.message);
}

function sessionsFor(req: Request, res: Response, deps: ConsolePageDeps): Promise<Page<SessionView>> {
  return listSessions(deps.registry, callerOf(res), listQuery(req, SESSION_FILTERS), deps.now());
}

/** The filters and page size as given (kept in the form, the next page's link and the live part's address). */
function filterValues(req: Request): Record<string, string | undefined> {
  return Object.fromEntries([...SESSION_FILTERS, 'org', 'limit'].map((name) => [name, queryText(req, name)]));
}

function withQuery(path: string, values: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) if (value) params.set(name, value);
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

async function listPage(req: Request, res: Response, deps: ConsolePageDeps): Promise<void> {
  const ctx = pageContext(req, res, 'sessions');
  const values = filterValues(req);
  let page: Page<SessionView> | undefined;
  let problem: FormProblem | undefined;
  try {
    page = await sessionsFor(req, res, deps);
  } catch (err) {
    problem = formProblem(err, FILTER_FIELDS);
  }
  const allOrgs = ctx.caller?.org === undefined;
  const fieldShown = problem?.field !== undefined && (problem.field !== 'org' || allOrgs) && problem.field !== 'limit';
  const body = (
    <>
      <form method="get" action="/ui/sessions" class="filters search" aria-label="Filter sessions">
        <Field label="Agent" name="agent" value={values.agent} error={errorFor(problem, 'agent')} />
        <Field label="Cluster" name="cluster" value={values.cluster} error={errorFor(problem, 'cluster')} />
        <Field label="Since" name="since" value={values.since} error={errorFor(problem, 'since')} hint={TIME_HINT} />
        <Field label="Until" name="until" value={values.until} error={errorFor(problem, 'until')} />
        {allOrgs ? <Field label="Org" name="org" value={values.org} error={errorFor(problem, 'org')} /> : null}
        {values.limit ? <input type="hidden" name="limit" value={values.limit} /> : null}
        <button type="submit">Filter</button>
        <a href="/ui/sessions">Clear</a>
      </form>
      {problem && !fieldShown ? <Banner kind="error">{problem.message}</Banner> : null}
      {page ? <SessionTable page={page} values={values} after={queryText(req, 'continue')} /> : null}
    </>
  );
  sendPage(res, ctx, 'Sessions', body, problem?.status ?? 200);
}

function SessionTable(props: { page: Page<SessionView>; values: Record<string, string | undefined>; after?: string | undefined }): VNode {
  const { page, values } = props;
  return (
    <div id="session-table" hx-get={withQuery('/ui/sessions/live', { ...values, continue: props.after })} hx-trigger={LIVE_REFRESH} hx-swap="outerHTML" aria-live="polite">
      {page.items.length === 0 ? (
        <Empty>No sessions match. A session appears once an agent's requests reach the issuer from a cluster's relay.</Empty>
      ) : (
        <table>
          <caption>Sessions, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Session</th>
              <th scope="col">Agent</th>
              <th scope="col">Cluster</th>
              <th scope="col">Started</th>
              <th scope="col">Ended</th>
              <th scope="col">Duration</th>
              <th scope="col">Commands</th>
              <th scope="col">Requests</th>
              <th scope="col">Refusals</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((session) => (
              <tr data-session={session.id} data-open={session.open ? 'true' : 'false'}>
                <th scope="row" class="mono">
                  <a href={`/ui/sessions/${encodeURIComponent(session.id)}`}>{session.id}</a>
                </th>
                <td data-label="Agent">{session.agent}</td>
                <td data-label="Cluster">{session.cluster}</td>
                <td data-label="Started">
                  <Time at={session.startedAt} />
                </td>
                <td data-label="Ended">
                  <Ended session={session} />
                </td>
                <td data-label="Duration">{humanDuration(session.durationMs)}</td>
                <td data-label="Commands">
                  <CommandSummary session={session} />
                </td>
                <td data-label="Requests">{session.requests}</td>
                <td data-label="Refusals" class={session.refusals > 0 ? 'refused' : undefined}>
                  {session.refusals}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <NextPage path="/ui/sessions" query={values} next={page.continue} />
    </div>
  );
}

function Ended(props: { session: SessionView }): VNode {
  return props.session.endedAt === null ? <span class="state up">open</span> : <Time at={props.session.endedAt} />;
}

/** How many commands, and the first two of them. */
function CommandSummary(props: { session: SessionView }): VNode {
  const { session } = props;
  const total = session.commands.length + session.commandsOmitted;
  if (total === 0) return <span class="muted">none</span>;
  const shown = session.commands.slice(0, 2);
  return (
    <span class="command-summary">
      {total}:{' '}
      {shown.map((command, i) => (
        <>
          {i > 0 ? ', ' : null}
          <code>{commandText(command)}</code>
        </>
      ))}
      {total > shown.length ? ', …' : null}
    </span>
  );
}

/** `kubectl get`, or `exec sh -c date` / `attach` into a pod. */
function commandText(command: SessionCommand): string {
  if (command.kind === 'kubectl') return command.command || 'kubectl';
  return command.command ? `${command.kind} ${command.command}` : command.kind;
}

const DURATION_UNITS: [label: string, ms: number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['min', 60_000],
  ['s', 1000],
];

/** A duration as people read it: its largest unit, and the next one when it is not zero ("1 h 5 min", "42 s", "250 ms"). */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const first = DURATION_UNITS.findIndex(([, size]) => ms >= size);
  const [label, size] = DURATION_UNITS[first]!;
  const shown = `${Math.floor(ms / size)} ${label}`;
  const next = DURATION_UNITS[first + 1];
  const rest = next ? Math.floor((ms % size) / next[1]) : 0;
  return rest > 0 ? `${shown} ${rest} ${next![0]}` : shown;
}

// ---- one session ----

/** `limit` and `continue` of the session's requests, as given. */
function pagingValues(req: Request): Record<string, string | undefined> {
  return { limit: queryText(req, 'limit'), continue: queryText(req, 'continue') };
}

async function detailFor(req: Request, res: Response, deps: ConsolePageDeps): Promise<SessionDetail> {
  const { limit, continue: after } = listQuery(req, []);
  return showSession(deps.registry, callerOf(res), String(req.params.id), { limit, continue: after }, deps.now());
}

async function detailPage(req: Request, res: Response, deps: ConsolePageDeps): Promise<void> {
  const ctx = pageContext(req, res, 'sessions');
  let detail: SessionDetail;
  try {
    detail = await detailFor(req, res, deps);
  } catch (err) {
    const refused = formProblem(err);
    const title = refused.status === 404 ? 'Session not found' : 'Session';
    sendPage(res, ctx, title, <Banner kind="error">{refused.message} Go to <a href="/ui/sessions">Sessions</a>.</Banner>, refused.status);
    return;
  }
  sendPage(res, ctx, `Session ${detail.session.id}`, <SessionActivity detail={detail} paging={pagingValues(req)} />);
}

/** Everything about the session that may still change: refreshed in place while it is open, still once it has ended. */
function SessionActivity(props: { detail: SessionDetail; paging: Record<string, string | undefined> }): VNode {
  const { session, requests } = props.detail;
  const path = `/ui/sessions/${encodeURIComponent(session.id)}`;
  const refresh = session.open ? { 'hx-get': withQuery(`${path}/live`, props.paging), 'hx-trigger': LIVE_REFRESH, 'hx-swap': 'outerHTML' } : {};
  return (
    <div id="session-activity" data-open={session.open ? 'true' : 'false'} aria-live="polite" {...refresh}>
      <SessionFacts session={session} />
      <section aria-labelledby="session-commands">
        <h2 id="session-commands">Commands</h2>
        <CommandList session={session} />
      </section>
      <section aria-labelledby="session-requests">
        <h2 id="session-requests">Requests</h2>
        {requests.length === 0 ? <Empty>No requests {props.paging.continue ? 'on this page' : 'yet'}.</Empty> : <Timeline requests={requests} />}
        <NextPage path={path} query={{ limit: props.paging.limit }} next={props.detail.continue} />
        <p>
          <a href={withQuery('/ui/audit', { session: session.id })}>Every field of these requests, in the audit search</a>
        </p>
      </section>
    </div>
  );
}

function SessionFacts(props: { session: SessionView }): VNode {
  const { session } = props;
  return (
    <dl class="facts">
      <dt>Agent</dt>
      <dd>{session.agent}</dd>
      <dt>Org</dt>
      <dd>{session.org}</dd>
      <dt>Cluster</dt>
      <dd>{session.cluster}</dd>
      <dt>Kind</dt>
      <dd>{session.kind === 'proxy' ? 'one kube-relay proxy run' : 'activity (requests with no pause over 5 minutes)'}</dd>
      <dt>Started</dt>
      <dd>
        <Time at={session.startedAt} />
      </dd>
      <dt>Ended</dt>
      <dd>
        <Ended session={session} />
      </dd>
      <dt>Duration</dt>
      <dd>
        {humanDuration(session.durationMs)}
        {session.open ? ' so far' : ''}
      </dd>
      <dt>Requests</dt>
      <dd>{session.requests}</dd>
      <dt>Refusals</dt>
      <dd class={session.refusals > 0 ? 'refused' : undefined}>{session.refusals}</dd>
    </dl>
  );
}

function CommandList(props: { session: SessionView }): VNode {
  const { commands, commandsOmitted } = props.session;
  if (commands.length === 0) return <Empty>No kubectl commands, exec or attach in this session.</Empty>;
  return (
    <>
      <ol class="commands">
        {commands.map((command) => (
          <li data-kind={command.kind}>
            <Time at={command.time} /> <code>{commandText(command)}</code>
            {command.kind === 'kubectl' ? null : (
              <span class="muted">
                {' '}
                in pod {command.namespace ? `${command.namespace}/` : ''}
                {command.pod ?? '–'}
                {command.container ? `, container ${command.container}` : ''}
                {command.status === undefined ? '' : `, status ${command.status}`}
              </span>
            )}
          </li>
        ))}
      </ol>
      {commandsOmitted > 0 ? <p class="muted">… and {commandsOmitted} more, counted but not kept.</p> : null}
    </>
  );
}

/** The session's requests in time order; a refusal says why when its record does. */
function Timeline(props: { requests: AuditRecordView[] }): VNode {
  return (
    <ol class="timeline">
      {props.requests.map((record) => {
        const refused = isRefusal(record);
        const why = [record.reason === undefined ? '' : `reason ${text(record.reason)}`, record.policyRule === undefined ? '' : `policy rule ${text(record.policyRule)}`].filter(Boolean).join(', ');
        return (
          <li class={refused ? 'refused' : undefined} data-request={text(record.requestId)}>
            <Time at={typeof record.time === 'string' ? record.time : undefined} /> <strong>{text(record.verb)}</strong> <code>{resourceText(record)}</code> <span class="mono">{objectText(record)}</span> · status {text(record.status)} · <Decision record={record} />
            {refused && why ? <span class="why">{why}</span> : null}
          </li>
        );
      })}
    </ol>
  );
}
