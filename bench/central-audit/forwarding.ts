/** Forwarding: a direct relay's cost with and without central audit, wrk through each in turn. */
import { execFile } from 'node:child_process';
import { createReadStream, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { requestToken } from '../../src/client/token.js';
import { openStore } from '../../src/issuer/store.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { median } from '../audit-scale/measure.js';
import { check, CLI, cliEnv, cpuSeconds, ROOT, seed, sleep, type Started, startIssuer, startProcess, storeCounts, waitReady } from './processes.js';

/** bench/main.ts's small-GET phase: wrk -t1 with these many connections. */
const CONNECTIONS = [1, 16, 64];

interface WrkFigures {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** The relay's CPU per request, in microseconds. */
  relayCpuUsPerRequest: number;
}

interface Relay extends Started {
  base: string;
  adminPort: number;
  auditFile: string;
}

function wrk(base: string, token: string, connections: number, seconds: number): Promise<Omit<WrkFigures, 'relayCpuUsPerRequest'>> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', path.join(ROOT, 'bench', 'wrk-report.lua'), '-H', `authorization: Bearer ${token}`, `${base}/api/v1/namespaces/bench/pods`];
  return new Promise((resolve, reject) => {
    execFile('wrk', args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      const match = /WRK-JSON (.*)/.exec(stdout);
      if (!match) return reject(new Error(`wrk printed no summary:\n${stdout}`));
      const report = JSON.parse(match[1]!) as { requests: number; durationUs: number; errors: number; non2xx: number; p50: number; p99: number };
      resolve({ requests: report.requests, rps: report.requests / (report.durationUs / 1e6), p50Ms: report.p50 / 1000, p99Ms: report.p99 / 1000, errors: report.errors + report.non2xx });
    });
  });
}

/** The relay's audit figures for the issuer, from its /metrics. */
async function issuerSinkMetrics(relay: Relay): Promise<{ pending: number; delivered: number; dropped: number }> {
  const text = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
  const value = (pattern: RegExp) => [...text.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
  return {
    pending: value(/^kube_relay_audit_pending_records\{sink="issuer"\} (\S+)$/gm),
    delivered: value(/^kube_relay_audit_records_total\{sink="issuer"\} (\S+)$/gm),
    dropped: value(/^kube_relay_audit_records_dropped_total\{[^}]*sink="issuer"[^}]*\} (\S+)$/gm),
  };
}

/** Waits until the relay holds nothing for the issuer; the seconds it took and the most it held meanwhile. */
async function drain(relay: Relay): Promise<{ seconds: number; pendingAtStart: number }> {
  const startedAt = performance.now();
  const pendingAtStart = (await issuerSinkMetrics(relay)).pending;
  for (;;) {
    const { pending } = await issuerSinkMetrics(relay);
    if (pending === 0) return { seconds: (performance.now() - startedAt) / 1000, pendingAtStart };
    if (performance.now() - startedAt > 300_000) throw new Error(`the relay still holds ${pending} records for the issuer after 300 s`);
    await sleep(100);
  }
}

async function startRelay(name: string, dataDir: string, issuerUrl: string, caFile: string, kubeconfig: string, cluster: string, connectorKeyFile: string | undefined): Promise<Relay> {
  const auditFile = path.join(dataDir, `${name}-audit.jsonl`);
  const started = await startProcess(
    `relay (${name})`,
    [CLI, 'relay', '--mode', 'direct', '--cluster', cluster, '--issuer', issuerUrl, '--issuer-ca-file', caFile, '--kubeconfig', kubeconfig, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
      '--max-streams-per-agent', '1000000', '--data', dataDir, '--audit-file', auditFile, ...(connectorKeyFile ? ['--connector-key-file', connectorKeyFile] : [])],
    /"relay listening".*"url":"(https:\/\/[^"]+)".*"admin":(\d+)/,
    cliEnv(),
  );
  const adminPort = Number(started.match[2]);
  await waitReady(adminPort, `the relay (${name})`, started);
  return { ...started, base: started.match[1]!, adminPort, auditFile };
}

/** ResponseComplete records in a relay's local audit file. */
async function completedRecords(file: string): Promise<number> {
  let count = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) if (line.includes('"stage":"ResponseComplete"')) count++;
  return count;
}

export interface ForwardingFigures {
  connections: number;
  without: WrkFigures & { runs: WrkFigures[] };
  with: WrkFigures & { runs: WrkFigures[] };
  rpsRatio: number;
  p99Ratio: number;
  /** How long the relay with the key took, after each run, to hand the issuer what it still held; the most it held. */
  drainSecondsMax: number;
  pendingAtEndMax: number;
}

export interface ForwardingResult {
  cells: ForwardingFigures[];
  storeRecords: number;
  localRecords: number;
  wrkRequests: number;
  cutOffAtMost: number;
  delivered: number;
  dropped: number;
  sample: Record<string, unknown> | undefined;
  issuerCpuPercentWith: number;
}

