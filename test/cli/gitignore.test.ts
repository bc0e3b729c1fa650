/** The Quick start writes keys, kubeconfigs and audit files into the checkout: none of them may be committed by accident (issue 13). */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const root = new URL('../..', import.meta.url).pathname;

describe('.gitignore', () => {
  it.each(['.kube-relay/issuer.db', 'deployer.api-key', 'prod-eu.connector-key', 'deployer.kubeconfig', 'deployer-tunnel.kubeconfig', 'audit.jsonl', 'deployer.api-key.new'])(
    'ignores %s',
    (file) => {
      // git check-ignore prints the path and exits 0 when the path is ignored.
      expect(execFileSync('git', ['check-ignore', file], { cwd: root, encoding: 'utf8' }).trim()).toBe(file);
    },
  );
});
