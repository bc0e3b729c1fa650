/**
 * Issue 13: `kube-relay relay --mode tunnel` without an admin listener
 * exited with status 13 and no message at its first failed dial (the
 * retry timer was unref'd and nothing else held the process), and its
 * failed dials said why only at debug. Runs the built CLI (`npm run build`
 * first), as an operator does; the hub is an issuer in this process,
 * stopped and restarted on the same port.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { requestToken } from '../../src/client/token.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { BIN } from '../helpers/cli.js';
import { until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

/** The relay's first backoff cap (DESIGN §4): the hub stays down for longer than that. */
const FIRST_BACKOFF_CAP_MS = 5_000;

let stack: Stack;
let hub: RunningIssuer | undefined;
let relay: ChildProcess | undefined;
let stderr = '';

async function startHub(port: number): Promise<RunningIssuer> {
  return startIssuer({
    dataDir: stack.dataDir,
    listen: { host: '127.0.0.1', port },
    keyRotationIntervalMs: 86_400_000,
    audit: { file: path.join(stack.dataDir, 'outage-hub-audit.jsonl') },
    log: createLogger('error'),
    drainMs: 500,
  });
}

beforeAll(async () => {
  stack = await startStack();
});

afterAll(async () => {
  if (relay && relay.exitCode === null && relay.signalCode === null) {
    const exited = new Promise((resolve) => relay!.once('exit', resolve));
    relay.kill('SIGTERM');
    await exited;
  }
  await hub?.close();
  await stack?.close();
});

interface LogLine {
  level?: string;
  msg?: string;
}

function logLines(): LogLine[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

function exitedSoFar(): string | undefined {
  if (!relay || (relay.exitCode === null && relay.signalCode === null)) return undefined;
  return `the relay exited (status ${relay.exitCode}, signal ${relay.signalCode}); its stderr:\n${stderr}`;
}

/** Waits for `condition`, failing at once, with the relay's stderr, if the relay exits meanwhile. */
async function whileRelayRuns(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  await until(
    async () => {
      const exited = exitedSoFar();
      if (exited) throw new Error(`${exited}\nwhile waiting for ${what}`);
      return condition();
    },
    timeoutMs,
    what,
  );
}

async function versionThroughHub(): Promise<number> {
  const { token } = await requestToken({ issuer: hub!.url, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem });
  return new Promise((resolve) => {
    const req = https.get(`${hub!.url}/clusters/prod-eu/version`, { ca: stack.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', () => resolve(0));
  });
}

it('a tunnel relay without an admin listener outlives a hub outage longer than one backoff, logs why its dials fail at warn, reconnects and serves', { timeout: 240_000 }, async () => {
  hub = await startHub(0);
  const hubUrl = hub.url;
  const port = Number(new URL(hubUrl).port);
  const keyFile = path.join(stack.dataDir, 'outage.connector-key');
  writeFileSync(keyFile, `${stack.connectorKey}\n`, { mode: 0o600 });
  relay = spawn(
    process.execPath,
    [
      BIN,
      'relay',
      '--mode', 'tunnel',
      '--cluster', 'prod-eu',
      '--issuer', hubUrl,
      '--hub', hubUrl,
      '--issuer-ca-file', stack.caFile,
      '--connector-key-file', keyFile,
      '--kubeconfig', stack.relayKubeconfig,
      '--audit-file', path.join(stack.dataDir, 'outage-relay-audit.jsonl'),
      '--data', stack.dataDir,
    ],
    { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  relay.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  await whileRelayRuns(() => logLines().some((line) => line.msg === 'tunnel connected'), 60_000, 'the first tunnel');
  await whileRelayRuns(async () => (await versionThroughHub()) === 200, 30_000, 'a request through the hub');

  await hub.close();
  hub = undefined;
  const refused = `cannot reach the hub: connection refused by 127.0.0.1:${port}`;
  await whileRelayRuns(() => logLines().some((line) => line.level === 'warn' && line.msg === refused), 60_000, 'a warning naming the refused connection');
  // Longer than one backoff: the relay has waited out a retry timer with nothing else to keep it running.
  await new Promise((resolve) => setTimeout(resolve, FIRST_BACKOFF_CAP_MS + 2_000));
  expect(exitedSoFar()).toBeUndefined();

  hub = await startHub(port);
  await whileRelayRuns(() => logLines().some((line) => line.msg?.startsWith('tunnel connected after ')), 150_000, 'the tunnel to come back');
  await whileRelayRuns(async () => (await versionThroughHub()) === 200, 30_000, 'a request through the restarted hub');
  expect(exitedSoFar()).toBeUndefined();
  expect(stderr).not.toContain(stack.connectorKey);
});
