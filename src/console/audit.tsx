/**
 * The Audit page (DESIGN §12, §14): a search of the central audit trail
 * with the admin API's filters, one page of records at a time (oldest
 * first, `continue` to the next), each record a row with the fields people
 * scan and, folded under it, every field the relay wrote. It calls
 * queryAudit, as `GET /v1/audit` and `kube-relay audit` do; records hold
 * no secrets by design (docs/audit.md), so each field is shown as it is.
 */
import type { Request, Response, Router } from 'express';
import type { VNode } from 'preact';
import { pageQuery } from '../admin-api/request.js';
import { DECISIONS } from '../audit/record.js';
import type { Page } from '../control/operations.js';
import { type AuditQuery, MAX_AUDIT_PAGE_SIZE, queryAudit } from '../control/sessions.js';
import type { AuditRecordView } from '../control/views.js';
import { agentOfUser } from '../sessions/session.js';
import { requireAdmin, callerOf } from './auth.js';
import { errorFor, type FormProblem, formProblem, queryText } from './forms.js';
import { Banner, Empty, Field, NextPage, SelectField, sendPage, Time } from './layout.js';
import { type ConsolePageDeps, pageContext } from './page-deps.js';

const AUDIT_FILTERS = ['agent', 'cluster', 'verb', 'decision', 'since', 'until', 'session'];

export const TIME_HINT = 'An RFC 3339 time (2026-05-04T10:00:00Z) or a duration back from now (90m, 1h, 7d).';

/** Which filter field a refusal of listSessions or queryAudit is about, by the words its sentence starts with. */
export const FILTER_FIELDS: Record<string, string[]> = {
  agent: ['no agent'],
  cluster: ['no cluster'],
  verb: ['verb:'],
  decision: ['decision:'],
  since: ['since:'],
  until: ['until:'],
  session: ['no session'],
  limit: ['limit'],
  org: ['org "', 'an admin of org'],
};

/**
 * A list's query read as the admin API reads it (pageQuery: each parameter once, none
 * unknown, limit a number; the operation checks the rest), over the fields that have a value:
 * a GET form sends its empty fields too, and an empty field means "any".
 */
export function listQuery(req: Request, filters: string[]): AuditQuery {
  const given: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(req.query)) {
    if (typeof value !== 'string') given[name] = value;
    else if (value.trim() !== '') given[name] = value.trim();
  }
  const { filters: values, ...page } = pageQuery(given, filters, MAX_AUDIT_PAGE_SIZE);
  return { ...page, ...values };
}

export function addAuditPages(router: Router, deps: ConsolePageDeps): void {
  router.get('/audit', requireAdmin(deps.auth), async (req, res) => {
    await searchPage(req, res, deps);
  });
}

async function searchPage(req: Request, res: Response, deps: ConsolePageDeps): Promise<void> {
  const ctx = pageContext(req, res, 'audit');
  const values = Object.fromEntries([...AUDIT_FILTERS, 'org', 'limit'].map((name) => [name, queryText(req, name)]));
  let page: Page<AuditRecordView> | undefined;
  let problem: FormProblem | undefined;
  try {
    page = await queryAudit(deps.registry, callerOf(res), listQuery(req, AUDIT_FILTERS), deps.now());
  } catch (err) {
    problem = formProblem(err, FILTER_FIELDS);
  }
  const allOrgs = ctx.caller?.org === undefined;
  const fieldShown = problem?.field !== undefined && (problem.field !== 'org' || allOrgs);
  const body = (
    <>
      <form method="get" action="/ui/audit" class="filters search" aria-label="Search the audit trail">
        <Field label="Agent" name="agent" value={values.agent} error={errorFor(problem, 'agent')} />
        <Field label="Cluster" name="cluster" value={values.cluster} error={errorFor(problem, 'cluster')} />
        <Field label="Verb" name="verb" value={values.verb} error={errorFor(problem, 'verb')} placeholder="get, delete, exec…" />
        <SelectField label="Decision" name="decision" value={values.decision} error={errorFor(problem, 'decision')} options={[{ value: '', label: 'Any decision' }, ...DECISIONS.map((decision) => ({ value: decision, label: decision }))]} />
        <Field label="Since" name="since" value={values.since} error={errorFor(problem, 'since')} hint={TIME_HINT} />
        <Field label="Until" name="until" value={values.until} error={errorFor(problem, 'until')} />
        <Field label="Session" name="session" value={values.session} error={errorFor(problem, 'session')} placeholder="s-…" />
        <Field label="Per page" name="limit" value={values.limit} error={errorFor(problem, 'limit')} placeholder="100" />
        {allOrgs ? <Field label="Org" name="org" value={values.org} error={errorFor(problem, 'org')} /> : null}
        <button type="submit">Search</button>
        <a href="/ui/audit">Clear</a>
      </form>
      {problem && !fieldShown ? <Banner kind="error">{problem.message}</Banner> : null}
      {page ? (
        <>
          <RecordTable records={page.items} />
          <NextPage path="/ui/audit" query={values} next={page.continue} />
        </>
      ) : null}
    </>
  );
  sendPage(res, ctx, 'Audit', body, problem?.status ?? 200);
}

