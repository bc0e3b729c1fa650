/**
 * The benchmark's parties, each its own process with TLS on every leg
 * (bench/main.ts): the upstream, the bare proxy, the issuer with its hub,
 * a direct and a tunnel relay; and what /proc says each of them used.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requestToken } from '../src/client/token.js';
import { issueCertificate, loadOrCreateCa } from '../src/tls/local-ca.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'bin', 'kube-relay.js');
const CLUSTER = 'bench';

/** upstream: straight to it; bare: through a bare Node https proxy (the floor); direct, tunnel: through kube-relay. */
export type PathName = 'upstream' | 'bare' | 'direct' | 'tunnel';
export const PATHS: PathName[] = ['upstream', 'bare', 'direct', 'tunnel'];

export interface Target {
  /** Base URL that stands for the API server on this path. */
  base: string;
  headers: () => Promise<Record<string, string>>;
}


// ---------------------------------------------------------------- processes

const children: ChildProcess[] = [];
export const pids: Record<string, number> = {};
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** Starts a child and resolves with the first output line matching `ready`. */
function startProcess(name: string, command: string, args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<RegExpMatchArray> {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  pids[name] = child.pid!;
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = ready.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready:\n${output}`)));
  });
}

function kubeRelay(dataDir: string, args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, KUBE_RELAY_DATA: dataDir } }).trim();
}

async function waitReady(adminPort: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const status = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0);
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the relay on admin port ${adminPort} did not become ready`);
}

/** The watch-rounds phase's own direct relay, inspectable (watch-rounds.ts). */
export interface InspectedRelay {
  target: Target;
  pid: number;
  adminPort: number;
  inspectorUrl: string;
}

/** The direct relay started with --workers N, by N (1 is the direct path itself). */
export interface WorkerRelays {
  targets: Record<number, Target>;
  /** The name its pid is kept under in `pids` (its workers are its children). */
  names: Record<number, string>;
}