export async function measureForwarding(work: string, wrkSeconds: number, rounds: number): Promise<ForwardingResult> {
  const dataDir = path.join(work, 'forwarding');
  const cluster = 'forwarding';
  const { connectorKey, agentKey } = await seed(dataDir, undefined, cluster);
  const ca = loadOrCreateCa(dataDir);
  const upstreamCert = issueCertificate(ca, { commonName: 'bench-upstream', sans: ['127.0.0.1', 'localhost'], usage: 'server' });
  writeFileSync(path.join(dataDir, 'upstream.crt'), upstreamCert.certPem);
  writeFileSync(path.join(dataDir, 'upstream.key'), upstreamCert.keyPem, { mode: 0o600 });
  const keyFile = path.join(dataDir, 'connector.key');
  writeFileSync(keyFile, `${connectorKey}\n`, { mode: 0o600 });

  const stops: (() => Promise<void>)[] = [];
  try {
    const upstream = await startProcess('upstream', ['--import', 'tsx', path.join('bench', 'upstream.ts'), path.join(dataDir, 'upstream.crt'), path.join(dataDir, 'upstream.key')], /listening (\d+)/, cliEnv());
    stops.push(upstream.stop);
    const kubeconfig = path.join(dataDir, 'upstream.kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'bench', cluster: { server: `https://127.0.0.1:${upstream.match[1]}`, 'certificate-authority': ca.certPath } }],
        users: [{ name: 'relay', user: { token: 'bench-relay-credential' } }],
        contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'relay' } }],
        'current-context': 'bench',
      }),
    );
    const issuer = await startIssuer(dataDir, undefined);
    stops.unshift(issuer.stop);
    const plain = await startRelay('without-key', dataDir, issuer.url, ca.certPath, kubeconfig, cluster, undefined);
    stops.unshift(plain.stop);
    const central = await startRelay('with-key', dataDir, issuer.url, ca.certPath, kubeconfig, cluster, keyFile);
    stops.unshift(central.stop);

    // A fresh 60-second token for every wrk run.
    const token = async () => (await requestToken({ issuer: issuer.url, cluster, apiKey: agentKey, issuerCa: ca.certPem })).token;
    let wrkRequests = 0;
    /** wrk does not count the requests it cuts off at the end of a run: at most one per connection. */
    let cutOffAtMost = 0;
    let issuerCpuWith = 0;
    let secondsWith = 0;
    const measure = async (relay: Relay, connections: number, seconds: number): Promise<WrkFigures> => {
      const bearer = await token();
      const relayBefore = cpuSeconds(relay.pid);
      const issuerBefore = cpuSeconds(issuer.pid);
      const figures = await wrk(relay.base, bearer, connections, seconds);
      const relayCpu = cpuSeconds(relay.pid) - relayBefore;
      if (relay === central) {
        wrkRequests += figures.requests;
        cutOffAtMost += connections;
        issuerCpuWith += cpuSeconds(issuer.pid) - issuerBefore;
        secondsWith += seconds;
      }
      check(figures.errors === 0, `wrk through the relay ${relay === central ? 'with' : 'without'} the key, ${connections} connections: ${figures.errors} errors or non-2xx answers`);
      return { ...figures, relayCpuUsPerRequest: (1e6 * relayCpu) / Math.max(1, figures.requests) };
    };

    for (const relay of [plain, central]) await measure(relay, 16, 1); // warm-up
    await drain(central);
    const cells: ForwardingFigures[] = [];
    for (const connections of CONNECTIONS) {
      const runs = { without: [] as WrkFigures[], with: [] as WrkFigures[] };
      let drainSecondsMax = 0;
      let pendingAtEndMax = 0;
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? (['without', 'with'] as const) : (['with', 'without'] as const);
        for (const variant of order) {
          runs[variant].push(await measure(variant === 'with' ? central : plain, connections, wrkSeconds));
          if (variant === 'with') {
            // The issuer is on this machine: what it still has to take must not fall on the next run.
            const drained = await drain(central);
            drainSecondsMax = Math.max(drainSecondsMax, drained.seconds);
            pendingAtEndMax = Math.max(pendingAtEndMax, drained.pendingAtStart);
          }
        }
      }
      const summary = (list: WrkFigures[]) => ({
        requests: list.reduce((sum, run) => sum + run.requests, 0),
        rps: median(list.map((run) => run.rps)),
        p50Ms: median(list.map((run) => run.p50Ms)),
        p99Ms: median(list.map((run) => run.p99Ms)),
        errors: list.reduce((sum, run) => sum + run.errors, 0),
        relayCpuUsPerRequest: median(list.map((run) => run.relayCpuUsPerRequest)),
        runs: list,
      });
      const without = summary(runs.without);
      const withKey = summary(runs.with);
      cells.push({ connections, without, with: withKey, rpsRatio: withKey.rps / without.rps, p99Ratio: withKey.p99Ms / without.p99Ms, drainSecondsMax, pendingAtEndMax });
    }

    await drain(central);
    const { delivered, dropped } = await issuerSinkMetrics(central);
    // SIGTERM: the relay closes its sinks (the local file flushed) before the counts.
    await central.stop();
    await plain.stop();
    const localRecords = await completedRecords(central.auditFile);
    await issuer.stop();
    const counts = await storeCounts(dataDir, undefined, cluster);
    const store = await openStore({ dataDir });
    const [sample] = await store.queryAudit({ cluster, limit: 1, sinceMs: Date.now() - 3_600_000 }).finally(() => store.close());
    check(dropped === 0, `the relay with the key dropped ${dropped} records for the issuer`);
    check(counts.records === localRecords, `the issuer's store holds ${counts.records} records of the relay's cluster; the relay wrote ${localRecords} ResponseComplete records locally`);
    check(
      counts.records >= wrkRequests && counts.records <= wrkRequests + cutOffAtMost,
      `the issuer's store holds ${counts.records} records of the relay's cluster; wrk made ${wrkRequests} requests through the relay with the key (and cut off at most ${cutOffAtMost})`,
    );
    return { cells, storeRecords: counts.records, localRecords, wrkRequests, cutOffAtMost, delivered, dropped, sample: sample?.record, issuerCpuPercentWith: (100 * issuerCpuWith) / secondsWith };
  } finally {
    for (const stop of stops) await stop();
  }
}
