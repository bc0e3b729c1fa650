/** `kube-relay rbac`: the chart's ClusterRoles for a cluster set up without Helm. */
import { renderRbacManifests } from '../../rbac/cluster-roles.js';
import type { CommandSpec } from '../command.js';

export const rbacCommands: CommandSpec[] = [
  {
    words: ['rbac'],
    summary: "Print the chart's ClusterRoles as YAML for kubectl apply -f -.",
    synopsis: '[--access-roles] [--impersonator]',
    description:
      'kube-relay-logs, -exec, -port-forward and -read-only are the roles grants may name besides Kubernetes\' own; kube-relay-impersonator is what the relay\'s own identity needs (bind it with kubectl create clusterrolebinding, as the output\'s comment shows). With neither flag, both. The rules are the Helm chart\'s, read from the same file.',
    flags: [
      { name: 'access-roles', description: 'Print the access roles (kube-relay-logs, -exec, -port-forward, -read-only).' },
      { name: 'impersonator', description: "Print the relay's impersonator role (kube-relay-impersonator)." },
    ],
    examples: ['kube-relay rbac | kubectl apply -f -'],
    run({ values }, io) {
      const both = !values['access-roles'] && !values.impersonator;
      io.stdout(renderRbacManifests({ accessRoles: both || values['access-roles'] === true, impersonator: both || values.impersonator === true }));
      return 0;
    },
  },
];
