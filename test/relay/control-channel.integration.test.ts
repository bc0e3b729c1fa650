/**
 * Issue 16 item 4, the relay's side: a direct-mode relay given a connector
 * key dials the hub for a control channel, says so (and its version) in the
 * handshake, and applies the revocations pushed down it at once. Without a
 * key it works as before. Its readiness never waits for the hub: agents
 * reach it at its own listener.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { type RelayConfig, type RunningRelay, startRelay } from '../../src/relay/server.js';
import { upstreamFromKubeconfig } from '../../src/relay/upstream.js';
import { BIN, runCli } from '../helpers/cli.js';
import { hubGauge } from '../helpers/fake-relay.js';
import { freePort } from '../helpers/free-port.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let stack: Stack;
const extraRelays: RunningRelay[] = [];
let cliRelay: ChildProcess | undefined;

beforeAll(async () => {
  // Polling off: only a push can tell this relay of a revocation.
  stack = await startStack({ mode: 'direct', controlChannel: true, relay: { pollRevocations: false }, issuer: { adminListen: { host: '127.0.0.1', port: 0 } } });
  await until(async () => (await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu')) >= 1, 15_000, 'the control channel');
});

afterEach(async () => {
  for (const relay of extraRelays.splice(0)) await relay.close();
  cliRelay?.kill();
  cliRelay = undefined;
});

afterAll(async () => {
  await stack?.close();
});

const get = (url: string, token: string) => request(`${url}/version`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });

function directRelay(overrides: Partial<RelayConfig>): Promise<RunningRelay> {
  return startRelay({
    mode: 'direct',
    cluster: 'prod-eu',
    issuer: stack.issuer.url,
    dataDir: stack.dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    issuerCa: stack.caPem,
    upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
    audit: { file: path.join(stack.dataDir, 'extra-relay-audit.jsonl') },
    maxStreamDurationMs: 0,
    pollRevocations: false,
    log: createLogger('error'),
    ...overrides,
  }).then((relay) => {
    extraRelays.push(relay);
    return relay;
  });
}

/** A hub that records each tunnel handshake and refuses it (401, with a Status body), as a hub refuses a bad key. */
async function recordingHub(): Promise<{ url: string; handshakes: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const handshakes: IncomingHttpHeaders[] = [];
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req: http.IncomingMessage, socket) => {
    handshakes.push(req.headers);
    // The relay drops the connection once it has read the answer; a reset then must not be an uncaught error here.
    socket.on('error', () => socket.destroy());
    const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'refused by the recording hub', code: 401 });
    socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, handshakes, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('a direct-mode relay with a connector key', () => {
  it('applies a revocation the hub pushes down its control channel at once, with polling off', async () => {
    const { registry, close } = await stack.registry();
    const key = await registry.createAgent('short-lived', 'acme', ['sre']);
    await close();
    const token = await stack.token(key);
    expect((await get(stack.relay.url, token)).status).toBe(200);

    const { registry: again, close: closeAgain } = await stack.registry();
    await again.revokeAgent('short-lived');
    await closeAgain();
    await until(async () => (await get(stack.relay.url, token)).status === 401, 15_000, 'the pushed revocation to refuse the token');
    expect(stack.relay.revocations.entries().map((entry) => entry.user)).toContain('agent:short-lived');
  });

  it('marks its handshake as a control channel and sends its version; a tunnel-mode relay marks its own as a tunnel', async () => {
    const hub = await recordingHub();
    try {
      const lines: string[] = [];
      const quiet = createLogger('info', {}, (line) => lines.push(line));
      const direct = await directRelay({ controlChannel: { hubUrl: hub.url, connectorKey: stack.connectorKey }, log: quiet });
      await until(() => hub.handshakes.length >= 1, 10_000, 'the control channel handshake');
      expect(hub.handshakes[0]).toMatchObject({ 'x-kube-relay-channel': 'control', 'x-kube-relay-version': PACKAGE_VERSION, 'x-kube-relay-cluster': 'prod-eu' });
      // The same key rules as tunnel mode: a key the hub refuses stops the relay, saying why.
      expect((await direct.failed).message).toContain('refused by the recording hub');
      expect(lines.join('\n')).not.toContain(stack.connectorKey);

      const tunnel = await startRelay({
        mode: 'tunnel',
        cluster: 'prod-eu',
        issuer: stack.issuer.url,
        dataDir: stack.dataDir,
        issuerCa: stack.caPem,
        tunnel: { hubUrl: hub.url, connectorKey: stack.connectorKey },
        upstream: upstreamFromKubeconfig(stack.relayKubeconfig),
        maxStreamDurationMs: 0,
        pollRevocations: false,
        log: quiet,
      });
      extraRelays.push(tunnel);
      await until(() => hub.handshakes.length >= 2, 10_000, 'the tunnel handshake');
      expect(hub.handshakes[1]).toMatchObject({ 'x-kube-relay-channel': 'tunnel', 'x-kube-relay-version': PACKAGE_VERSION });
    } finally {
      await hub.close();
    }
  });

  it('is ready and serves agents while its hub cannot be reached', async () => {
    const relay = await directRelay({ controlChannel: { hubUrl: `https://127.0.0.1:${await freePort()}`, connectorKey: stack.connectorKey, hubCa: stack.caPem } });
    expect(relay.readiness()).toEqual({ ready: true, waitingFor: [] });
    expect((await get(relay.url, await stack.token())).status).toBe(200);
  });
});

