/**
 * The Agents page (DESIGN §14, §13): every agent of the admin's org with its
 * teams, its own policy on one line and its state; creating an agent (the
 * API key once, and the commands that store it and write a kubeconfig),
 * rotating its key, revoking it after a confirmation that names it, and
 * editing its policy. Each action is the control operation the admin API
 * and the CLI call, and the policy form is read by the parsers `policy set`
 * and `PUT /v1/agents/{name}/policy` use, so a value is refused here with
 * the same sentence, beside its field, before anything changes.
 */
import type { Request, Response, Router } from 'express';
import * as ops from '../control/operations.js';
import * as policies from '../control/policies.js';
import { InvalidInputError } from '../issuer/registry.js';
import type { Agent } from '../issuer/store.js';
import { isEmptyPolicy, parseDenyRule, parseRate, type Policy, PolicyError, validatePolicy } from '../policy/policy.js';
import { AddAgentForm, AgentFacts, AgentKeyPage, agentPath, type AgentRow, AgentTable, PolicyForm, type PolicyFormValues, policyFormValues, PolicyTable, RevokeAgentForm } from './agent-views.js';
import { callerOf, formProtection, requireAdmin } from './auth.js';
import { type FormProblem, formProblem, formText, nameNotTyped, queryText } from './forms.js';
import { Banner, NextPage, PostButton, sendPage } from './layout.js';
import { type ConsolePageDeps, pageContext } from './page-deps.js';

/** The words the Registry's and the operations' sentences about each field start with. */
const AGENT_FIELDS = { name: ['agent name', 'agent "', 'the agent name'], teams: ['team', 'an agent needs at least one team'], org: ['org', 'an agent needs an org'] };

export function addAgentPages(router: Router, deps: ConsolePageDeps): void {
  const signedIn = requireAdmin(deps.auth);
  const forms = [signedIn, ...formProtection];

  router.get('/agents', signedIn, async (req, res) => {
    await listPage(req, res, deps);
  });
  router.post('/agents', ...forms, async (req, res) => {
    const input = { name: formText(req, 'name'), org: formText(req, 'org') || undefined, teams: teamsOf(formText(req, 'teams')) };
    try {
      const created = await ops.createAgent(deps.registry, callerOf(res), input);
      deps.record(req, res, 'create', { kind: 'agent', name: created.agent.name, org: created.agent.org });
      sendPage(res, pageContext(req, res, 'agents'), `Agent ${created.agent.name} created`, <AgentKeyPage agent={created.agent} apiKey={created.apiKey} publicUrl={deps.publicUrl} issuerCaPem={deps.issuerCaPem} rotated={false} />, 201);
    } catch (err) {
      await listPage(req, res, deps, { problem: formProblem(err, AGENT_FIELDS), values: { name: input.name, org: input.org ?? '', teams: formText(req, 'teams') } });
    }
  });
  router.get('/agents/:name', signedIn, async (req, res) => {
    await detailPage(req, res, deps);
  });
  router.post('/agents/:name/rotate-key', ...forms, async (req, res) => {
    try {
      const rotated = await ops.rotateAgentKey(deps.registry, callerOf(res), String(req.params.name));
      deps.record(req, res, 'rotate-key', { kind: 'agent', name: rotated.agent.name, org: rotated.agent.org });
      sendPage(res, pageContext(req, res, 'agents'), `New API key for ${rotated.agent.name}`, <AgentKeyPage agent={rotated.agent} apiKey={rotated.apiKey} publicUrl={deps.publicUrl} issuerCaPem={deps.issuerCaPem} rotated />);
    } catch (err) {
      await detailPage(req, res, deps, { problem: formProblem(err) });
    }
  });
  router.get('/agents/:name/revoke', signedIn, async (req, res) => {
    await revokePage(req, res, deps);
  });
  router.post('/agents/:name/revoke', ...forms, async (req, res) => {
    const name = String(req.params.name);
    const notTyped = nameNotTyped(req, 'agent', name);
    if (notTyped) {
      await revokePage(req, res, deps, notTyped);
      return;
    }
    try {
      const agent = await ops.revokeAgent(deps.registry, callerOf(res), name);
      deps.record(req, res, 'revoke', { kind: 'agent', name: agent.name, org: agent.org });
      res.redirect(303, `${agentPath(agent.name)}?done=revoked`);
    } catch (err) {
      await revokePage(req, res, deps, formProblem(err));
    }
  });
  router.post('/agents/:name/policy', ...forms, async (req, res) => {
    const values = policyValuesOf(req);
    const read = policyOfForm(values);
    if ('problem' in read) {
      await detailPage(req, res, deps, { policyForm: { values, problem: read.problem } });
      return;
    }
    try {
      const state = await policies.setPolicy(deps.registry, callerOf(res), { agent: String(req.params.name) }, read.policy, { now: values.now }, deps.now());
      const cleared = isEmptyPolicy(state.policy);
      deps.record(req, res, cleared ? 'clear-policy' : 'set-policy', { kind: 'agent', name: state.subject.name, org: state.org });
      res.redirect(303, doneAddress(state, cleared ? 'policy-cleared' : 'policy-set'));
    } catch (err) {
      await detailPage(req, res, deps, { policyForm: { values, problem: formProblem(err) } });
    }
  });
  router.post('/agents/:name/policy/clear', ...forms, async (req, res) => {
    try {
      const state = await policies.clearPolicy(deps.registry, callerOf(res), { agent: String(req.params.name) }, {}, deps.now());
      deps.record(req, res, 'clear-policy', { kind: 'agent', name: state.subject.name, org: state.org });
      res.redirect(303, doneAddress(state, 'policy-cleared'));
    } catch (err) {
      await detailPage(req, res, deps, { problem: formProblem(err) });
    }
  });
}

