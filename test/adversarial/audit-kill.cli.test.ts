/**
 * Issue 14: kill -9 lost records of completed requests. Under 400 req/s
 * through a direct relay with --audit-file, three kill -9 runs left 6, 3
 * and 33 requests the client got a 2xx for without a record on disk: the
 * record was written after the response, through an in-process buffer.
 * Now a request is forwarded only once its RequestReceived record has
 * reached the kernel (a completed write(2); kill -9 loses nothing the
 * kernel holds), as kube-apiserver writes an event per stage. The relay
 * runs as an operator runs it, through the built CLI (`npm run build`
 * first), and is killed mid-run several times, in both modes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../helpers/cli.js';
import { until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const KILLS = 5;
const CONCURRENCY = 32;
/** Each run is killed once the client has this many answers, after a further random delay, so the kill falls anywhere. */
const ANSWERS_BEFORE_KILL = 300;
const TUNNEL_CLUSTER = 'kill-test';

let stack: Stack;
let tunnelKeyFile: string;
const running: ChildProcess[] = [];

beforeAll(async () => {
  stack = await startStack();
  const setup = await stack.registry();
  tunnelKeyFile = path.join(stack.dataDir, 'kill-test.connector-key');
  writeFileSync(tunnelKeyFile, `${await setup.registry.createCluster(TUNNEL_CLUSTER, 'acme')}\n`, { mode: 0o600 });
  await setup.close();
});

afterAll(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await stack?.close();
});

interface RelayProcess {
  child: ChildProcess;
  /** Where agents send Kubernetes requests: the relay itself, or the hub's /clusters/<name>. */
  base: string;
  exited: Promise<void>;
}

/** `kube-relay relay` through the CLI, auditing to `auditFile`; resolves once it has served a request. */
async function startRelayProcess(mode: 'direct' | 'tunnel', auditFile: string, token: string): Promise<RelayProcess> {
  const common = ['--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile, '--kubeconfig', stack.relayKubeconfig, '--audit-file', auditFile, '--data', stack.dataDir];
  const args =
    mode === 'direct'
      ? ['relay', '--mode', 'direct', '--cluster', 'prod-eu', '--listen', '127.0.0.1:0', ...common]
      : ['relay', '--mode', 'tunnel', '--cluster', TUNNEL_CLUSTER, '--hub', stack.issuer.url, '--connector-key-file', tunnelKeyFile, ...common];
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'ignore', 'pipe'] });
  running.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const gone = () => (child.exitCode !== null || child.signalCode !== null ? `the relay exited: ${stderr}` : undefined);
  let base = `${stack.issuer.url}/clusters/${TUNNEL_CLUSTER}`;
  if (mode === 'direct') {
    await until(() => {
      if (gone()) throw new Error(gone());
      return /"relay listening"/.test(stderr);
    }, 30_000, 'the relay to listen');
    base = /"relay listening".*?"url":"(https:\/\/[^"]+)"/.exec(stderr)![1]!;
  }
  await until(async () => {
    if (gone()) throw new Error(gone());
    return (await get(`${base}/version`, token, false)) === 200;
  }, 30_000, 'the relay to serve');
  return { child, base, exited };
}

/** The status of a complete answer, or 0 when there was none (the relay killed under it). */
function get(url: string, token: string, agent: https.Agent | false): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca: stack.caPem, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', () => resolve(0));
      res.on('aborted', () => resolve(0));
    });
    req.on('error', () => resolve(0));
  });
}

/**
 * CONCURRENCY clients, each sending its next request as soon as it has an
 * answer, until the relay is gone; `onAnswer` hears each answer. Resolves
 * with the numbers of the requests answered 2xx.
 */
async function driveUntilGone(base: string, token: string, onAnswer: (answers: number) => void): Promise<number[]> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const succeeded: number[] = [];
  let next = 0;
  let answers = 0;
  let gone = false;
  const client = async () => {
    while (!gone) {
      const n = next++;
      const status = await get(`${base}/api/v1/namespaces/default/pods?n=${n}`, token, agent);
      if (status === 0 || status >= 500) gone = true; // killed: no relay, or the hub's 502/503 for it
      else if (status >= 200 && status < 300) succeeded.push(n);
      onAnswer(++answers);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  agent.destroy();
  return succeeded;
}

/** The request numbers that have any record in the file (RequestReceived or ResponseComplete); a line torn by the kill counts for nothing. */
function recordedRequests(auditFile: string): { numbers: Set<number>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  for (const text of existsSync(auditFile) ? readFileSync(auditFile, 'utf8').split('\n') : []) {
    try {
      if (text !== '') lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      // the last line, cut by the kill
    }
  }
  const numbers = new Set<number>();
  for (const line of lines) {
    const match = /^n=(\d+)$/.exec(String(line.query ?? ''));
    if (match) numbers.add(Number(match[1]));
  }
  return { numbers, lines };
}

describe.each(['direct', 'tunnel'] as const)('kill -9 of a %s relay under load', (mode) => {
  it(`leaves a record on disk of every request the client got a 2xx for (${KILLS} kills)`, { timeout: 240_000 }, async () => {
    const token = await stack.token(stack.agentKey, mode === 'direct' ? 'prod-eu' : TUNNEL_CLUSTER);
    const unrecorded: string[] = [];
    const receivedRecords: Record<string, unknown>[] = [];
    let answered = 0;
    for (let run = 0; run < KILLS; run++) {
      const auditFile = path.join(stack.dataDir, `kill-${mode}-${run}.jsonl`);
      const relay = await startRelayProcess(mode, auditFile, token);
      const killAfter = ANSWERS_BEFORE_KILL + Math.floor(Math.random() * ANSWERS_BEFORE_KILL);
      const succeeded = await driveUntilGone(relay.base, token, (answers) => {
        if (answers === killAfter) relay.child.kill('SIGKILL');
      });
      await relay.exited;
      expect(relay.child.signalCode).toBe('SIGKILL');
      answered += succeeded.length;
      const { numbers, lines } = recordedRequests(auditFile);
      const missing = succeeded.filter((n) => !numbers.has(n));
      if (missing.length > 0) unrecorded.push(`run ${run}: ${missing.length} of ${succeeded.length} answered 2xx have no record (n=${missing.slice(0, 10).join(',')}…)`);
      receivedRecords.push(...lines.filter((line) => line.stage === 'RequestReceived' && String(line.query).startsWith('n=')));
    }
    expect(answered).toBeGreaterThanOrEqual(KILLS * ANSWERS_BEFORE_KILL * 0.9);
    expect(unrecorded).toEqual([]);
    // What reached the disk before anything went upstream names the agent and what it asked.
    expect(receivedRecords.length).toBeGreaterThanOrEqual(answered);
    expect(receivedRecords[0]).toMatchObject({ user: 'agent:deployer', groups: ['acme/sre', 'acme/platform'], method: 'GET', verb: 'list', resource: 'pods', namespace: 'default' });
    expect(receivedRecords[0]).not.toHaveProperty('status');
  });
});
