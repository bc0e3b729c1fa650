/** `kube-relay rbac` prints the chart's ClusterRoles for kubectl apply (issue 13). */
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { runCli } from '../helpers/cli.js';

const names = (yaml: string) => parseAllDocuments(yaml).map((doc) => (doc.toJS() as { kind: string; metadata: { name: string } })).map((role) => `${role.kind}/${role.metadata.name}`);

describe('kube-relay rbac', () => {
  it('prints every role by default, ready for kubectl apply -f -', async () => {
    const result = await runCli(['rbac']);
    expect(result.code, result.stderr).toBe(0);
    expect(names(result.stdout)).toEqual([
      'ClusterRole/kube-relay-logs',
      'ClusterRole/kube-relay-exec',
      'ClusterRole/kube-relay-port-forward',
      'ClusterRole/kube-relay-read-only',
      'ClusterRole/kube-relay-impersonator',
    ]);
  });

  it.each([
    ['--access-roles', ['kube-relay-logs', 'kube-relay-exec', 'kube-relay-port-forward', 'kube-relay-read-only']],
    ['--impersonator', ['kube-relay-impersonator']],
  ])('%s prints only those', async (flag, expected) => {
    const result = await runCli(['rbac', flag]);
    expect(result.code).toBe(0);
    expect(names(result.stdout)).toEqual(expected.map((name) => `ClusterRole/${name}`));
  });
});
