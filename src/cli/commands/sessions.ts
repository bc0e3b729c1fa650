/**
 * `kube-relay sessions list|show` and `kube-relay audit` (DESIGN §12): the
 * central audit trail the issuer keeps from its relays, and the sessions it
 * groups it into, on the local store or through a remote issuer's admin
 * API. Both grow without end, so each prints one page (`--limit`, default
 * 100): sessions newest first, records oldest first.
 */
import { DECISIONS } from '../../audit/record.js';
import type { SessionDetail, SessionQuery } from '../../control/sessions.js';
import type { AuditRecordView } from '../../control/views.js';
import { formatDuration } from '../../duration.js';
import { agentOfUser, DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE, type SessionCommand, type SessionView } from '../../sessions/session.js';
import { type CommandSpec, type FlagSpec, str, type Values } from '../command.js';
import { positiveInteger } from '../flag-values.js';
import { MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { aligned, OUTPUT_FLAG, outputFormat, printJson, printList, table } from '../output.js';

const TIME_HELP = 'an RFC 3339 time (2026-05-04T10:00:00Z) or a duration back from now (90m, 1h, 7d)';

const LIMIT_FLAG: FlagSpec = { name: 'limit', value: 'N', description: `Print at most N (1 to ${MAX_AUDIT_PAGE_SIZE}).`, default: String(DEFAULT_AUDIT_PAGE_SIZE) };

const AGENT_FLAG: FlagSpec = { name: 'agent', value: 'A', description: "Only this agent's." };
const CLUSTER_FLAG: FlagSpec = { name: 'cluster', value: 'C', description: "Only this cluster's." };
const SINCE_FLAG: FlagSpec = { name: 'since', value: 'T', description: `Only from T on: ${TIME_HELP}.` };
const UNTIL_FLAG: FlagSpec = { name: 'until', value: 'T', description: 'Only up to T (as --since).' };
const ORG_FLAG: FlagSpec = { name: 'org', value: 'O', description: "Only this org's (the operator and all-orgs admins; an org admin reads its own org only)." };

function sessionQuery(values: Values): SessionQuery {
  return { agent: str(values, 'agent'), cluster: str(values, 'cluster'), since: str(values, 'since'), until: str(values, 'until'), org: str(values, 'org'), limit: limitOf(values) };
}

function limitOf(values: Values): number | undefined {
  const limit = str(values, 'limit');
  return limit === undefined ? undefined : positiveInteger(limit, '--limit');
}

const SESSION_HEADER = ['ID', 'AGENT', 'CLUSTER', 'STARTED', 'ENDED', 'DURATION', 'REQUESTS', 'REFUSALS', 'COMMANDS'];
const sessionRow = (s: SessionView) => [s.id, s.agent, s.cluster, s.startedAt, s.endedAt ?? 'open', formatDuration(s.durationMs), String(s.requests), String(s.refusals), String(s.commands.length + s.commandsOmitted)];

const REQUEST_HEADER = ['TIME', 'VERB', 'RESOURCE', 'NAME', 'STATUS', 'DECISION'];
const requestRow = (r: AuditRecordView) => [text(r.time), text(r.verb), resourceOf(r), text(r.name), text(r.status), text(r.decision)];

const AUDIT_HEADER = ['TIME', 'AGENT', 'CLUSTER', 'VERB', 'RESOURCE', 'NAME', 'STATUS', 'DECISION', 'SESSION'];
const auditRow = (r: AuditRecordView) => [text(r.time), text(agentOfUser(r.user) ?? r.user), r.cluster, text(r.verb), resourceOf(r), text(r.name), text(r.status), text(r.decision), r.session ?? '-'];

/** A record field as a table cell; '-' when empty. */
function text(value: unknown): string {
  return value === undefined || value === null || value === '' ? '-' : String(value);
}

/** namespace/resource[/subresource], or the path of a request for no resource (/version, /apis). */
function resourceOf(record: AuditRecordView): string {
  const { namespace, resource, subresource, path } = record as Record<string, unknown>;
  if (typeof resource !== 'string' || resource === '') return text(path);
  return [namespace, resource, subresource].filter((part) => typeof part === 'string' && part !== '').join('/');
}

function commandLine(command: SessionCommand): string[] {
  const line = [command.time, command.kind, command.command || '-'];
  if (command.kind === 'kubectl') return line;
  return [...line, `${command.namespace ?? '-'}/${command.pod ?? '-'}`, command.container ? `container ${command.container}` : ''];
}

function sessionDetailTable(detail: SessionDetail): string {
  const s = detail.session;
  const header = aligned([
    ['id:', s.id],
    ['agent:', s.agent],
    ['org:', s.org],
    ['cluster:', s.cluster],
    ['kind:', s.kind],
    ['started:', s.startedAt],
    ['ended:', s.endedAt ?? 'open'],
    ['duration:', formatDuration(s.durationMs)],
    ['requests:', String(s.requests)],
    ['refusals:', String(s.refusals)],
  ]);
  const omitted = s.commandsOmitted > 0 ? `  … and ${s.commandsOmitted} more\n` : '';
  const commands = s.commands.length > 0 ? aligned(s.commands.map(commandLine), '  ') + omitted : '  (none)\n';
  const requests = detail.requests.length > 0 ? table(REQUEST_HEADER, detail.requests.map(requestRow)) : '  (none)\n';
  return `${header}\nCommands:\n${commands}\nRequests:\n${requests}`;
}

export const sessionCommands: CommandSpec[] = [
  {
    words: ['sessions', 'list'],
    summary: "List sessions, newest first: one client's work on one cluster.",
    synopsis: '[--agent A] [--cluster C] [--since T] [--until T] [--org O] [--limit N]',
    description:
      "A session is one kube-relay proxy run, or else an agent's requests to one cluster with no gap over 5 minutes (one kubectl invocation always stays in one session). --since keeps the sessions active at T or later, --until those begun by T. ENDED is open while the session may still grow; COMMANDS counts its kubectl invocations and exec or attach commands.",
    flags: [AGENT_FLAG, CLUSTER_FLAG, SINCE_FLAG, UNTIL_FLAG, ORG_FLAG, LIMIT_FLAG, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay sessions list --agent deployer --since 1h', 'kube-relay sessions list --cluster prod-eu --since 2026-05-04T00:00:00Z --until 2026-05-05T00:00:00Z'],
    run({ values }, io) {
      const format = outputFormat(values);
      const query = sessionQuery(values);
      return withManagement(values, io, async (management) => {
        printList(io, format, (await management.listSessions(query)).items, SESSION_HEADER, sessionRow);
        return 0;
      });
    },
  },
  {
    words: ['sessions', 'show'],
    summary: 'Show a session: who, which cluster, its commands, and its requests in order.',
    synopsis: 'ID [--limit N]',
    positionals: [{ name: 'ID', description: 'The session id, as sessions list shows it.' }],
    flags: [{ ...LIMIT_FLAG, description: `Print at most N of its requests (1 to ${MAX_AUDIT_PAGE_SIZE}).` }, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay sessions show s-Jx3kQ9vLm2Ab'],
    run({ values, positionals }, io) {
      const id = positionals[0]!;
      const format = outputFormat(values);
      const limit = limitOf(values);
      return withManagement(values, io, async (management) => {
        const { session, requests } = await management.showSession(id, { limit });
        if (format === 'json') printJson(io, { session, requests });
        else io.stdout(sessionDetailTable({ session, requests }));
        return 0;
      });
    },
  },
  {
    words: ['audit'],
    summary: 'List central audit records, oldest first: every request the relays of the issuer saw.',
    synopsis: '[--agent A] [--cluster C] [--verb V] [--decision D] [--since T] [--until T] [--session ID] [--org O] [--limit N]',
    description:
      'The records the relays connected with a connector key send the issuer; with --output json the records as the relay wrote them (docs/audit.md) plus org and session. AGENT is - for a request that authenticated as no agent.',
    flags: [
      AGENT_FLAG,
      CLUSTER_FLAG,
      { name: 'verb', value: 'V', description: 'Only this Kubernetes verb (get, list, watch, create, delete, exec…).' },
      { name: 'decision', value: 'D', description: `Only this decision: ${DECISIONS.join(', ')}.` },
      SINCE_FLAG,
      UNTIL_FLAG,
      { name: 'session', value: 'ID', description: "Only this session's requests." },
      ORG_FLAG,
      LIMIT_FLAG,
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: ['kube-relay audit --agent deployer --since 1h', 'kube-relay audit --cluster prod-eu --decision denied-by-cluster --since 7d'],
    run({ values }, io) {
      const format = outputFormat(values);
      const query = { ...sessionQuery(values), verb: str(values, 'verb'), decision: str(values, 'decision'), session: str(values, 'session') };
      return withManagement(values, io, async (management) => {
        printList(io, format, (await management.queryAudit(query)).items, AUDIT_HEADER, auditRow);
        return 0;
      });
    },
  },
];
