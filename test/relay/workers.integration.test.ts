/**
 * kube-relay relay --workers 2 (issue 21): a real CLI relay whose two worker
 * processes share its API listener, in front of the stack's fake API
 * server. Per-agent quotas, the policy's rate and revocations hold for the
 * relay as a whole, exactly, whichever worker serves each request; a worker
 * killed with SIGKILL gives its slots back and is started again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import { setPolicy } from '../../src/control/policies.js';
import { openStore } from '../../src/issuer/store.js';
import { BIN } from '../helpers/cli.js';
import { hubGauge } from '../helpers/fake-relay.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const STREAMS_PER_AGENT = 3;
const BURST = 5;

let stack: Stack;
let relay: ChildProcess;
let relayUrl: string;
let adminPort: number;
let output = '';
/** The revoked agent's token (valid for 60 s, refused for its revocation): a worker started later must refuse it too. */
let revokedToken: string | undefined;

beforeAll(async () => {
  stack = await startStack({ issuer: { adminListen: { host: '127.0.0.1', port: 0 } } });
  const { registry, close } = await stack.registry();
  await registry.createAgent('limited', 'acme', ['sre']);
  await registry.createAgent('throttled', 'acme', ['sre']);
  await registry.createAgent('doomed', 'acme', ['sre']);
  await setPolicy(registry, OPERATOR, { agent: 'throttled' }, { rate: { perSecond: 0.01, burst: BURST } });
  await close();
  relay = spawn(
    process.execPath,
    [
      BIN, 'relay', '--mode', 'direct', '--workers', '2', '--cluster', 'prod-eu', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile,
      '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--kubeconfig', stack.relayKubeconfig, '--data', stack.dataDir,
      '--audit-file', path.join(stack.dataDir, 'workers-audit.jsonl'), '--max-streams-per-agent', String(STREAMS_PER_AGENT),
    ],
    // The revocation feed polled every 10 s, as in production: the revocation test waits for it.
    { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  relay.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  relay.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await until(() => /"relay listening".*"admin":\d+/.test(output), 60_000, 'the relay with workers to listen');
  const listening = /"msg":"relay listening".*"url":"(https:[^"]+)".*"admin":(\d+)/.exec(output)!;
  relayUrl = listening[1]!;
  adminPort = Number(listening[2]);
  await until(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 60_000, 'both workers to be ready');
}, 120_000);

afterAll(async () => {
  if (relay && relay.exitCode === null) {
    const exited = new Promise((resolve) => relay.once('exit', resolve));
    relay.kill('SIGTERM');
    await exited;
  }
  await stack?.close();
});

const tokenOf = async (agent: string) => {
  const { registry, close } = await stack.registry();
  try {
    const key = await registry.rotateAgentKey(agent);
    return await stack.token(key);
  } finally {
    await close();
  }
};

/** Requests each worker has handled, by worker id, from the primary's aggregated /metrics. */
async function requestsByWorker(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return new Map([...text.matchAll(/^kube_relay_worker_requests\{worker="(\d+)"\} (\d+)/gm)].map((match) => [match[1]!, Number(match[2])]));
}

/** The relay's workers, children of the CLI process (from /proc). */
function workerPids(): number[] {
  return readFileSync(`/proc/${relay.pid}/task/${relay.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

type WatchAnswer = { status: 200; close(): void; ended: Promise<void> } | { status: number; body: string };

/** A watch on a connection of its own (so the primary hands each to the next worker in turn), resolved once answered. */
function openWatch(token: string): Promise<WatchAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.get(`${relayUrl}/api/v1/namespaces/default/pods?watch=1`, { ca: stack.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode === 200) {
        res.on('error', () => undefined);
        res.resume();
        resolve({ status: 200, close: () => req.destroy(), ended: new Promise((ended) => res.on('close', () => ended())) });
        return;
      }
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
}

const get = (token: string) => request(`${relayUrl}/api/v1/namespaces/default/pods`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}`, connection: 'close' } });

