/** `cluster rotate-key` (issue 13): the old connector key is refused and the tunnels it opened are closed. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/backoff.js';
import { createLogger } from '../../src/log.js';
import { startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { runCli } from '../helpers/cli.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ mode: 'tunnel' });
});

afterAll(async () => {
  await stack?.close();
});

function tunnelRelay(cluster: string, connectorKey: string, lines: string[]) {
  return startRelay({
    mode: 'tunnel',
    cluster,
    issuer: stack.issuer.url,
    dataDir: stack.dataDir,
    issuerCa: stack.caPem,
    tunnel: { hubUrl: stack.issuer.url, connectorKey, hubCa: stack.caPem, backoff: () => new ReconnectBackoff({ initialMs: 50, maxMs: 100 }) },
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: `${stack.dataDir}/rotation-audit.jsonl` },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('info', {}, (line) => lines.push(line)),
  });
}

describe('cluster rotate-key', () => {
  it('closes the tunnel opened with the old key (the relay stops, saying why) and the new key connects', async () => {
    const handle = await stack.registry();
    const oldKey = await handle.registry.createCluster('rotating', 'acme');
    await handle.close();
    const oldLines: string[] = [];
    const old = await tunnelRelay('rotating', oldKey, oldLines);
    const token = await stack.token(stack.agentKey, 'rotating');
    const get = () => request(`${stack.issuer.url}/clusters/rotating/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });
    try {
      await until(() => oldLines.some((line) => line.includes('tunnel connected')), 10_000, 'the tunnel with the old key');
      await until(async () => (await get()).status === 200, 10_000, 'a request through the old tunnel');

      const rotated = await runCli(['cluster', 'rotate-key', 'rotating', '--data', stack.dataDir]);
      expect(rotated.code, rotated.stderr).toBe(0);
      const newKey = rotated.stdout.trim();
      expect(newKey).toMatch(/^krl_cluster_/);

      const failure = await Promise.race([old.failed, new Promise<undefined>((resolve) => setTimeout(resolve, 15_000, undefined))]);
      expect(failure?.message, 'the old tunnel was not closed within 15 s').toContain('replaced');
      expect(oldLines.join('\n')).not.toContain(oldKey);
      expect((await get()).status).toBe(503);

      const newLines: string[] = [];
      const renewed = await tunnelRelay('rotating', newKey, newLines);
      try {
        await until(() => newLines.some((line) => line.includes('tunnel connected')), 10_000, 'the tunnel with the new key');
        await until(async () => (await get()).status === 200, 10_000, 'a request through the new tunnel');
      } finally {
        await renewed.close();
      }
    } finally {
      await old.close();
    }
  });

  it('the old key is refused when a relay dials with it again', async () => {
    const handle = await stack.registry();
    const oldKey = await handle.registry.createCluster('rekeyed', 'acme');
    await handle.registry.rotateClusterKey('rekeyed');
    await handle.close();
    const lines: string[] = [];
    const relay = await tunnelRelay('rekeyed', oldKey, lines);
    try {
      const failure = await relay.failed;
      expect(failure.message).toContain('the connector key is not valid');
    } finally {
      await relay.close();
    }
  });
});
