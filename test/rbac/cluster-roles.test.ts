/**
 * The ClusterRoles `kube-relay rbac` prints for clusters installed without
 * Helm, rendered from the chart's own files/cluster-roles.yaml. That the
 * chart renders the very same rules is checked with a real `helm template`
 * in test/e2e/helm.e2e.test.ts; here, that the chart's templates take their
 * rules from that file and define none of their own.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type ClusterRole, IMPERSONATOR_CLUSTER_ROLE, readClusterRoleRules, renderRbacManifests, RULES_FILE } from '../../src/rbac/cluster-roles.js';
import { REQUIRED_PERMISSIONS } from '../../src/relay/self-check.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CHART = path.join(ROOT, 'deploy', 'helm', 'kube-relay');
const ACCESS_ROLES = ['kube-relay-logs', 'kube-relay-exec', 'kube-relay-port-forward', 'kube-relay-read-only'];

function parseRendered(yaml: string): ClusterRole[] {
  return parseAllDocuments(yaml).map((document) => {
    expect(document.errors).toEqual([]);
    return document.toJS() as ClusterRole;
  });
}

const byName = (roles: ClusterRole[], name: string) => roles.find((role) => role.metadata.name === name)!;
const grants = (role: ClusterRole, group: string, resource: string, verb: string) =>
  role.rules.some((rule) => rule.apiGroups.includes(group) && rule.resources.includes(resource) && rule.verbs.includes(verb));

describe('kube-relay rbac: the chart\'s ClusterRoles as plain YAML', () => {
  it('renders, with both asked for, the four access roles and the impersonator as valid rbac.authorization.k8s.io/v1 ClusterRoles', () => {
    const roles = parseRendered(renderRbacManifests({ accessRoles: true, impersonator: true }));
    expect(roles.map((role) => role.metadata.name)).toEqual([...ACCESS_ROLES, IMPERSONATOR_CLUSTER_ROLE]);
    for (const role of roles) {
      expect(role.apiVersion).toBe('rbac.authorization.k8s.io/v1');
      expect(role.kind).toBe('ClusterRole');
      expect(role.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'kube-relay' });
      expect(Object.keys(role).sort()).toEqual(['apiVersion', 'kind', 'metadata', 'rules']);
      expect(role.rules.length).toBeGreaterThan(0);
      for (const rule of role.rules) {
        for (const field of [rule.apiGroups, rule.resources, rule.verbs]) expect(field.every((value) => typeof value === 'string')).toBe(true);
      }
    }
  });

  it('renders only the access roles, or only the impersonator, when only that is asked for, and refuses to render nothing', () => {
    expect(parseRendered(renderRbacManifests({ accessRoles: true, impersonator: false })).map((role) => role.metadata.name)).toEqual(ACCESS_ROLES);
    expect(parseRendered(renderRbacManifests({ accessRoles: false, impersonator: true })).map((role) => role.metadata.name)).toEqual([IMPERSONATOR_CLUSTER_ROLE]);
    expect(() => renderRbacManifests({ accessRoles: false, impersonator: false })).toThrow(/neither/);
  });

  it('the access roles are exactly the kube-relay-* roles a grant may name (values.schema.json)', () => {
    const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as { properties: { grants: { items: { properties: { role: { enum: string[] } } } } } };
    const grantable = schema.properties.grants.items.properties.role.enum.filter((role) => role.startsWith('kube-relay-'));
    expect(readClusterRoleRules().accessRoles.map((role) => role.name).sort()).toEqual([...grantable].sort());
  });

  it('each access role grants what its name says, and read-only writes nothing and reads no Secret', () => {
    const roles = parseRendered(renderRbacManifests({ accessRoles: true, impersonator: false }));
    expect(grants(byName(roles, 'kube-relay-logs'), '', 'pods/log', 'get')).toBe(true);
    expect(grants(byName(roles, 'kube-relay-exec'), '', 'pods/exec', 'create')).toBe(true);
    expect(grants(byName(roles, 'kube-relay-port-forward'), '', 'pods/portforward', 'create')).toBe(true);
    const readOnly = byName(roles, 'kube-relay-read-only');
    expect(grants(readOnly, '', 'pods', 'list')).toBe(true);
    expect(grants(readOnly, 'apps', 'deployments', 'watch')).toBe(true);
    expect(readOnly.rules.flatMap((rule) => rule.verbs).filter((verb) => !['get', 'list', 'watch'].includes(verb))).toEqual([]);
    expect(readOnly.rules.flatMap((rule) => rule.resources)).not.toContain('secrets');
    for (const role of roles) expect(role.rules.flatMap((rule) => rule.verbs)).not.toContain('*');
  });

  it('the impersonator grants exactly what the relay\'s start-up self-check requires, and only the verb impersonate', () => {
    const impersonator = parseRendered(renderRbacManifests({ accessRoles: false, impersonator: true }))[0]!;
    const granted = impersonator.rules.flatMap((rule) => rule.apiGroups.flatMap((group) => rule.resources.map((resource) => `${group}:${resource}`))).sort();
    const required = REQUIRED_PERMISSIONS.map((permission) => `${permission.group}:${permission.resource}${permission.subresource ? `/${permission.subresource}` : ''}`).sort();
    expect(granted).toEqual(required);
    expect(new Set(impersonator.rules.flatMap((rule) => rule.verbs))).toEqual(new Set(['impersonate']));
  });

  it('puts the line that binds the impersonator to the relay\'s identity in a comment above it', () => {
    const rendered = renderRbacManifests({ accessRoles: false, impersonator: true });
    const comment = rendered.slice(0, rendered.indexOf('apiVersion:'));
    expect(comment).toMatch(new RegExp(`^# +kubectl create clusterrolebinding ${IMPERSONATOR_CLUSTER_ROLE} --clusterrole=${IMPERSONATOR_CLUSTER_ROLE} --serviceaccount=NAMESPACE:NAME$`, 'm'));
  });

  it('names the rules file when it is not a valid definition', () => {
    const broken = path.join(mkdtempSync(path.join(tmpdir(), 'kube-relay-rbac-')), 'cluster-roles.yaml');
    writeFileSync(broken, 'accessRoles:\n  - name: kube-relay-logs\n    rules:\n      - apiGroups: [""]\n        resources: [pods/log]\n        verb: [get]\nimpersonator:\n  rules: []\n');
    expect(() => readClusterRoleRules(broken)).toThrow(`${broken}: accessRoles[0] (kube-relay-logs): rules[0] has verb`);
    expect(() => readClusterRoleRules(path.join(path.dirname(broken), 'missing.yaml'))).toThrow(/is the package installed whole/);
  });
});

describe('one definition for the chart and the CLI', () => {
  it('the rules file is the chart\'s files/cluster-roles.yaml, and package.json ships it', () => {
    expect(path.relative(ROOT, RULES_FILE)).toBe(path.join('deploy', 'helm', 'kube-relay', 'files', 'cluster-roles.yaml'));
    const { files } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    expect(files.some((entry) => path.relative(ROOT, RULES_FILE).startsWith(`${path.normalize(entry)}${path.sep}`))).toBe(true);
  });

  it.each(['access-roles.yaml', 'rbac.yaml'])('templates/%s takes its ClusterRole rules from files/cluster-roles.yaml and writes none itself', (template) => {
    const text = readFileSync(path.join(CHART, 'templates', template), 'utf8');
    expect(text).toContain('.Files.Get "files/cluster-roles.yaml" | fromYaml');
    expect(text).not.toMatch(/\b(apiGroups|resources|verbs):/);
  });
});
