/**
 * What the Agents pages show (src/console/agents.tsx serves them): the list
 * with each agent's own policy on one line, the add form, an agent's own and
 * effective policy side by side, the policy form, the one-time key page and
 * the revoke confirmation.
 */
import type { ComponentChildren, VNode } from 'preact';
import type { PolicyState } from '../control/policies.js';
import type { Agent } from '../issuer/store.js';
import { formatDenyRule, isEmptyPolicy, type Policy } from '../policy/policy.js';
import { errorFor, type FormProblem } from './forms.js';
import { CheckboxField, Command, CsrfField, Empty, Field, FormBanner, PostButton, RevokeByName, SecretOnce, TextAreaField, Time } from './layout.js';

export interface AgentRow {
  agent: Agent;
  /** Its own policy (empty when it has none). */
  policy: Policy;
}

/** The policy form as typed: kept as text, so a refused value is shown back unchanged. */
export interface PolicyFormValues {
  readOnly: boolean;
  dryRun: boolean;
  /** One rule a line. */
  deny: string;
  rate: string;
  burst: string;
  maxStreams: string;
  now: boolean;
}

export function agentPath(name: string, tail = ''): string {
  return `/ui/agents/${encodeURIComponent(name)}${tail}`;
}

/** A policy on one line: "read-only, rate 5/s burst 5, deny delete:pods@kube-system", or "none". */
export function policySummary(policy: Policy): string {
  const parts = [
    ...(policy.readOnly ? ['read-only'] : []),
    ...(policy.dryRun ? ['dry-run'] : []),
    ...(policy.rate ? [`rate ${policy.rate.perSecond}/s burst ${policy.rate.burst}`] : []),
    ...(policy.maxStreams !== undefined ? [`max streams ${policy.maxStreams}`] : []),
    // Rules hold commas of their own (get,list:pods), so they are set apart by spaces.
    ...(policy.deny?.length ? [`deny ${policy.deny.map(formatDenyRule).join(' ')}`] : []),
  ];
  return parts.length > 0 ? parts.join(', ') : 'none';
}

export function policyFormValues(policy: Policy): PolicyFormValues {
  return {
    readOnly: policy.readOnly === true,
    dryRun: policy.dryRun === true,
    deny: (policy.deny ?? []).map(formatDenyRule).join('\n'),
    rate: policy.rate ? `${policy.rate.perSecond}/s` : '',
    burst: policy.rate ? String(policy.rate.burst) : '',
    maxStreams: policy.maxStreams === undefined ? '' : String(policy.maxStreams),
    now: false,
  };
}

export function AgentState(props: { agent: Agent }): VNode {
  return props.agent.revokedAt ? (
    <span class="state revoked">
      revoked <Time at={props.agent.revokedAt} />
    </span>
  ) : (
    <span class="state up">active</span>
  );
}

