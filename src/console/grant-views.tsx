/**
 * What the Grants page shows (src/console/grants.tsx serves it): the filter
 * form, the list of grants with each one's state in its cluster (kept
 * current by htmx swapping in just the state badges, so a focused Remove
 * button is never replaced under the keyboard), and the form that adds a
 * grant.
 */
import type { VNode } from 'preact';
import type { GrantView } from '../control/views.js';
import { formatDuration } from '../duration.js';
import { CLUSTER_ADMIN_ROLE } from '../grants/grant.js';
import type { Cluster } from '../issuer/store.js';
import { LIVE_REFRESH } from './clusters.js';
import { errorFor, type FormProblem } from './forms.js';
import { CheckboxField, CsrfField, Empty, Field, FormBanner, PostButton, SelectField, Time } from './layout.js';

/** The list's filters, as the page's query gives them. */
export interface GrantFilters {
  cluster?: string | undefined;
  agent?: string | undefined;
  group?: string | undefined;
}

/** What was typed into the add form, shown again beside a refusal. */
export interface GrantFormValues {
  cluster: string;
  granteeKind: 'agent' | 'group';
  grantee: string;
  role: string;
  namespace: string;
  expires: string;
  confirmClusterAdmin: boolean;
}

export interface RoleChoices {
  builtIn: { name: string; clusterRole: string }[];
  /** The grantable ClusterRoles the cluster of the filter reported; undefined: no cluster chosen. */
  custom?: { cluster: string; names: string[] } | undefined;
}

export function grantsQuery(filters: GrantFilters, after?: string): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...filters, continue: after })) if (value) params.set(name, value);
  const query = params.toString();
  return query ? `?${query}` : '';
}

export function FilterForm(props: { filters: GrantFilters; problem?: FormProblem | undefined }): VNode {
  const { filters, problem } = props;
  // Ids of their own: the add form below has a field named cluster too, and a label names the first element of its id.
  return (
    <form method="get" action="/ui/grants" class="filters" role="search" aria-label="Filter grants" novalidate>
      <Field label="Cluster" name="cluster" id="filter-cluster" value={filters.cluster} error={errorFor(problem, 'cluster')} />
      <Field label="Agent" name="agent" id="filter-agent" value={filters.agent} error={errorFor(problem, 'agent')} />
      <Field label="Group" name="group" id="filter-group" value={filters.group} error={errorFor(problem, 'group')} placeholder="ORG/TEAM" />
      <button type="submit" class="secondary">
        Filter
      </button>
      {filters.cluster || filters.agent || filters.group ? <a href="/ui/grants">Show all</a> : null}
    </form>
  );
}

