/** The processes of bench/central-audit.ts: the CLI's children (issuer, relays, upstream), their CPU, the issuer's store seeded and counted. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Registry } from '../../src/issuer/registry.js';
import { openStore } from '../../src/issuer/store.js';
import { openEngine } from '../../src/issuer/store/open.js';
import { freePort } from '../../test/helpers/free-port.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CLI = path.join(ROOT, 'bin', 'kube-relay.js');
const PEPPER = 'the-pepper-of-the-central-audit-benchmark-0123456789';
export const ORG = 'bench';
const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Integrity problems; any makes the run exit 1. */
export const problems: string[] = [];
export const check = (ok: boolean, problem: string) => {
  if (!ok) problems.push(problem);
  return ok;
};

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** The CLI's environment: this one's, without KUBE_RELAY_* settings that would change what it does. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('KUBE_RELAY_')) env[key] = value;
  return { ...env, ...extra };
}

export interface Started {
  pid: number;
  match: RegExpMatchArray;
  /** Whether it has exited. */
  exited(): boolean;
  /** The last 16 KiB of its output, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Starts a child, keeps reading its output (a full pipe would stall it), resolves at the first output matching `ready` (no `ready`: at once). */
export function startProcess(name: string, args: string[], ready: RegExp | undefined, env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  children.add(child);
  let output = '';
  let matched = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s:\n${output}`)), 60_000);
    const settle = () => {
      if (matched) return;
      const match = ready ? ready.exec(output) : ([''] as RegExpMatchArray);
      if (!match) return;
      matched = true;
      clearTimeout(timer);
      resolve({
        pid: child.pid!,
        match,
        exited: () => child.exitCode !== null || child.signalCode !== null,
        output: () => output,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
            child.kill('SIGTERM');
            await exited;
            clearTimeout(kill);
          }
          children.delete(child);
        },
      });
    };
    const onData = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-16_384);
      settle();
    };
    settle();
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      if (!matched) reject(new Error(`${name} exited (${code}) before it was ready:\n${output}`));
    });
  });
}

export async function waitReady(adminPort: number, what: string, process: Started): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (process.exited()) throw new Error(`${what} exited before it was ready:\n${process.output()}`);
    if ((await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status, () => 0)) === 200) return;
    await sleep(200);
  }
  throw new Error(`${what} was not ready within 60 s:\n${process.output()}`);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds used so far by a PostgreSQL server and its backends (the postmaster's pid in DATA/postmaster.pid), or undefined when it cannot be read. */
export function serverCpuSeconds(postmasterPidFile: string | undefined): number | undefined {
  if (postmasterPidFile === undefined) return undefined;
  try {
    const postmaster = Number(readFileSync(postmasterPidFile, 'utf8').split('\n')[0]);
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(entry) === postmaster || Number(fields[1]) === postmaster) total += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
    }
    return total;
  } catch {
    return undefined;
  }
}

interface Issuer extends Started {
  url: string;
  adminPort: number;
}

/** `kube-relay issuer` on 127.0.0.1 at warn (a log line per batch would be measured too), ready once /readyz says so. */
export async function startIssuer(dataDir: string, storeUrl: string | undefined): Promise<Issuer> {
  const pepperFile = path.join(dataDir, 'bench.pepper');
  writeFileSync(pepperFile, PEPPER, { mode: 0o600 });
  const [port, adminPort] = [await freePort(), await freePort()];
  const started = await startProcess(
    'issuer',
    [CLI, 'issuer', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--data', dataDir, '--pepper-file', pepperFile,
      '--audit-file', path.join(dataDir, 'hub-audit.jsonl'), '--log-level', 'warn'],
    undefined,
    cliEnv(storeUrl ? { KUBE_RELAY_STORE_URL: storeUrl } : {}),
  );
  await waitReady(adminPort, 'the issuer', started);
  return { ...started, url: `https://127.0.0.1:${port}`, adminPort };
}

/** A cluster (and an agent) in the store, written through the registry; the connector key and the agent's API key. */
export async function seed(dataDir: string, storeUrl: string | undefined, cluster: string): Promise<{ connectorKey: string; agentKey: string }> {
  mkdirSync(dataDir, { recursive: true });
  const store = await openStore({ dataDir, storeUrl });
  try {
    const registry = new Registry(store, Buffer.from(PEPPER));
    const agentKey = await registry.createAgent('loader', ORG, ['load']);
    const connectorKey = await registry.createCluster(cluster, ORG);
    return { connectorKey, agentKey };
  } finally {
    await store.close();
  }
}

/** What the store holds of `cluster`: records and sessions. */
export async function storeCounts(dataDir: string, storeUrl: string | undefined, cluster: string): Promise<{ records: number; sessions: number }> {
  const engine = await openEngine({ dataDir, storeUrl });
  try {
    const [records] = await engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM audit_records WHERE cluster = ?', [cluster]);
    const [sessions] = await engine.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM sessions WHERE cluster = ?', [cluster]);
    return { records: Number(records!.n), sessions: Number(sessions!.n) };
  } finally {
    await engine.close();
  }
}