export function AgentTable(props: { rows: AgentRow[] }): VNode {
  if (props.rows.length === 0) return <Empty>No agents yet: add one below.</Empty>;
  return (
    <table>
      <caption>Agents, their teams and their own policies</caption>
      <thead>
        <tr>
          <th scope="col">Agent</th>
          <th scope="col">Org</th>
          <th scope="col">Teams</th>
          <th scope="col">Policy</th>
          <th scope="col">State</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map(({ agent, policy }) => (
          <tr data-agent={agent.name}>
            <th scope="row">
              <a href={agentPath(agent.name)}>{agent.name}</a>
            </th>
            <td data-label="Org">{agent.org}</td>
            <td data-label="Teams">{agent.teams.join(', ')}</td>
            <td data-label="Policy" class={isEmptyPolicy(policy) ? 'muted' : 'mono'}>
              {policySummary(policy)}
            </td>
            <td data-label="State">
              <AgentState agent={agent} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function AddAgentForm(props: { csrf: string; askOrg: boolean; problem?: FormProblem | undefined; values?: Record<string, string> | undefined }): VNode {
  const { problem, values } = props;
  const fields = props.askOrg ? ['name', 'teams', 'org'] : ['name', 'teams'];
  return (
    <section aria-labelledby="add-agent">
      <h2 id="add-agent">Add an agent</h2>
      <p>An agent gets an API key, shown once: with it, it asks this issuer for 60-second tokens. It acts on clusters as user agent:NAME with a group ORG/TEAM per team.</p>
      <form method="post" action="/ui/agents" class="stacked" novalidate>
        <CsrfField token={props.csrf} />
        <FormBanner problem={problem} fields={fields} />
        <Field label="Agent name" name="name" value={values?.name} error={errorFor(problem, 'name')} hint="A DNS label, such as deployer." required />
        <Field label="Teams" name="teams" value={values?.teams} error={errorFor(problem, 'teams')} hint="One or more, separated by commas or spaces, such as sre, dev: grants and team policies name them." required />
        {props.askOrg ? <Field label="Org" name="org" value={values?.org} error={errorFor(problem, 'org')} hint="The org whose clusters the agent may reach." required /> : null}
        <button type="submit">Add agent</button>
      </form>
    </section>
  );
}

export function AgentFacts(props: { agent: Agent }): VNode {
  const { agent } = props;
  return (
    <dl class="facts">
      <dt>Org</dt>
      <dd>{agent.org}</dd>
      <dt>Teams</dt>
      <dd>{agent.teams.join(', ')}</dd>
      <dt>In clusters</dt>
      <dd class="mono">
        user agent:{agent.name}, groups {agent.teams.map((team) => `${agent.org}/${team}`).join(', ')}
      </dd>
      <dt>Created</dt>
      <dd>
        <Time at={agent.createdAt} />
      </dd>
      <dt>State</dt>
      <dd>
        <AgentState agent={agent} />
      </dd>
    </dl>
  );
}

const BRAKES: { label: string; show: (policy: Policy) => ComponentChildren }[] = [
  { label: 'Read-only', show: (policy) => (policy.readOnly ? 'yes' : 'no') },
  { label: 'Dry-run', show: (policy) => (policy.dryRun ? 'yes' : 'no') },
  { label: 'Deny', show: (policy) => (policy.deny?.length ? policy.deny.map((rule) => <code class="rule">{formatDenyRule(rule)}</code>) : 'none') },
  { label: 'Rate', show: (policy) => (policy.rate ? `${policy.rate.perSecond}/s, burst ${policy.rate.burst}` : 'none') },
  { label: 'Max streams', show: (policy) => (policy.maxStreams === undefined ? "the relay's default" : String(policy.maxStreams)) },
];

/** Its own policy beside the effective one (its own merged with its teams'), which its tokens carry. */
export function PolicyTable(props: { state: PolicyState }): VNode {
  const { state } = props;
  const effective = state.effective ?? state.policy;
  return (
    <section aria-labelledby="agent-policy">
      <h2 id="agent-policy">Policy</h2>
      <table class="policy">
        <caption>Brakes beyond RBAC: its own, and what its tokens carry with its teams' policies merged in (each brake at its strictest)</caption>
        <thead>
          <tr>
            <th scope="col">Brake</th>
            <th scope="col">Its own</th>
            <th scope="col">Effective</th>
          </tr>
        </thead>
        <tbody>
          {BRAKES.map((brake) => (
            <tr>
              <th scope="row">{brake.label}</th>
              <td data-label="Its own">{brake.show(state.policy)}</td>
              <td data-label="Effective">{brake.show(effective)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted">
        {state.updatedAt ? (
          <>
            Its own policy was last changed <Time at={state.updatedAt} /> by {state.updatedBy}.
          </>
        ) : (
          'It has no policy of its own.'
        )}
      </p>
    </section>
  );
}

const POLICY_FIELDS = ['deny', 'rate', 'burst', 'maxStreams'];

export function PolicyForm(props: { name: string; csrf: string; values: PolicyFormValues; problem?: FormProblem | undefined; hasOwnPolicy: boolean }): VNode {
  const { values, problem } = props;
  return (
    <section aria-labelledby="edit-policy">
      <h2 id="edit-policy">Edit policy</h2>
      <p>Saving replaces the agent's whole policy with this one; its teams' policies still apply. Nothing checked or filled in removes it.</p>
      <form method="post" action={agentPath(props.name, '/policy')} class="stacked" novalidate>
        <CsrfField token={props.csrf} />
        <FormBanner problem={problem} fields={POLICY_FIELDS} />
        <CheckboxField label="Read-only" name="readOnly" checked={values.readOnly} hint="Only get, list and watch (and discovery)." />
        <CheckboxField label="Dry-run" name="dryRun" checked={values.dryRun} hint="Every create, update, patch and delete is sent with dryRun=All (validated, never persisted); exec, attach and port-forward are refused." />
        <TextAreaField label="Deny rules" name="deny" rows={4} value={values.deny} error={errorFor(problem, 'deny')} hint="One VERBS:RESOURCES[@NAMESPACES] a line, such as delete:pods@kube-system or create:pods/exec." />
        <Field label="Rate" name="rate" value={values.rate} error={errorFor(problem, 'rate')} placeholder="5/s" hint="At most N requests a second (N/s) per relay replica; past it 429 with Retry-After. Empty: no limit." />
        <Field label="Burst" name="burst" value={values.burst} error={errorFor(problem, 'burst')} hint="With a rate: requests at once after a quiet spell. Empty: the rate, rounded up." />
        <Field label="Max streams" name="maxStreams" value={values.maxStreams} error={errorFor(problem, 'maxStreams')} hint="Long-running requests (watches, exec, logs -f…) at once; 0 for none. Empty: the relay's default." />
        <CheckboxField
          label="Apply now (cut the agent's live streams)"
          name="now"
          checked={values.now}
          hint="Its tokens are cut: relays end its live streams and its next request needs a new token, which carries the change. Otherwise tokens already minted keep the old policy until they expire (60 s)."
        />
        <button type="submit">Save policy</button>
      </form>
      {props.hasOwnPolicy ? (
        <p class="actions">
          <PostButton action={agentPath(props.name, '/policy/clear')} csrf={props.csrf} label="Clear policy" danger />
        </p>
      ) : null}
    </section>
  );
}

/**
 * The API key, once, and the commands that store it and write a kubeconfig for it. The cluster
 * cannot be chosen inside a command, so it is the placeholder CLUSTER. The server is the hub's
 * path for a tunnelled cluster; a relay in direct mode has its own URL.
 */
export function AgentKeyPage(props: { agent: Agent; apiKey: string; publicUrl: string; issuerCaPem?: string | undefined; rotated: boolean }): VNode {
  const { agent, apiKey, issuerCaPem } = props;
  const keyFile = `${agent.name}.api-key`;
  const storeKey = `umask 077; printf '%s' '${apiKey}' > ${keyFile}`;
  const lines = [
    storeKey,
    ...(issuerCaPem ? [`cat > issuer-ca.crt <<'EOF'\n${issuerCaPem.trim()}\nEOF`] : []),
    `kube-relay kubeconfig --issuer ${props.publicUrl}${issuerCaPem ? ' --issuer-ca-file issuer-ca.crt' : ''} \\`,
    `  --cluster CLUSTER --server ${props.publicUrl}/clusters/CLUSTER${issuerCaPem ? ' --ca-file issuer-ca.crt' : ''} \\`,
    `  --api-key-file ${keyFile} > ${agent.name}.kubeconfig`,
  ];
  return (
    <>
      <SecretOnce id="api-key" label={`API key of ${agent.name}`} value={apiKey} />
      {props.rotated ? (
        <>
          <p>The old key stopped working. Tokens already minted with it live out their 60 seconds; revoke the agent to cut those too.</p>
          <Command id="store-key-command" label="Replace the stored key: kubeconfigs that read this file keep working" text={storeKey} />
        </>
      ) : (
        <Command
          id="kubeconfig-command"
          label="Store the key and write a kubeconfig: replace CLUSTER (twice) with a cluster of its org; for a relay in direct mode, give its own URL as --server"
          text={lines.join('\n')}
        />
      )}
      <p>
        <a href={agentPath(agent.name)}>Go to {agent.name}</a>: give it grants on clusters, and a policy if it needs brakes beyond RBAC.
      </p>
    </>
  );
}

export function RevokeAgentForm(props: { name: string; csrf: string; problem?: FormProblem | undefined }): VNode {
  const { name } = props;
  return (
    <RevokeByName action={agentPath(name, '/revoke')} cancelHref={agentPath(name)} name={name} csrf={props.csrf} problem={props.problem}>
      Revoking <strong>{name}</strong> stops its API key at once: it gets no new tokens, relays refuse the tokens it holds and end its live streams, and its open sessions end now. It cannot be
      undone, and the name cannot be used again.
    </RevokeByName>
  );
}
