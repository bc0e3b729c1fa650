/**
 * Agent policy on the real kube-apiserver (issue 19, DESIGN §13), through a
 * relay in each mode, with real kubectl: an agent bound to cluster-admin
 * but `--read-only` can read and cannot delete or exec; `--dry-run` lets
 * `kubectl apply` and `kubectl delete` through with nothing changing in the
 * cluster; `--deny delete:pods@kube-system` refuses exactly that; `--rate
 * 5/s --burst 5` stretches a 50-request loop to about nine seconds with
 * kubectl waiting out each 429 and no request failing.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/http.js';
import { kubectlBinary, runKubectl } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const kubectl = kubectlBinary('1.33');

describe.each(['direct', 'tunnel'] as const)('agent policy through a %s-mode relay', (mode) => {
  let relay: RelayUnderTest;
  let kubeconfig: string;
  const agent = `braked-${mode}`;
  const binding = `braked-${mode}-cluster-admin`;
  const as = (args: string[]) => runKubectl(kubectl, ['--kubeconfig', kubeconfig, ...args]);
  /** The relay's records and, in tunnel mode, the hub's, which refuses before the tunnel. */
  const records = (): AuditRecord[] => [
    ...relay.auditRecords(),
    ...(mode === 'tunnel' && existsSync(path.join(relay.dataDir, 'hub-audit.jsonl'))
      ? readFileSync(path.join(relay.dataDir, 'hub-audit.jsonl'), 'utf8').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as AuditRecord).filter((r) => r.stage === 'ResponseComplete')
      : []),
  ];
  const setPolicy = async (...flags: string[]) => {
    const set = await runCli(['policy', 'set', '--agent', agent, ...flags, '--data', relay.dataDir]);
    expect(set.code, set.stderr).toBe(0);
  };

  beforeAll(async () => {
    relay = await startRelayFor(cluster, mode);
    kubeconfig = await relay.agent(agent, [`braked-${mode}`]);
    adminKubectl(cluster, ['create', 'clusterrolebinding', binding, '--clusterrole=cluster-admin', `--group=acme/braked-${mode}`]);
  });
  afterAll(async () => {
    adminKubectl(cluster, ['delete', 'clusterrolebinding', binding, '--ignore-not-found']);
    adminKubectl(cluster, ['delete', 'configmap', `planned-${mode}`, '-n', 'e2e', '--ignore-not-found']);
    await relay?.close();
  });

  it('read-only: cluster-admin RBAC, yet no delete and no exec', async () => {
    await setPolicy('--read-only');
    const pods = await as(['get', 'pods', '-n', 'e2e', '-o', 'name']);
    expect(pods.stderr).toBe('');
    expect(pods.stdout).toContain('pod/web');
    const can = await as(['auth', 'can-i', 'delete', 'pods', '-n', 'e2e']);
    expect(can.stdout.trim()).toBe('yes'); // RBAC would allow it: the brake is the relay's
    const deleted = await as(['delete', 'pod', 'web', '-n', 'e2e', '--wait=false']);
    expect(deleted.code).not.toBe(0);
    expect(deleted.stderr).toMatch(/kube-relay policy: the agent is read-only; it may not delete pods "web"/);
    const exec = await as(['exec', 'web', '-n', 'e2e', '--', 'echo', 'hi']);
    expect(exec.code).not.toBe(0);
    expect(exec.stderr).toMatch(/read-only/);
    expect(adminKubectl(cluster, ['get', 'pod', 'web', '-n', 'e2e', '-o', 'name']).trim()).toBe('pod/web');
    // A refusal's record is written as its answer ends, so kubectl can exit before the line is in the file.
    const refusedVerbs = () => new Set(records().filter((r) => r.user === `agent:${agent}` && r.decision === 'denied-by-policy').map((r) => r.verb));
    await until(() => refusedVerbs().has('delete') && refusedVerbs().has('exec'), 15_000, 'the delete and exec refusal records');
  });

  it('dry-run: apply and delete go through, validated, and nothing changes in the cluster', async () => {
    await setPolicy('--dry-run');
    const manifest = path.join(relay.dataDir, `planned-${mode}.yaml`);
    writeFileSync(manifest, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planned-${mode}\n  namespace: e2e\ndata:\n  plan: "1"\n`);
    const applied = await as(['apply', '-f', manifest]);
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain(`configmap/planned-${mode}`);
    expect(adminKubectl(cluster, ['get', 'configmaps', '-n', 'e2e', '-o', 'name'])).not.toContain(`planned-${mode}`);
    const deleted = await as(['delete', 'pod', 'web', '-n', 'e2e', '--wait=false']);
    expect(deleted.stderr).toBe('');
    expect(adminKubectl(cluster, ['get', 'pod', 'web', '-n', 'e2e', '-o', 'jsonpath={.metadata.deletionTimestamp}'])).toBe('');
    // The API server validated the change: an invalid one is refused by it, not by the relay.
    writeFileSync(manifest, `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Name\n  namespace: e2e\n`);
    const invalid = await as(['apply', '-f', manifest]);
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toMatch(/Invalid value|invalid/);
    const exec = await as(['exec', 'web', '-n', 'e2e', '--', 'echo', 'hi']);
    expect(exec.stderr).toMatch(/dry-run mode/);
  });

  it('deny delete:pods@kube-system blocks exactly that', async () => {
    await setPolicy('--deny', 'delete:pods@kube-system');
    const blocked = await as(['delete', 'pod', 'anything', '-n', 'kube-system']);
    expect(blocked.stderr).toMatch(/deny rule delete:pods@kube-system/);
    // The same delete elsewhere reaches the API server (which has no such pod).
    const elsewhere = await as(['delete', 'pod', 'no-such-pod', '-n', 'e2e']);
    expect(elsewhere.stderr).toMatch(/NotFound|not found/);
    const listed = await as(['get', 'pods', '-n', 'kube-system']);
    expect(listed.code).toBe(0);
  });

  it('rate 5/s burst 5: 50 requests of one kubectl take about nine seconds, kubectl waiting out every 429, none failing', { timeout: 180_000 }, async () => {
    await setPolicy('--rate', '5/s', '--burst', '5');
    await as(['get', 'pods', '-n', 'e2e', '-o', 'name']); // discovery cached, so the next run makes only the 50 GETs
    const started = Date.now();
    // One GET per name, one after another, as fast as kubectl goes: 5 pass at once, then 5 a second.
    const result = await as(['get', 'pod', ...Array.from({ length: 50 }, () => 'web'), '-n', 'e2e', '-o', 'name']);
    const seconds = (Date.now() - started) / 1000;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(50);
    // 45 after the burst at 5 a second take at least 9 s, however fast the machine.
    expect(seconds).toBeGreaterThanOrEqual(8.5);
    const limited = records().filter((r) => r.user === `agent:${agent}` && r.policyRule === 'rate').length;
    expect(limited).toBeGreaterThan(0);
    console.log(`rate 5/s burst 5 (${mode} mode): 50 GETs of one kubectl in ${seconds.toFixed(1)} s, ${limited} answered 429 and retried by kubectl`);
    expect((await runCli(['policy', 'clear', '--agent', agent, '--data', relay.dataDir])).code).toBe(0);
  });
});
