/**
 * `kube-relay policy …` (DESIGN §13): an agent's or a team's policy, the
 * brakes beyond RBAC its tokens carry, on the local store or through a
 * remote issuer's admin API. `set` replaces the whole policy; every flag is
 * read and checked before the store is opened (STYLE 11), so a misspelt
 * rule changes nothing.
 */
import type { PolicySubjectRequest } from '../../control/policies.js';
import type { PolicyFieldsView, PolicyView } from '../../control/views.js';
import { InvalidInputError } from '../../issuer/errors.js';
import { parseDenyRule, parseRate, type Policy, PolicyError, validatePolicy } from '../../policy/policy.js';
import { type CommandSpec, type FlagSpec, type Io, list, str, UsageError, type Values } from '../command.js';
import { MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { aligned, OUTPUT_FLAG, type OutputFormat, outputFormat, printJson } from '../output.js';

const SUBJECT_FLAGS: FlagSpec[] = [
  { name: 'agent', value: 'NAME', description: "The agent's own policy." },
  { name: 'team', value: 'ORG/TEAM', description: 'The policy of a team: every agent of ORG with team TEAM carries it.' },
];
const NOW_FLAG: FlagSpec = {
  name: 'now',
  description: "Also cut the tokens of the agents it applies to: relays end their live streams and refuse their tokens, so the next request needs a new token, which carries the change. Without it, tokens already minted keep the old policy until they expire (60 s).",
};
const SUBJECT_SYNOPSIS = '(--agent NAME | --team ORG/TEAM)';
const COMMON_FLAGS = [OUTPUT_FLAG, ...MANAGEMENT_FLAGS];

export const policyCommands: CommandSpec[] = [
  {
    words: ['policy', 'set'],
    summary: "Replace an agent's or a team's policy: brakes beyond RBAC that its tokens carry.",
    synopsis: `${SUBJECT_SYNOPSIS} [--read-only] [--dry-run] [--deny RULE]... [--rate N/s [--burst M]] [--max-streams N] [--now]`,
    description:
      "The issuer puts the agent's effective policy (its own and its teams', every brake at its strictest) in each token it mints, and the relay and the hub enforce it before forwarding: refusals are 403 (429 for the rate) and audited as denied-by-policy. set replaces the whole policy with the brakes given; policy clear removes it.",
    flags: [
      ...SUBJECT_FLAGS,
      { name: 'read-only', description: 'Only get, list and watch (and discovery).' },
      { name: 'dry-run', description: 'Send every create, update, patch and delete with dryRun=All (validated, never persisted); refuse exec, attach and port-forward.' },
      { name: 'deny', value: 'RULE', multiple: true, description: 'Refuse VERB[,VERB…]:RESOURCE[,…][@NAMESPACE,…], such as delete:pods@kube-system or create:pods/exec.' },
      { name: 'rate', value: 'N/s', description: 'At most N requests a second per relay replica (a token bucket); 429 with Retry-After past it.' },
      { name: 'burst', value: 'M', description: 'With --rate: requests at once after a quiet spell.', default: 'N rounded up' },
      { name: 'max-streams', value: 'N', description: 'Long-running requests (watches, exec, logs -f…) at once (0 for none), instead of the relay\'s per-agent default.' },
      NOW_FLAG,
      ...COMMON_FLAGS,
    ],
    examples: [
      'kube-relay policy set --agent deployer --deny delete:namespaces --deny create:pods/exec@kube-system --rate 5/s --burst 10',
      'kube-relay policy set --team acme/interns --read-only --now',
    ],
    async run({ values }, io) {
      const subject = await subjectOf(values);
      const policy = policyOf(values);
      const now = values.now === true;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const view = await management.setPolicy(subject, policy, now);
        print(io, format, view);
        io.stderr(`policy of ${describe(view)} set; ${applies(view)}\n`);
        return 0;
      });
    },
  },
  {
    words: ['policy', 'show'],
    summary: "Show an agent's or a team's policy; for an agent, also what its tokens carry.",
    synopsis: SUBJECT_SYNOPSIS,
    description: "A subject without a policy of its own shows an empty one. For an agent, the Effective block is its own policy merged with its teams': what each token minted for it carries.",
    flags: [...SUBJECT_FLAGS, ...COMMON_FLAGS],
    examples: ['kube-relay policy show --agent deployer', 'kube-relay policy show --team acme/sre --output json'],
    async run({ values }, io) {
      const subject = await subjectOf(values);
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        print(io, format, await management.showPolicy(subject));
        return 0;
      });
    },
  },
  {
    words: ['policy', 'clear'],
    summary: "Remove an agent's or a team's policy.",
    synopsis: `${SUBJECT_SYNOPSIS} [--now]`,
    description: "An agent's teams' policies still apply to it. A subject without a policy is no error.",
    flags: [...SUBJECT_FLAGS, NOW_FLAG, ...COMMON_FLAGS],
    examples: ['kube-relay policy clear --agent deployer', 'kube-relay policy clear --team acme/interns --now'],
    async run({ values }, io) {
      const subject = await subjectOf(values);
      const now = values.now === true;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const view = await management.clearPolicy(subject, now);
        if (format === 'json') printJson(io, view);
        io.stderr(`policy of ${describe(view)} cleared; ${applies(view)}\n`);
        return 0;
      });
    },
  },
];

