/** Streams outlive the 60-second token; new requests after expiry carry a token the exec plugin refreshed. */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { until } from '../helpers/http.js';
import { kubectlBinary } from '../helpers/kubectl.js';
import { adminKubectl } from './cluster/bootstrap.js';
import { type RelayUnderTest, startRelayFor } from './relay-harness.js';

const cluster = inject('cluster');
const admin = (args: string[]) => adminKubectl(cluster, args);
describe.each(['direct', 'tunnel'] as const)('%s mode', (mode) => {
  let relay: RelayUnderTest;
  let watcher: string;

  beforeAll(async () => {
    relay = await startRelayFor(cluster, mode);
    watcher = await relay.agent('watcher', ['watchers']);
    admin(['create', 'rolebinding', `acme-watchers-view-${mode}`, '-n', 'e2e', '--clusterrole=view', '--group=acme/watchers']);
  });

  afterAll(async () => {
    admin(['delete', 'rolebinding', `acme-watchers-view-${mode}`, '-n', 'e2e', '--ignore-not-found']);
    admin(['delete', 'pod', `born-after-expiry-${mode}`, '-n', 'e2e', '--ignore-not-found', '--grace-period=0', '--force']);
    await relay?.close();
  });

  describe('past the token lifetime', () => {
    it('a watch keeps receiving events after its token expired, and the next request gets a fresh token', async () => {
      // One long-lived kubectl process (kubectl proxy) with one credential cache.
      // The hub's server URL has a path (/clusters/e2e) that kubectl proxy keeps only when asked to.
      const proxy = spawn(kubectlBinary('1.33'), ['--kubeconfig', watcher, 'proxy', '--port', '0', '--address', '127.0.0.1', '--append-server-path']);
      let proxyOutput = '';
      proxy.stdout.on('data', (chunk: Buffer) => (proxyOutput += chunk.toString()));
      proxy.stderr.on('data', (chunk: Buffer) => (proxyOutput += chunk.toString()));
      let watchRequest: http.ClientRequest | undefined;
      try {
        await until(() => /127\.0\.0\.1:(\d+)/.test(proxyOutput), 15_000, 'kubectl proxy');
        const base = `http://127.0.0.1:${/127\.0\.0\.1:(\d+)/.exec(proxyOutput)![1]}`;
        const tokenIdOfNextGet = async () => {
          const before = relay.auditRecords().length;
          const list = (await (await fetch(`${base}/api/v1/namespaces/e2e/pods`)).json()) as { metadata: { resourceVersion: string } };
          await until(() => relay.auditRecords().length > before, 5_000, 'the audit record');
          return { tokenId: relay.auditRecords().at(-1)!.tokenId, resourceVersion: list.metadata.resourceVersion };
        };
        const first = await tokenIdOfNextGet();

        const events: string[] = [];
        watchRequest = http.get(`${base}/api/v1/namespaces/e2e/pods?watch=1&resourceVersion=${first.resourceVersion}`, (res) => {
          res.on('data', (chunk: Buffer) => events.push(chunk.toString()));
        });
        await new Promise((resolve) => setTimeout(resolve, 65_000));

        admin(['run', `born-after-expiry-${mode}`, '-n', 'e2e', '--image', 'fake/late:1', '--overrides', '{"spec":{"nodeName":"kwok-node-0"}}']);
        await until(() => events.join('').includes(`born-after-expiry-${mode}`), 15_000, 'the event on the old watch');

        const second = await tokenIdOfNextGet();
        expect(second.tokenId).not.toBe(first.tokenId);
        expect(relay.auditRecords().filter((r) => r.user === 'agent:watcher').every((r) => r.decision === 'allowed')).toBe(true);
      } finally {
        watchRequest?.destroy();
        proxy.kill();
      }
    }, 150_000);
  });
});
