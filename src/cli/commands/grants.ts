/**
 * `kube-relay grant …` (DESIGN §11): grants, on the local store or through
 * a remote issuer's admin API, each a role for an agent or a team's group
 * on one cluster, reconciled into RBAC by that cluster's relay.
 */
import type { GrantView } from '../../control/views.js';
import { BUILT_IN_ROLES, DEFAULT_MAX_GRANT_DURATION_MS } from '../../grants/grant.js';
import { type CommandSpec, type FlagSpec, str, UsageError, type Values } from '../command.js';
import { duration } from '../flag-values.js';
import { isRemote, MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { OUTPUT_FLAG, outputFormat, printJson, printList, table } from '../output.js';

export const MAX_GRANT_DURATION_FLAG: FlagSpec = {
  name: 'max-grant-duration',
  value: 'DURATION',
  description: 'The longest --expires a grant may have (0 for no limit); a grant without --expires does not expire.',
  default: '30d',
};

/** --max-grant-duration in milliseconds; 0: no limit. */
export function maxGrantDuration(values: Values): number {
  const value = str(values, 'max-grant-duration');
  return value === undefined ? DEFAULT_MAX_GRANT_DURATION_MS : duration(value, '--max-grant-duration');
}

const HEADER = ['ID', 'CLUSTER', 'GRANTEE', 'ROLE', 'NAMESPACE', 'EXPIRES', 'STATE'];
const row = (g: GrantView) => [
  g.id,
  g.cluster,
  g.agent !== undefined ? `agent:${g.agent}` : `group:${g.group!}`,
  g.role,
  g.namespace ?? '(all)',
  g.expiresAt ?? 'never',
  g.state === 'failed' ? `failed: ${g.reason ?? 'no reason given'}` : g.state,
];

export const grantCommands: CommandSpec[] = [
  {
    words: ['grant', 'add'],
    summary: 'Grant a role on a cluster to an agent or a group; prints the grant id.',
    synopsis: '--cluster C (--agent NAME | --group ORG/TEAM) --role ROLE [--namespace NS] [--expires DURATION]',
    description:
      `The cluster's relay makes it a RoleBinding in NS (or a ClusterRoleBinding without --namespace) named kube-relay-ID, and reports back; grant list shows its state. Roles: ${Object.keys(BUILT_IN_ROLES).join(', ')}, or a ClusterRole of the cluster labelled kube-relay.dev/grantable: "true". cluster-admin needs --i-understand-cluster-admin. The cluster and the grantee are of one org.`,
    flags: [
      { name: 'cluster', value: 'C', description: 'The cluster the grant is on.' },
      { name: 'agent', value: 'NAME', description: 'Grant to agent NAME (Kubernetes user agent:NAME).' },
      { name: 'group', value: 'ORG/TEAM', description: "Grant to a team's group: every agent of the team." },
      { name: 'role', value: 'ROLE', description: 'The role granted.' },
      { name: 'namespace', value: 'NS', description: 'Only in this namespace.', default: 'cluster-wide' },
      { name: 'expires', value: 'DURATION', description: 'Remove the grant this long from now (30m, 8h, 7d).', default: 'never' },
      { name: 'i-understand-cluster-admin', description: 'Confirm a cluster-admin grant: every right on the cluster, RBAC included.' },
      MAX_GRANT_DURATION_FLAG,
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: ['kube-relay grant add --cluster prod-eu --group acme/sre --role view', 'kube-relay grant add --cluster prod-eu --agent deployer --role edit --namespace web --expires 8h'],
    async run({ values }, io) {
      const cluster = str(values, 'cluster');
      const role = str(values, 'role');
      if (cluster === undefined) throw new UsageError('--cluster is required: the cluster the grant is on');
      if (role === undefined) throw new UsageError(`--role is required: one of ${Object.keys(BUILT_IN_ROLES).join(', ')}, or a grantable role of the cluster`);
      const expires = str(values, 'expires');
      const expiresInMs = expires === undefined ? undefined : duration(expires, '--expires');
      if (expiresInMs === 0) throw new UsageError('--expires 0 would end the grant at once: give a duration such as 30m, 8h or 7d, or leave it out');
      if (isRemote(values) && str(values, 'max-grant-duration') !== undefined) throw new UsageError('--max-grant-duration applies to the local store; a remote issuer applies its own');
      const format = outputFormat(values);
      const request = {
        cluster,
        agent: str(values, 'agent'),
        group: str(values, 'group'),
        role,
        namespace: str(values, 'namespace'),
        expiresInMs,
        confirmClusterAdmin: values['i-understand-cluster-admin'] === true,
      };
      return withManagement(values, io, async (management) => {
        const grant = await management.createGrant(request, maxGrantDuration(values));
        if (format === 'json') printJson(io, grant);
        else io.stdout(`${grant.id}\n`);
        io.stderr(`grant ${grant.id} added: role ${grant.role} to ${grant.agent !== undefined ? `agent:${grant.agent}` : `group ${grant.group}`} on cluster ${grant.cluster}${grant.namespace ? ` in namespace ${grant.namespace}` : ''}${grant.expiresAt ? ` until ${grant.expiresAt}` : ''}; pending until the cluster's relay applies it (grant list shows its state).\n`);
        return 0;
      });
    },
  },
  {
    words: ['grant', 'list'],
    summary: 'List grants with their state in their cluster.',
    synopsis: '[--cluster C] [--agent NAME | --group ORG/TEAM]',
    description: "STATE is pending (the relay has not applied it yet), applied, failed: REASON (as the relay reported), or expired.",
    flags: [
      { name: 'cluster', value: 'C', description: "Only this cluster's grants." },
      { name: 'agent', value: 'NAME', description: "Only this agent's grants." },
      { name: 'group', value: 'ORG/TEAM', description: "Only this group's grants." },
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: ['kube-relay grant list --cluster prod-eu'],
    run({ values }, io) {
      const format = outputFormat(values);
      const filter = { cluster: str(values, 'cluster'), agent: str(values, 'agent'), group: str(values, 'group') };
      return withManagement(values, io, async (management) => {
        printList(io, format, await management.listGrants(filter), HEADER, row);
        return 0;
      });
    },
  },
  {
    words: ['grant', 'remove'],
    summary: 'Remove a grant; its cluster\'s relay deletes the binding.',
    synopsis: 'ID',
    positionals: [{ name: 'ID', description: 'The grant id, as grant add printed it and grant list shows it.' }],
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay grant remove 3k9x2m7q1vbd'],
    run({ values, positionals }, io) {
      const id = positionals[0]!;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const removed = await management.removeGrant(id);
        if (format === 'json') printJson(io, removed);
        io.stderr(`grant ${removed.id} removed: the relay of cluster ${removed.cluster} deletes its binding.\n`);
        return 0;
      });
    },
  },
  {
    words: ['role', 'list'],
    summary: 'List the roles a grant on a cluster may name.',
    synopsis: '--cluster C',
    description: 'The built-in roles every cluster has, and the cluster\'s own ClusterRoles labelled kube-relay.dev/grantable: "true" as its relay last reported them (a relay with --central-grants looks every few seconds).',
    flags: [{ name: 'cluster', value: 'C', description: 'The cluster.' }, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay role list --cluster prod-eu'],
    run({ values }, io) {
      const cluster = str(values, 'cluster');
      if (cluster === undefined) throw new UsageError('--cluster is required: the cluster whose roles to list');
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const roles = await management.listRoles(cluster);
        if (format === 'json') printJson(io, roles);
        else {
          io.stdout(
            table(
              ['ROLE', 'CLUSTERROLE', 'SOURCE'],
              [...roles.builtIn.map((r) => [r.name, r.clusterRole, 'built-in']), ...roles.custom.map((r) => [r.name, r.name, `labelled grantable (reported ${r.reportedAt})`])],
            ),
          );
        }
        return 0;
      });
    },
  },
];
