/**
 * The relay's start-up self-check (issue 5): it may impersonate users, groups
 * and its two user extras, or it does not start, saying which permission is
 * missing and what grants it.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { MissingPermissionError } from '../../src/relay/self-check.js';
import { startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { FAKE_CALLER, type FakeApiServer, startFakeApiServer } from '../fixtures/fake-apiserver.js';
import { createTestSigner, ISSUER } from '../helpers/tokens.js';

let fake: FakeApiServer | undefined;

afterEach(async () => {
  await fake?.close();
});

async function relayAgainst(deniedImpersonation: string[]) {
  fake = await startFakeApiServer({ deniedImpersonation });
  const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-self-check-'));
  const kubeconfig = path.join(dir, 'upstream.kubeconfig');
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: fake.url } }],
      users: [{ name: 'relay', user: { token: 'relay-credential' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'relay' } }],
      'current-context': 'fake',
    }),
  );
  const signer = await createTestSigner();
  return startRelay({
    mode: 'direct',
    cluster: 'prod-eu',
    issuer: ISSUER,
    dataDir: dir,
    listen: { host: '127.0.0.1', port: 0 },
    jwksFile: signer.jwksFile,
    upstream: upstreamFromKubeconfig(kubeconfig),
    audit: { file: path.join(dir, 'audit.jsonl') },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('error'),
  });
}

const reviews = () =>
  fake!.requests
    .filter((r) => r.url === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews')
    .map((r) => (JSON.parse(r.body.toString()) as { spec: { resourceAttributes: Record<string, string> } }).spec.resourceAttributes);

describe('start-up self-check', () => {
  it('asks, with its own credential, whether it may impersonate users, groups and both user extras, then starts', async () => {
    const relay = await relayAgainst([]);
    try {
      expect(reviews()).toEqual([
        { verb: 'impersonate', group: '', resource: 'users' },
        { verb: 'impersonate', group: '', resource: 'groups' },
        { verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'kube-relay.dev/token-id' },
        { verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'kube-relay.dev/request-id' },
      ]);
      expect(fake!.requests.find((r) => r.url.endsWith('selfsubjectaccessreviews'))!.headers.authorization).toBe('Bearer relay-credential');
      expect(relay.readiness().waitingFor).not.toContain('the impersonation self-check');
    } finally {
      await relay.close();
    }
  });

  it.each([
    ['users', 'users', '{apiGroups: [""], resources: ["users"], verbs: ["impersonate"]}'],
    ['groups', 'groups', '{apiGroups: [""], resources: ["groups"], verbs: ["impersonate"]}'],
    ['the token-id extra', 'userextras/kube-relay.dev/token-id', '{apiGroups: ["authentication.k8s.io"], resources: ["userextras/kube-relay.dev/token-id"], verbs: ["impersonate"]}'],
  ])('refuses to start without the right to impersonate %s, naming it, the identity and what grants it', async (_name, denied, rule) => {
    const started = relayAgainst([denied]);
    await expect(started).rejects.toBeInstanceOf(MissingPermissionError);
    const message = await started.then(
      () => '',
      (err: Error) => err.message,
    );
    expect(message).toContain(`may not impersonate ${denied}`);
    expect(message).toContain(FAKE_CALLER);
    expect(message).toContain('rbac.create=true');
    expect(message).toContain(rule);
  });
});