/** Teams as typed: separated by commas, spaces or both. */
function teamsOf(text: string): string[] {
  return text.split(/[\s,]+/).filter((team) => team !== '');
}

function doneAddress(state: policies.PolicyState, done: 'policy-set' | 'policy-cleared'): string {
  return `${agentPath(state.subject.name)}?done=${done}${state.tokensCut?.agents.length ? '&cut=1' : ''}`;
}

async function listPage(req: Request, res: Response, deps: ConsolePageDeps, form: { problem?: FormProblem; values?: Record<string, string> } = {}): Promise<void> {
  const ctx = pageContext(req, res, 'agents');
  const caller = callerOf(res);
  let rows: { items: AgentRow[]; continue?: string | undefined };
  try {
    const page = await ops.listAgents(deps.registry, caller, { limit: 50, continue: queryText(req, 'continue'), org: queryText(req, 'org') });
    const items = await Promise.all(page.items.map(async (agent) => ({ agent, policy: (await policies.getPolicy(deps.registry, caller, { agent: agent.name })).policy })));
    rows = { items, continue: page.continue };
  } catch (err) {
    const problem = formProblem(err);
    sendPage(res, ctx, 'Agents', <Banner kind="error">{problem.message}</Banner>, problem.status);
    return;
  }
  const body = (
    <>
      <AgentTable rows={rows.items} />
      <NextPage path="/ui/agents" query={{ org: queryText(req, 'org') }} next={rows.continue} />
      <AddAgentForm csrf={ctx.csrf} askOrg={ctx.caller?.org === undefined} problem={form.problem} values={form.values} />
    </>
  );
  sendPage(res, ctx, 'Agents', body, form.problem?.status ?? 200);
}

const DONE_NOTICES: Record<string, (name: string) => string> = {
  revoked: (name) => `Agent ${name} was revoked: its API key no longer works, and relays refuse the tokens it holds and end its live streams.`,
  'policy-set': (name) => `The policy of ${name} was saved.`,
  'policy-cleared': (name) => `${name} has no policy of its own any more; its teams' policies still apply.`,
};

function doneNotice(req: Request, name: string): string | undefined {
  const done = queryText(req, 'done');
  const notice = done && Object.hasOwn(DONE_NOTICES, done) ? DONE_NOTICES[done]!(name) : undefined;
  if (!notice || done === 'revoked') return notice;
  return queryText(req, 'cut')
    ? `${notice} Its tokens were cut: its live streams ended, and its next request needs a new token, which carries the change.`
    : `${notice} Tokens minted from now on carry the change; tokens it already holds keep the old policy until they expire (60 s).`;
}

