/**
 * kube-relay's ClusterRoles for clusters installed without Helm (`kube-relay
 * rbac`): the access roles grants name (kube-relay-logs, -exec, -port-forward,
 * -read-only) and the relay's impersonator role.
 *
 * Their rules are defined once, in the chart's files/cluster-roles.yaml, which
 * the chart's templates read too; this module reads that file, never a copy,
 * so `kubectl apply` of this output and `helm install` grant the same rights.
 * The file ships in the npm package (package.json `files`) and sits at the
 * same place relative to src/rbac and dist/rbac.
 *
 * Labels: only `app.kubernetes.io/name: kube-relay`. Not `managed-by:
 * kube-relay`, which DESIGN §11 gives to the bindings the relay reconciles
 * (and may delete); these roles are the operator's, applied by kubectl.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Document, isScalar, parse, visit } from 'yaml';

export const RULES_FILE = fileURLToPath(new URL('../../deploy/helm/kube-relay/files/cluster-roles.yaml', import.meta.url));

/** The chart names it `<release fullname>-impersonator`, which for the usual release name "kube-relay" is this too. */
export const IMPERSONATOR_CLUSTER_ROLE = 'kube-relay-impersonator';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

export interface ClusterRole {
  apiVersion: 'rbac.authorization.k8s.io/v1';
  kind: 'ClusterRole';
  metadata: { name: string; labels: Record<string, string> };
  rules: PolicyRule[];
}

export interface ClusterRoleRules {
  accessRoles: { name: string; rules: PolicyRule[] }[];
  impersonator: { rules: PolicyRule[] };
}

export interface RbacManifestOptions {
  /** kube-relay-logs, -exec, -port-forward and -read-only. */
  accessRoles: boolean;
  /** kube-relay-impersonator, to be bound to the relay's own identity. */
  impersonator: boolean;
}

const LABELS = { 'app.kubernetes.io/name': 'kube-relay' };

/** The shared definition, checked for shape so that a broken file fails here with its name rather than at kubectl apply. */
export function readClusterRoleRules(file = RULES_FILE): ClusterRoleRules {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read kube-relay's ClusterRole rules from ${file} (is the package installed whole?): ${(err as Error).message}`);
  }
  const parsed = parse(text) as unknown;
  const problem = (what: string) => new Error(`${file}: ${what}`);
  if (!isRecord(parsed)) throw problem('expected a mapping with accessRoles and impersonator');
  const { accessRoles, impersonator } = parsed;
  if (!Array.isArray(accessRoles) || accessRoles.length === 0) throw problem('accessRoles must be a non-empty list');
  const roles = accessRoles.map((role: unknown, index) => {
    if (!isRecord(role) || typeof role.name !== 'string' || role.name === '') throw problem(`accessRoles[${index}] needs a name`);
    return { name: role.name, rules: policyRules(role.rules, `accessRoles[${index}] (${role.name})`, problem) };
  });
  if (!isRecord(impersonator)) throw problem('impersonator must be a mapping with rules');
  return { accessRoles: roles, impersonator: { rules: policyRules(impersonator.rules, 'impersonator', problem) } };
}

/** The ClusterRoles asked for, in the order the chart renders them: access roles first. */
export function clusterRoles(options: RbacManifestOptions, definition = readClusterRoleRules()): ClusterRole[] {
  const roles: ClusterRole[] = [];
  if (options.accessRoles) roles.push(...definition.accessRoles.map((role) => clusterRole(role.name, role.rules)));
  if (options.impersonator) roles.push(clusterRole(IMPERSONATOR_CLUSTER_ROLE, definition.impersonator.rules));
  return roles;
}

/** A multi-document YAML stream for `kubectl apply -f -`. At least one of the two must be asked for. */
export function renderRbacManifests(options: RbacManifestOptions): string {
  const roles = clusterRoles(options);
  if (roles.length === 0) throw new Error('renderRbacManifests: neither the access roles nor the impersonator role was asked for');
  return roles
    .map((role) => {
      const document = new Document(role);
      // [get, list, watch] rather than a line per verb, as people write rules.
      visit(document, {
        Seq(_key, seq) {
          if (seq.items.every((item) => isScalar(item))) seq.flow = true;
        },
      });
      if (role.metadata.name === IMPERSONATOR_CLUSTER_ROLE) {
        document.commentBefore =
          ` Bind it to the relay's own identity, for example:\n` +
          `   kubectl create clusterrolebinding ${IMPERSONATOR_CLUSTER_ROLE} --clusterrole=${IMPERSONATOR_CLUSTER_ROLE} --serviceaccount=NAMESPACE:NAME\n` +
          ` (or --user=NAME for a relay outside the cluster, as its kubeconfig identifies it)`;
      }
      return document.toString({ flowCollectionPadding: false });
    })
    .join('---\n');
}

function clusterRole(name: string, rules: PolicyRule[]): ClusterRole {
  return { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name, labels: { ...LABELS } }, rules };
}

function policyRules(value: unknown, where: string, problem: (what: string) => Error): PolicyRule[] {
  if (!Array.isArray(value) || value.length === 0) throw problem(`${where}: rules must be a non-empty list`);
  return value.map((rule: unknown, index) => {
    const at = `${where}: rules[${index}]`;
    if (!isRecord(rule)) throw problem(`${at} must be a mapping`);
    const unknown = Object.keys(rule).filter((key) => !['apiGroups', 'resources', 'verbs', 'resourceNames'].includes(key));
    if (unknown.length > 0) throw problem(`${at} has ${unknown.join(', ')}; a rule here takes only apiGroups, resources, verbs and resourceNames`);
    const parsed: PolicyRule = { apiGroups: strings(rule.apiGroups, `${at}.apiGroups`, problem), resources: strings(rule.resources, `${at}.resources`, problem), verbs: strings(rule.verbs, `${at}.verbs`, problem) };
    if (rule.resourceNames !== undefined) parsed.resourceNames = strings(rule.resourceNames, `${at}.resourceNames`, problem);
    return parsed;
  });
}

function strings(value: unknown, where: string, problem: (what: string) => Error): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((item) => typeof item === 'string')) throw problem(`${where} must be a non-empty list of strings`);
  return value as string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