describe('kube-relay relay --workers 2', () => {
  it('serves requests from both workers, and the primary reports them ready', async () => {
    expect(workerPids()).toHaveLength(2);
    const token = await stack.token();
    for (let n = 0; n < 20; n++) expect((await get(token)).status).toBe(200);
    await until(async () => [...(await requestsByWorker()).values()].filter((count) => count > 0).length === 2, 10_000, 'both workers to have served');
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    // Summed over the workers by prom-client's AggregatorRegistry: one series, not one per worker.
    expect(metrics.match(/^kube_relay_requests_total\{cluster="prod-eu",verb="list",code="200",decision="allowed"\} (\d+)/m)?.[1]).toMatch(/^\d+$/);
    expect(Number(metrics.match(/^kube_relay_requests_total\{cluster="prod-eu",verb="list",code="200",decision="allowed"\} (\d+)/m)![1])).toBeGreaterThanOrEqual(20);
    expect(metrics).toContain('kube_relay_primary_process_resident_memory_bytes');
  });

  it(`gives one agent ${STREAMS_PER_AGENT} long-running requests across both workers, a 429 for the next, and the slot back when one closes`, async () => {
    const token = await tokenOf('limited');
    const before = await requestsByWorker();
    const open: Extract<WatchAnswer, { status: 200 }>[] = [];
    try {
      for (let n = 0; n < STREAMS_PER_AGENT; n++) {
        const answer = await openWatch(token);
        expect(answer.status).toBe(200);
        open.push(answer as Extract<WatchAnswer, { status: 200 }>);
      }
      for (let n = 0; n < 4; n++) {
        const refused = await openWatch(token);
        expect(refused.status).toBe(429);
        expect((refused as { body: string }).body).toContain(`the agent already holds ${STREAMS_PER_AGENT} long-running requests`);
      }
      open.shift()!.close();
      let again: WatchAnswer | undefined;
      await until(async () => (again = await openWatch(token)).status === 200, 15_000, 'the closed watch’s slot to come back');
      open.push(again as Extract<WatchAnswer, { status: 200 }>);
      expect((await openWatch(token)).status).toBe(429);
    } finally {
      for (const watch of open) watch.close();
    }
    // The refusals (ended requests) were handled by both workers: the count held across them.
    const after = await requestsByWorker();
    expect([...after].filter(([worker, count]) => count > (before.get(worker) ?? 0))).toHaveLength(2);
  });

  it(`holds a rate policy of burst ${BURST} exactly across both workers`, async () => {
    const token = await tokenOf('throttled');
    const statuses: number[] = [];
    for (let n = 0; n < BURST + 5; n++) statuses.push((await get(token)).status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(BURST);
    expect(statuses.slice(BURST).every((status) => status === 429)).toBe(true);
  });

  it('cuts the revoked agent’s watches on both workers and refuses its new requests', async () => {
    const token = await tokenOf('doomed');
    const before = await requestsByWorker();
    const watches: Extract<WatchAnswer, { status: 200 }>[] = [];
    for (let n = 0; n < STREAMS_PER_AGENT; n++) watches.push((await openWatch(token)) as Extract<WatchAnswer, { status: 200 }>);
    expect(watches.every((watch) => watch.status === 200)).toBe(true);
    const { registry, close } = await stack.registry();
    await registry.revokeAgent('doomed');
    await close();
    // The primary polls the feed every 10 s and tells every worker.
    await Promise.all(watches.map((watch) => watch.ended));
    const after = await requestsByWorker();
    expect([...after].filter(([worker, count]) => count > (before.get(worker) ?? 0))).toHaveLength(2);
    for (let n = 0; n < 4; n++) expect((await get(token)).status).toBe(401);
    revokedToken = token;
  }, 60_000);

  it('gives back the slots of a worker killed with SIGKILL, and starts another', async () => {
    const token = await tokenOf('limited');
    const open: Extract<WatchAnswer, { status: 200 }>[] = [];
    try {
      for (let n = 0; n < STREAMS_PER_AGENT; n++) open.push((await openWatch(token)) as Extract<WatchAnswer, { status: 200 }>);
      expect(open.every((watch) => watch.status === 200)).toBe(true);
      expect((await openWatch(token)).status).toBe(429);
      const [victim] = workerPids();
      process.kill(victim!, 'SIGKILL');
      // Its watches end with it; the others stay open on the worker that lives.
      await until(() => output.includes('relay worker exited unexpectedly; starting another'), 15_000, 'the primary to notice');
      const survivors = await Promise.all(open.map((watch) => Promise.race([watch.ended.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 1_000))])));
      const stillOpen = survivors.filter(Boolean).length;
      expect(stillOpen).toBeLessThan(STREAMS_PER_AGENT);
      // Exactly the slots the dead worker held are free again.
      for (let n = stillOpen; n < STREAMS_PER_AGENT; n++) {
        const answer = await openWatch(token);
        expect(answer.status).toBe(200);
        open.push(answer as Extract<WatchAnswer, { status: 200 }>);
      }
      expect((await openWatch(token)).status).toBe(429);
      await until(() => workerPids().length === 2 && !workerPids().includes(victim!), 20_000, 'a new worker');
      await until(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200, 30_000, 'the new worker to be ready');
      // The new worker was given every revocation before it listened: each connection, on either worker, refuses the revoked agent.
      for (let n = 0; n < 6; n++) {
        const refused = await get(revokedToken!);
        expect(refused.status).toBe(401);
        expect(refused.body.toString()).toContain('the agent has been revoked');
      }
    } finally {
      for (const watch of open) if (watch.status === 200) watch.close();
    }
  }, 90_000);

  it('closes every worker and exits 0 on SIGTERM', async () => {
    const pids = workerPids();
    const exited = new Promise<number | null>((resolve) => relay.once('exit', resolve));
    relay.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  }, 30_000);
});

