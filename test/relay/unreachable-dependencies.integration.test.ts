/**
 * Issue 13: a relay says at start, once, at warn, when its API server or the
 * issuer's JWKS cannot be reached, why, and what it does meanwhile; and
 * once when each answers. Before, an API server down from the start was
 * never mentioned (the log fired only on a change from "reachable") and the
 * JWKS failure was repeated at every retry.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterEach, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { until } from '../helpers/http.js';
import { createTestSigner } from '../helpers/tokens.js';
import { freePort } from '../helpers/free-port.js';

const READINESS_INTERVAL_MS = 100;

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});


async function listen(server: http.Server, port: number): Promise<void> {
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
}

/** Just enough of an API server for the readiness probe and the self-check. */
function minimalApiServer(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    if (req.url === '/version') res.writeHead(200, { 'content-type': 'application/json' }).end('{"major":"1","minor":"33"}');
    else if (req.url?.endsWith('/selfsubjectaccessreviews')) res.writeHead(201, { 'content-type': 'application/json' }).end('{"status":{"allowed":true}}');
    else res.writeHead(404).end();
  });
}

it('says once at warn that the API server and the JWKS cannot be reached, why and what it does, and once when each answers', async () => {
  const apiPort = await freePort();
  const issuerPort = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'kube-relay-unreachable-'));
  const kubeconfig = path.join(dir, 'upstream.kubeconfig');
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'down', cluster: { server: `http://127.0.0.1:${apiPort}` } }],
      users: [{ name: 'relay', user: { token: 'relay-credential' } }],
      contexts: [{ name: 'down', context: { cluster: 'down', user: 'relay' } }],
      'current-context': 'down',
    }),
  );
  const lines: LogLine[] = [];
  const relay: RunningRelay = await startRelay({
    mode: 'direct',
    cluster: 'prod-eu',
    issuer: `http://127.0.0.1:${issuerPort}`,
    dataDir: dir,
    listen: { host: '127.0.0.1', port: 0 },
    upstream: upstreamFromKubeconfig(kubeconfig),
    audit: { file: path.join(dir, 'audit.jsonl') },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    readinessIntervalMs: READINESS_INTERVAL_MS,
    log: createLogger('info', {}, (line) => lines.push(JSON.parse(line) as LogLine)),
  });
  cleanups.push(() => relay.close());
  const warnings = () => lines.filter((line) => line.level === 'warn');

  expect(warnings().map((line) => line.msg)).toEqual([
    `the issuer's JWKS at http://127.0.0.1:${issuerPort}/.well-known/jwks.json cannot be fetched (connect ECONNREFUSED 127.0.0.1:${issuerPort}); tokens cannot be verified until it answers; retrying every 0.1 s`,
    `the Kubernetes API server at http://127.0.0.1:${apiPort} (kubeconfig context "down", token) cannot be reached (connect ECONNREFUSED 127.0.0.1:${apiPort}); not ready; checking again every 0.1 s`,
  ]);
  // Many retries later, still those two lines only.
  await new Promise((resolve) => setTimeout(resolve, 20 * READINESS_INTERVAL_MS));
  expect(warnings()).toHaveLength(2);
  expect(relay.readiness()).toMatchObject({ ready: false, waitingFor: ['issuer keys (JWKS)', 'the Kubernetes API server'] });

  await listen(minimalApiServer(), apiPort);
  await until(() => lines.some((line) => line.msg.startsWith('the Kubernetes API server answers, after ')), 15_000, 'the API server to be reported back');
  const signer = await createTestSigner();
  await listen(
    http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [signer.publicJwk] }))),
    issuerPort,
  );
  await until(() => lines.some((line) => line.msg.startsWith("the issuer's JWKS answered, after ")), 15_000, 'the JWKS to be reported back');
  await until(() => relay.readiness().ready, 15_000, 'the relay to be ready');
  await new Promise((resolve) => setTimeout(resolve, 5 * READINESS_INTERVAL_MS));
  expect(warnings()).toHaveLength(2);
  expect(lines.filter((line) => line.msg.startsWith('the Kubernetes API server answers'))).toHaveLength(1);
  expect(lines.filter((line) => line.msg.startsWith("the issuer's JWKS answered"))).toHaveLength(1);
  expect(JSON.stringify(lines)).not.toContain('relay-credential');
});