export function GrantTable(props: { grants: GrantView[]; filters: GrantFilters; after: string | undefined; csrf: string; filtered: boolean }): VNode {
  if (props.grants.length === 0) return <Empty>{props.filtered ? 'No grant matches these filters.' : 'No grants yet: add one below.'}</Empty>;
  // hx-swap="none": the answer is only state badges, each swapped out of band into the badge of its id.
  return (
    <div id="grant-table" class="table-scroll" hx-get={`/ui/grants/live${grantsQuery(props.filters, props.after)}`} hx-trigger={LIVE_REFRESH} hx-swap="none">
      <table>
        <caption>Grants and their state in their cluster</caption>
        <thead>
          <tr>
            <th scope="col">ID</th>
            <th scope="col">Cluster</th>
            <th scope="col">Grantee</th>
            <th scope="col">Role</th>
            <th scope="col">Namespace</th>
            <th scope="col">Expires</th>
            <th scope="col">State</th>
            <th scope="col">Added</th>
            <th scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {props.grants.map((grant) => (
            <tr data-grant={grant.id}>
              <th scope="row" class="mono" data-label="ID">
                {grant.id}
              </th>
              <td data-label="Cluster">
                <a href={`/ui/clusters/${encodeURIComponent(grant.cluster)}`}>{grant.cluster}</a>
              </td>
              <td data-label="Grantee">{granteeText(grant)}</td>
              <td data-label="Role">{grant.role}</td>
              <td data-label="Namespace">{grant.namespace ?? <span class="muted">all namespaces</span>}</td>
              <td data-label="Expires">{grant.expiresAt ? <Time at={grant.expiresAt} /> : <span class="muted">never</span>}</td>
              <td data-label="State">
                <GrantState grant={grant} />
              </td>
              <td data-label="Added">
                <Time at={grant.createdAt} /> <span class="muted">by {grant.createdBy}</span>
              </td>
              <td data-label="Actions">
                <PostButton action={`/ui/grants/${encodeURIComponent(grant.id)}/remove`} csrf={props.csrf} label="Remove" danger />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The live answer: every listed grant's state badge, each to replace the badge of the same id. */
export function GrantStates(props: { grants: GrantView[] }): VNode {
  return (
    <>
      {props.grants.map((grant) => (
        <GrantState grant={grant} outOfBand />
      ))}
    </>
  );
}

/** The state exactly as grantView gives it: applied, pending, failed: REASON, or expired. */
function GrantState(props: { grant: GrantView; outOfBand?: boolean }): VNode {
  const { grant } = props;
  const text = grant.state === 'failed' ? `failed: ${grant.reason ?? 'no reason given'}` : grant.state;
  const kind = { applied: 'up', pending: 'pending', failed: 'bad', expired: 'expired' }[grant.state];
  return (
    <span id={`grant-state-${grant.id}`} class={`state ${kind}`} data-state={grant.state} title={grant.reportedAt ? `reported ${grant.reportedAt}` : undefined} hx-swap-oob={props.outOfBand ? 'true' : undefined}>
      {text}
    </span>
  );
}

function granteeText(grant: GrantView): string {
  return grant.agent !== undefined ? `agent:${grant.agent}` : `group ${grant.group!}`;
}

/** Every field of the add form: a refusal about any other is a banner over it. */
const ADD_GRANT_FIELDS = ['cluster', 'granteeKind', 'grantee', 'role', 'namespace', 'expires', 'confirmClusterAdmin'];

export function AddGrantForm(props: { csrf: string; clusters: Cluster[]; allOrgs: boolean; roles: RoleChoices; values: GrantFormValues; problem?: FormProblem | undefined; maxDurationMs: number | undefined }): VNode {
  const { values, problem, roles } = props;
  if (props.clusters.length === 0) return <Empty>A grant is on a cluster, and there is no cluster yet: add one on the <a href="/ui/clusters">Clusters</a> page first.</Empty>;
  const clusterOptions = props.clusters.map((cluster) => ({ value: cluster.name, label: props.allOrgs ? `${cluster.name} (org ${cluster.org})` : cluster.name }));
  const roleOptions = [
    { value: '', label: 'Choose a role…' },
    ...roles.builtIn.map((role) => ({ value: role.name, label: role.name === role.clusterRole ? role.name : `${role.name} (ClusterRole ${role.clusterRole})` })),
    ...(roles.custom?.names ?? []).map((name) => ({ value: name, label: `${name} (own role of ${roles.custom!.cluster})` })),
  ];
  const roleHint = roles.custom
    ? `The built-in roles of every cluster${roles.custom.names.length ? `, and the grantable ClusterRoles ${roles.custom.cluster} reported` : `; ${roles.custom.cluster} has reported no grantable ClusterRole of its own`}. Another cluster's own roles appear after choosing it in the cluster filter above.`
    : `The built-in roles of every cluster. A cluster's own grantable ClusterRoles (labelled kube-relay.dev/grantable: "true") appear after choosing that cluster in the cluster filter above.`;
  return (
    <form method="post" action="/ui/grants" class="stacked" novalidate>
      <CsrfField token={props.csrf} />
      <FormBanner problem={problem} fields={ADD_GRANT_FIELDS} />
      <SelectField label="Cluster" name="cluster" options={clusterOptions} value={values.cluster} error={errorFor(problem, 'cluster')} hint="The grant's cluster: its relay makes the grant a RoleBinding or ClusterRoleBinding." required />
      <SelectField
        label="Grant to"
        name="granteeKind"
        options={[
          { value: 'agent', label: 'an agent' },
          { value: 'group', label: "a team's group (every agent of the team)" },
        ]}
        value={values.granteeKind}
      />
      <Field label="Agent name or group" name="grantee" value={values.grantee} error={errorFor(problem, 'grantee')} hint="An agent's name (Kubernetes user agent:NAME), or a group as ORG/TEAM. The grantee and the cluster are of one org." required />
      <SelectField label="Role" name="role" options={roleOptions} value={values.role} error={errorFor(problem, 'role')} hint={roleHint} required />
      <Field label="Namespace" name="namespace" value={values.namespace} error={errorFor(problem, 'namespace')} hint="Only in this namespace (a RoleBinding). Empty: all namespaces (a ClusterRoleBinding)." />
      <Field
        label="Expires after"
        name="expires"
        value={values.expires}
        error={errorFor(problem, 'expires')}
        placeholder="8h"
        hint={`A duration from now, such as 30m, 8h or 7d${props.maxDurationMs === undefined ? '' : `, at most ${formatDuration(props.maxDurationMs)} on this issuer`}. Empty: the grant does not expire.`}
      />
      <CheckboxField label={`I understand this grants ${CLUSTER_ADMIN_ROLE}`} name="confirmClusterAdmin" checked={values.confirmClusterAdmin} error={errorFor(problem, 'confirmClusterAdmin')} hint="Needed for the cluster-admin role only: every right on the cluster, RBAC included." />
      <button type="submit">Add grant</button>
    </form>
  );
}