describe('kube-relay relay --workers 2 with a connector key', () => {
  it('holds one control channel for the replica, and every worker sends its records to the central audit', async () => {
    const keyFile = path.join(stack.dataDir, 'workers.connector-key');
    writeFileSync(keyFile, `${stack.connectorKey}\n`, { mode: 0o600 });
    const { registry, close } = await stack.registry();
    const key = await registry.createAgent('centrally-audited', 'acme', ['sre']);
    await close();
    const before = await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu');
    let text = '';
    const hubbed = spawn(
      process.execPath,
      [
        BIN, 'relay', '--mode', 'direct', '--workers', '2', '--cluster', 'prod-eu', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile,
        '--listen', '127.0.0.1:0', '--connector-key-file', keyFile, '--kubeconfig', stack.relayKubeconfig, '--data', stack.dataDir,
        '--audit-file', path.join(stack.dataDir, 'hubbed-audit.jsonl'),
      ],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    hubbed.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const exited = new Promise((resolve) => hubbed.once('exit', resolve));
    try {
      await until(() => text.includes('; control channel to '), 60_000, 'the relay to start');
      const url = /agents use (https:\S+)/.exec(text)![1]!;
      await until(async () => (await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu')) === before + 1, 30_000, 'its control channel at the hub');
      const token = await stack.token(key);
      for (let n = 0; n < 10; n++) {
        const res = await request(`${url}/api/v1/namespaces/default/pods`, { ca: stack.caPem, headers: { authorization: `Bearer ${token}`, connection: 'close' } });
        expect(res.status).toBe(200);
      }
      const store = await openStore({ dataDir: stack.dataDir });
      try {
        await until(async () => (await store.queryAudit({ agent: 'centrally-audited', limit: 100 })).length === 10, 20_000, 'the ten records in the central audit');
      } finally {
        await store.close();
      }
      // One channel for the replica, not one per worker.
      expect(await hubGauge(stack, 'kube_relay_control_channels_connected', 'prod-eu')).toBe(before + 1);
      expect(text).not.toContain(stack.connectorKey);
    } finally {
      hubbed.kill('SIGTERM');
      await exited;
    }
  }, 90_000);
});

describe('kube-relay relay --workers 2 that cannot start', () => {
  it('stops with the worker’s reason (exit 1) when the listen port is taken, and leaves no worker behind', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const { runCli } = await import('../helpers/cli.js');
      const result = await runCli([
        'relay', '--mode', 'direct', '--workers', '2', '--cluster', 'prod-eu', '--issuer', stack.issuer.url, '--issuer-ca-file', stack.caFile,
        '--listen', `127.0.0.1:${port}`, '--kubeconfig', stack.relayKubeconfig, '--data', stack.dataDir, '--audit-file', path.join(stack.dataDir, 'taken-audit.jsonl'),
      ]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('EADDRINUSE');
    } finally {
      taken.close();
    }
  }, 60_000);
});

describe('kube-relay relay --workers, misused', () => {
  it.each([
    ['0', '--workers "0" must be a whole number from 1 to 64'],
    ['65', '--workers "65" must be a whole number from 1 to 64'],
    ['two', '--workers "two" must be a whole number from 1 to 64'],
  ])('refuses --workers %s (exit 2)', async (value, message) => {
    const { runCli } = await import('../helpers/cli.js');
    const result = await runCli(['relay', '--mode', 'direct', '--cluster', 'c', '--issuer', 'https://127.0.0.1:1', '--listen', '127.0.0.1:0', '--kubeconfig', stack.relayKubeconfig, '--workers', value]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
  });

  it('refuses --workers 2 with --audit-file-max-size: workers would rotate one file under each other', async () => {
    const { runCli } = await import('../helpers/cli.js');
    const result = await runCli([
      'relay', '--mode', 'direct', '--cluster', 'c', '--issuer', 'https://127.0.0.1:1', '--listen', '127.0.0.1:0', '--kubeconfig', stack.relayKubeconfig,
      '--workers', '2', '--audit-file', path.join(stack.dataDir, 'rotated.jsonl'), '--audit-file-max-size', '10Mi',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--audit-file-max-size cannot be used with --workers');
  });

  it('refuses --workers 2 in tunnel mode, saying to run more replicas', async () => {
    const { runCli } = await import('../helpers/cli.js');
    const result = await runCli(
      ['relay', '--mode', 'tunnel', '--cluster', 'c', '--issuer', 'https://127.0.0.1:1', '--hub', 'https://127.0.0.1:1', '--connector-key-file', stack.relayKubeconfig, '--kubeconfig', stack.relayKubeconfig],
      { KUBE_RELAY_WORKERS: '2' },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('run more relay replicas instead');
  });
});
