/**
 * The relay's start-up self-check against a real kube-apiserver (issue 5):
 * with the impersonation ClusterRole it starts; with one rule removed it
 * refuses to start and names the missing permission and the identity.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createLogger } from '../../src/log.js';
import { MissingPermissionError } from '../../src/relay/self-check.js';
import { startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { createTestSigner, ISSUER } from '../helpers/tokens.js';
import { adminKubectl } from './cluster/bootstrap.js';

const cluster = inject('cluster');
const admin = (args: string[], input?: string) => adminKubectl(cluster, args, input);
const PARTIAL = 'kube-relay-partial';

/** A ServiceAccount bound to the relay's ClusterRole minus its last rule (the user extras), and a kubeconfig for it. */
function partialIdentity(): string {
  const role = parse(admin(['get', 'clusterrole', 'kube-relay-impersonator', '-o', 'yaml'])) as { rules: { resources: string[] }[] };
  const rules = role.rules.map((rule) => ({ ...rule, resources: rule.resources.filter((r) => r !== 'userextras/kube-relay.dev/request-id') })).filter((rule) => rule.resources.length > 0);
  admin(['create', 'serviceaccount', PARTIAL, '-n', 'kube-relay']);
  admin(['apply', '-f', '-'], stringify({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: PARTIAL }, rules }));
  admin(['create', 'clusterrolebinding', PARTIAL, `--clusterrole=${PARTIAL}`, `--serviceaccount=kube-relay:${PARTIAL}`]);
  const token = admin(['create', 'token', PARTIAL, '-n', 'kube-relay', '--duration', '1h']).trim();
  const kubeconfig = parse(readFileSync(cluster.relayKubeconfig, 'utf8')) as { users: { user: { token: string } }[] };
  kubeconfig.users[0]!.user.token = token;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'kube-relay-e2e-partial-')), 'partial.kubeconfig');
  writeFileSync(file, stringify(kubeconfig), { mode: 0o600 });
  return file;
}

async function startRelayWith(kubeconfig: string) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kube-relay-e2e-self-check-'));
  return startRelay({
    mode: 'direct',
    cluster: 'e2e',
    issuer: ISSUER,
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    jwksFile: (await createTestSigner()).jwksFile,
    upstream: upstreamFromKubeconfig(kubeconfig),
    audit: { file: path.join(dataDir, 'audit.jsonl') },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('error'),
  });
}

describe('start-up self-check against kube-apiserver', () => {
  afterAll(() => {
    admin(['delete', 'clusterrolebinding', PARTIAL, '--ignore-not-found']);
    admin(['delete', 'clusterrole', PARTIAL, '--ignore-not-found']);
    admin(['delete', 'serviceaccount', PARTIAL, '-n', 'kube-relay', '--ignore-not-found']);
  });

  it('starts with the impersonation ClusterRole', async () => {
    const relay = await startRelayWith(cluster.relayKubeconfig);
    await relay.close();
  });

  it('refuses to start when one rule is missing, naming the permission, the ServiceAccount and the fix', async () => {
    const started = startRelayWith(partialIdentity());
    await expect(started).rejects.toBeInstanceOf(MissingPermissionError);
    const message = await started.then(() => '', (err: Error) => err.message);
    expect(message).toContain('may not impersonate userextras/kube-relay.dev/request-id in authentication.k8s.io');
    expect(message).toContain(`system:serviceaccount:kube-relay:${PARTIAL}`);
    expect(message).toContain('{apiGroups: ["authentication.k8s.io"], resources: ["userextras/kube-relay.dev/request-id"], verbs: ["impersonate"]}');
  });
});