describe('a direct-mode relay without a connector key', () => {
  it('dials no hub and learns of revocations by polling, as before', async () => {
    const relay = await directRelay({ pollRevocations: true, revocationPollIntervalMs: 200, adminListen: { host: '127.0.0.1', port: 0 } });
    expect(relay.readiness()).toEqual({ ready: true, waitingFor: [] });
    const metrics = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
    expect(metrics).not.toContain('kube_relay_tunnel_connected');
    expect(metrics).toContain('kube_relay_requests_total');

    const { registry, close } = await stack.registry();
    const key = await registry.createAgent('polled-away', 'acme', ['sre']);
    await close();
    const token = await stack.token(key);
    expect((await get(relay.url, token)).status).toBe(200);
    const { registry: again, close: closeAgain } = await stack.registry();
    await again.revokeAgent('polled-away');
    await closeAgain();
    await until(async () => (await get(relay.url, token)).status === 401, 15_000, 'the polled revocation to refuse the token');
  });
});

describe('kube-relay relay --mode direct', () => {
  it('refuses --hub without --connector-key-file (exit 2)', async () => {
    const result = await runCli(['relay', '--mode', 'direct', '--cluster', 'prod-eu', '--issuer', stack.issuer.url, '--listen', '127.0.0.1:0', '--hub', stack.issuer.url, '--kubeconfig', stack.relayKubeconfig]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--hub in direct mode is for the control channel: it needs --connector-key-file');
  });

  it('with --connector-key-file and no --hub, holds its control channel to the issuer', { timeout: 60_000 }, async () => {
    const keyFile = path.join(stack.dataDir, 'direct.connector-key');
    writeFileSync(keyFile, `${stack.connectorKey}\n`, { mode: 0o600 });
    const before = await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu');
    let stderr = '';
    cliRelay = spawn(
      process.execPath,
      [BIN, 'relay', '--mode', 'direct', '--cluster', 'prod-eu', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile, '--listen', '127.0.0.1:0',
        '--connector-key-file', keyFile, '--kubeconfig', stack.relayKubeconfig, '--audit-file', path.join(stack.dataDir, 'cli-relay-audit.jsonl'), '--data', stack.dataDir, '--log-level', 'warn'],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    cliRelay.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await until(() => stderr.includes(`; control channel to ${stack.issuer.url}`), 30_000, 'the relay to start');
    await until(async () => (await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu')) === before + 1, 30_000, 'its control channel at the hub');
    expect(stderr).not.toContain(stack.connectorKey);
  });
});