export async function startEverything(options: {
  cpuProfileDir?: string | undefined;
  roundsRelay: boolean;
  /** Worker counts to start a direct relay with besides the one-process relay (--workers in bench/main.ts). */
  workers?: number[];
}): Promise<{ targets: Record<PathName, Target>; ca: string; roundsRelay?: InspectedRelay; workerRelays: WorkerRelays }> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'kube-relay-bench-'));
  const ca = loadOrCreateCa(dataDir);
  const upstreamCert = issueCertificate(ca, { commonName: 'bench-upstream', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  writeFileSync(path.join(dataDir, 'upstream.crt'), upstreamCert.certPem);
  writeFileSync(path.join(dataDir, 'upstream.key'), upstreamCert.keyPem, { mode: 0o600 });

  const connectorKey = kubeRelay(dataDir, ['cluster', 'create', CLUSTER, '--org', 'bench']);
  writeFileSync(path.join(dataDir, 'connector.key'), `${connectorKey}\n`, { mode: 0o600 });
  const agentKey = kubeRelay(dataDir, ['agent', 'create', 'loader', '--org', 'bench', '--team', 'load']);

  const upstreamPort = Number(
    (await startProcess('upstream', process.execPath, ['--import', 'tsx', path.join('bench', 'upstream.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key')], /listening (\d+)/))[1],
  );
  const barePort = Number(
    (
      await startProcess(
        'bare proxy',
        process.execPath,
        ['--import', 'tsx', path.join('bench', 'bare-proxy.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key'), ca.certPath, String(upstreamPort)],
        /listening (\d+)/,
      )
    )[1],
  );
  writeFileSync(
    path.join(dataDir, 'upstream.kubeconfig'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'bench', cluster: { server: `https://127.0.0.1:${upstreamPort}`, 'certificate-authority': ca.certPath } }],
      users: [{ name: 'relay', user: { token: 'bench-relay-credential' } }],
      contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'relay' } }],
      'current-context': 'bench',
    }),
  );

  const node = process.execPath;
  const profile = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(options.cpuProfileDir)}`] : [];
  const data = { KUBE_RELAY_DATA: dataDir };
  // Every client of the run comes from 127.0.0.1: the per-address cap (a quarter of the connections) must not bind either.
  const unlimitedConnections = ['--max-connections', '1000000', '--max-connections-per-address', '1000000'];
  const issuerUrl = (await startProcess('issuer', node, [...profile, CLI, 'issuer', '--listen', '127.0.0.1:0', '--max-requests-per-agent', '1000000', ...unlimitedConnections], /"url":"(https:\/\/[^"]+)"/, data))[1]!;
  // One agent holds every watch of the idle-watch phase: its per-agent quotas must not be what is measured.
  const relayArgs = ['--cluster', CLUSTER, '--issuer', issuerUrl, '--issuer-ca-file', ca.certPath, '--kubeconfig', path.join(dataDir, 'upstream.kubeconfig'), '--admin-listen', '127.0.0.1:0', '--max-streams-per-agent', '1000000', '--max-requests-per-agent', '1000000', ...unlimitedConnections];
  const direct = await startProcess(
    'direct relay',
    node,
    [...profile, CLI, 'relay', ...relayArgs, '--mode', 'direct', '--listen', '127.0.0.1:0', '--audit-file', path.join(dataDir, 'direct-audit.jsonl')],
    /"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    data,
  );
  const tunnel = await startProcess(
    'tunnel relay',
    node,
    [...profile, CLI, 'relay', ...relayArgs, '--mode', 'tunnel', '--hub', issuerUrl, '--connector-key-file', path.join(dataDir, 'connector.key'), '--audit-file', path.join(dataDir, 'tunnel-audit.jsonl')],
    /"relay dialling the hub".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    data,
  );
  const multi = (options.workers ?? []).filter((count) => count > 1);
  const withWorkers = await Promise.all(
    multi.map((count) =>
      startProcess(
        `direct relay, ${count} workers`,
        node,
        [...profile, CLI, 'relay', ...relayArgs, '--mode', 'direct', '--workers', String(count), '--listen', '127.0.0.1:0', '--audit-file', path.join(dataDir, `direct-${count}-workers-audit.jsonl`)],
        /"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
        data,
      ),
    ),
  );
  // Only for the watch-rounds phase: a direct relay no other phase has used, with the inspector on.
  const rounds = options.roundsRelay
    ? await startProcess(
        'rounds relay',
        node,
        ['--inspect=127.0.0.1:0', CLI, 'relay', ...relayArgs, '--mode', 'direct', '--listen', '127.0.0.1:0', '--audit-file', path.join(dataDir, 'rounds-audit.jsonl')],
        /Debugger listening on (ws:\/\/\S+)[\s\S]*"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
        data,
      )
    : undefined;
  await Promise.all([waitReady(Number(direct[2])), waitReady(Number(tunnel[2])), rounds && waitReady(Number(rounds[3])), ...withWorkers.map((started) => waitReady(Number(started[2])))]);

  // A fresh 60-second token for every measurement that needs one.
  const agentHeaders = async () => ({ authorization: `Bearer ${(await requestToken({ issuer: issuerUrl, cluster: CLUSTER, apiKey: agentKey, issuerCa: ca.certPem })).token}` });
  const workerRelays: WorkerRelays = { targets: { 1: { base: direct[1]!, headers: agentHeaders } }, names: { 1: 'direct relay' } };
  multi.forEach((count, n) => {
    workerRelays.targets[count] = { base: withWorkers[n]![1]!, headers: agentHeaders };
    workerRelays.names[count] = `direct relay, ${count} workers`;
  });
  return {
    workerRelays,
    ca: ca.certPem,
    targets: {
      upstream: { base: `https://127.0.0.1:${upstreamPort}`, headers: async () => ({ authorization: 'Bearer bench-relay-credential' }) },
      bare: { base: `https://127.0.0.1:${barePort}`, headers: async () => ({ authorization: 'Bearer bench-relay-credential' }) },
      direct: { base: direct[1]!, headers: agentHeaders },
      tunnel: { base: tunnel[1]!, headers: agentHeaders },
    },
    ...(rounds ? { roundsRelay: { target: { base: rounds[2]!, headers: agentHeaders }, pid: pids['rounds relay']!, adminPort: Number(rounds[3]), inspectorUrl: rounds[1]! } } : {}),
  };
}


const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** User and system CPU time of one process (every thread), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** The processes started by `pid` and theirs (a relay's workers), read from /proc. */
function descendants(pid: number): number[] {
  let children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      children.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    }
  } catch {
    return []; // it has exited
  }
  children = [...new Set(children)];
  return children.flatMap((child) => [child, ...descendants(child)]);
}

/** Resident memory and CPU time used so far by a process and every process below it (a relay's workers), from /proc. */
export function processUsage(pid: number): { rssMiB: number; cpuSeconds: number } {
  let rssKiB = 0;
  let cpu = 0;
  for (const each of [pid, ...descendants(pid)]) {
    try {
      rssKiB += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))![1]);
      cpu += cpuSeconds(each);
    } catch {
      // exited between the listing and the read
    }
  }
  return { rssMiB: rssKiB / 1024, cpuSeconds: cpu };
}

/** SIGTERM, so each process shuts down as in production (and writes its CPU profile). */
export async function stopEverything(): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
}