async function detailPage(req: Request, res: Response, deps: ConsolePageDeps, form: { problem?: FormProblem; policyForm?: { values: PolicyFormValues; problem: FormProblem } } = {}): Promise<void> {
  const ctx = pageContext(req, res, 'agents');
  const name = String(req.params.name);
  let agent: Agent;
  let state: policies.PolicyState;
  try {
    agent = await ops.getAgent(deps.registry, callerOf(res), name);
    state = await policies.getPolicy(deps.registry, callerOf(res), { agent: name });
  } catch (err) {
    const refused = formProblem(err);
    sendPage(res, ctx, 'Agent not found', <Banner kind="error">{refused.message}</Banner>, refused.status);
    return;
  }
  const notice = form.problem || form.policyForm ? undefined : doneNotice(req, agent.name);
  // A revoked agent has no policy form to show its refusal in.
  const pageProblem = form.problem ?? (agent.revokedAt ? form.policyForm?.problem : undefined);
  const body = (
    <>
      {notice ? <Banner kind="notice">{notice}</Banner> : null}
      {pageProblem ? <Banner kind="error">{pageProblem.message}</Banner> : null}
      <AgentFacts agent={agent} />
      <PolicyTable state={state} />
      {agent.revokedAt ? null : (
        <>
          <section aria-labelledby="agent-actions" class="actions">
            <h2 id="agent-actions">Actions</h2>
            <PostButton action={agentPath(agent.name, '/rotate-key')} csrf={ctx.csrf} label="Rotate API key" />
            <a class="button danger" href={agentPath(agent.name, '/revoke')}>
              Revoke agent…
            </a>
          </section>
          <PolicyForm name={agent.name} csrf={ctx.csrf} values={form.policyForm?.values ?? policyFormValues(state.policy)} problem={form.policyForm?.problem} hasOwnPolicy={!isEmptyPolicy(state.policy)} />
        </>
      )}
    </>
  );
  sendPage(res, ctx, `Agent ${agent.name}`, body, form.problem?.status ?? form.policyForm?.problem.status ?? 200);
}

async function revokePage(req: Request, res: Response, deps: ConsolePageDeps, problem?: FormProblem): Promise<void> {
  const ctx = pageContext(req, res, 'agents');
  const name = String(req.params.name);
  try {
    await ops.getAgent(deps.registry, callerOf(res), name);
  } catch (err) {
    const refused = formProblem(err);
    sendPage(res, ctx, 'Agent not found', <Banner kind="error">{refused.message}</Banner>, refused.status);
    return;
  }
  sendPage(res, ctx, `Revoke agent ${name}?`, <RevokeAgentForm name={name} csrf={ctx.csrf} problem={problem} />, problem?.status ?? 200);
}

function policyValuesOf(req: Request): PolicyFormValues {
  const checked = (name: string) => formText(req, name) !== '';
  return { readOnly: checked('readOnly'), dryRun: checked('dryRun'), deny: formText(req, 'deny'), rate: formText(req, 'rate'), burst: formText(req, 'burst'), maxStreams: formText(req, 'maxStreams'), now: checked('now') };
}

type PolicyField = 'deny' | 'rate' | 'burst' | 'maxStreams';

class FieldRefusal extends Error {
  constructor(
    readonly field: PolicyField,
    message: string,
  ) {
    super(message);
  }
}

/** Runs one parser of src/policy/policy.ts; its PolicyError becomes a refusal of `field`. */
function readField<T>(field: PolicyField | ((message: string) => PolicyField), parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof PolicyError) throw new FieldRefusal(typeof field === 'function' ? field(err.message) : field, err.message);
    throw err;
  }
}

/** The policy the form describes, or the parser's sentence about the field it refuses. */
function policyOfForm(values: PolicyFormValues): { policy: Policy } | { problem: FormProblem } {
  try {
    if (values.burst !== '' && values.rate === '') throw new FieldRefusal('burst', 'a burst needs a rate (N/s): it is the burst of that rate');
    const rules = values.deny.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== '');
    // Not a whole number is NaN, which validatePolicy refuses with the sentence the API and the CLI give.
    const maxStreams = values.maxStreams === '' ? undefined : /^\d+$/.test(values.maxStreams) ? Number(values.maxStreams) : Number.NaN;
    if (maxStreams !== undefined) readField('maxStreams', () => validatePolicy({ maxStreams }));
    const policy: Policy = {
      ...(values.readOnly ? { readOnly: true } : {}),
      ...(values.dryRun ? { dryRun: true } : {}),
      ...(rules.length > 0 ? { deny: readField('deny', () => rules.map(parseDenyRule)) } : {}),
      ...(values.rate !== '' ? { rate: readField((message) => (message.startsWith('burst') ? 'burst' : 'rate'), () => parseRate(values.rate, values.burst || undefined)) } : {}),
      ...(maxStreams !== undefined ? { maxStreams } : {}),
    };
    // Each field has been read; what the whole can still break is its size (rules, bytes of the token).
    readField('deny', () => validatePolicy(policy));
    return { policy };
  } catch (err) {
    if (err instanceof FieldRefusal) return { problem: { ...formProblem(new InvalidInputError(err.message)), field: err.field } };
    throw err;
  }
}