/** Exactly one of --agent and --team, a team spelt ORG/TEAM. */
async function subjectOf(values: Values): Promise<PolicySubjectRequest> {
  const request = { agent: str(values, 'agent'), team: str(values, 'team') };
  if ((request.agent === undefined) === (request.team === undefined)) throw new UsageError('give one of --agent NAME and --team ORG/TEAM: a policy is of one agent or one team');
  const { policySubject } = await import('../../control/policies.js');
  try {
    policySubject(request);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new UsageError(err.message);
    throw err;
  }
  return request;
}

/** The policy the flags describe, checked whole (PolicyError's sentence as a usage error). */
function policyOf(values: Values): Policy {
  const rate = str(values, 'rate');
  const burst = str(values, 'burst');
  if (burst !== undefined && rate === undefined) throw new UsageError('--burst needs --rate N/s: it is the burst of that rate');
  const maxStreams = str(values, 'max-streams');
  if (maxStreams !== undefined && !/^\d{1,7}$/.test(maxStreams)) throw new UsageError(`--max-streams "${maxStreams}" is not a whole number (0 for no long-running requests at all)`);
  let policy: Policy;
  try {
    policy = {
      ...(values['read-only'] === true ? { readOnly: true } : {}),
      ...(values['dry-run'] === true ? { dryRun: true } : {}),
      ...(list(values, 'deny').length > 0 ? { deny: list(values, 'deny').map(parseDenyRule) } : {}),
      ...(rate !== undefined ? { rate: parseRate(rate, burst) } : {}),
      ...(maxStreams !== undefined ? { maxStreams: Number(maxStreams) } : {}),
    };
    validatePolicy(policy);
  } catch (err) {
    if (err instanceof PolicyError) throw new UsageError(err.message);
    throw err;
  }
  if (Object.keys(policy).length === 0) throw new UsageError('policy set needs at least one brake (--read-only, --dry-run, --deny, --rate, --max-streams); policy clear removes a policy');
  return policy;
}

function print(io: Io, format: OutputFormat, view: PolicyView): void {
  if (format === 'json') {
    printJson(io, view);
    return;
  }
  const updated = view.updatedAt === null ? 'never: no policy of its own' : `${view.updatedAt} by ${view.updatedBy}`;
  io.stdout(`${describe(view)} (org ${view.org})\n${aligned([...fieldRows(view.policy), ['updated', updated]], '  ')}`);
  if (view.effective) io.stdout(`Effective (with its teams):\n${aligned(fieldRows(view.effective), '  ')}`);
}

function fieldRows(policy: PolicyFieldsView): string[][] {
  const [firstRule, ...rules] = policy.deny;
  return [
    ['read-only', policy.readOnly ? 'yes' : 'no'],
    ['dry-run', policy.dryRun ? 'yes' : 'no'],
    ['deny', firstRule ?? 'none'],
    ...rules.map((rule) => ['', rule]),
    ['rate', policy.rate ? `${policy.rate.perSecond}/s burst ${policy.rate.burst}` : 'none'],
    ['max-streams', policy.maxStreams === null ? "the relay's default" : String(policy.maxStreams)],
  ];
}

function describe(view: PolicyView): string {
  return `${view.subject.kind} ${view.subject.name}`;
}

/** When the change reaches the agents' requests. */
function applies(view: PolicyView): string {
  const cut = view.tokensCut;
  if (!cut) return 'tokens minted from now on carry the change; tokens already minted keep their policy until they expire (60 s) unless --now cuts them.';
  if (cut.agents.length === 0) return 'no live agent is under it, so no token was cut.';
  return `tokens of ${cut.agents.map((a) => `agent:${a}`).join(', ')} cut at ${cut.at}: their live streams end and their next request needs a new token, which carries the change.`;
}