function RecordTable(props: { records: AuditRecordView[] }): VNode {
  if (props.records.length === 0) return <Empty>No audit records match.</Empty>;
  return (
    <div class="table-scroll">
      <table class="audit">
        <caption>Audit records, oldest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Agent or user</th>
            <th scope="col">Cluster</th>
            <th scope="col">Verb</th>
            <th scope="col">Resource</th>
            <th scope="col">Namespace/name</th>
            <th scope="col">Status</th>
            <th scope="col">Decision</th>
            <th scope="col">Record</th>
          </tr>
        </thead>
        <tbody>
          {props.records.map((record) => (
            <tr data-request={text(record.requestId)} class={isRefusal(record) ? 'refused' : undefined}>
              <td data-label="Time">
                <Time at={typeof record.time === 'string' ? record.time : undefined} />
              </td>
              <td data-label="Agent or user">{agentOfUser(record.user) ?? text(record.user)}</td>
              <td data-label="Cluster">{record.cluster}</td>
              <td data-label="Verb">{text(record.verb)}</td>
              <td data-label="Resource" class="mono">
                {resourceText(record)}
              </td>
              <td data-label="Namespace/name" class="mono">
                {objectText(record)}
              </td>
              <td data-label="Status">{text(record.status)}</td>
              <td data-label="Decision">
                <Decision record={record} />
              </td>
              <td data-label="Record">
                <details>
                  <summary>All fields</summary>
                  <RecordFields record={record} />
                </details>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Every field of the record, in the order the relay wrote them; lists and objects as JSON. */
function RecordFields(props: { record: AuditRecordView }): VNode {
  return (
    <dl class="record">
      {Object.entries(props.record).map(([key, value]) => (
        <>
          <dt>{key}</dt>
          <dd class="mono">{key === 'session' && typeof value === 'string' ? <a href={`/ui/sessions/${encodeURIComponent(value)}`}>{value}</a> : fieldText(value)}</dd>
        </>
      ))}
    </dl>
  );
}

export function Decision(props: { record: AuditRecordView }): VNode {
  const decision = text(props.record.decision);
  return <span class={isRefusal(props.record) ? 'decision refused' : 'decision'}>{decision}</span>;
}

/** A request that was not allowed through, as sessions count refusals. */
export function isRefusal(record: AuditRecordView): boolean {
  return record.decision !== 'allowed';
}

/** resource[/subresource], or the path of a request for no resource (/version, /apis). */
export function resourceText(record: AuditRecordView): string {
  const { resource, subresource, path } = record;
  if (typeof resource !== 'string' || resource === '') return text(path);
  return typeof subresource === 'string' && subresource !== '' ? `${resource}/${subresource}` : resource;
}

/** namespace/name, either alone when the other is empty. */
export function objectText(record: AuditRecordView): string {
  return text([record.namespace, record.name].filter((part) => typeof part === 'string' && part !== '').join('/'));
}

/** A record field as a cell; '–' when empty. */
export function text(value: unknown): string {
  return value === undefined || value === null || value === '' ? '–' : String(value);
}

function fieldText(value: unknown): string {
  if (typeof value === 'string') return value === '' ? '""' : value;
  return JSON.stringify(value) ?? String(value);
}
