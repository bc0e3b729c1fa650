/**
 * A direct-mode relay on several cores (`kube-relay relay --workers N`,
 * issue 21): the primary forks N workers (worker.ts) with node:cluster, which
 * share one API listener, and keeps what must be one for the relay as a
 * whole:
 *
 * - admission: the per-agent quotas and rate buckets (shared-limits.ts),
 *   asked once per request over cluster IPC, so the caps are exact for the
 *   replica, as with one process; a worker that dies gives back its slots;
 * - revocations: polled (and pushed down the control channel) here, and
 *   broadcast to every worker, each of which cuts the agent's streams; a
 *   worker gets the whole list before it listens;
 * - the control channel to the hub, the grant sync (one per replica, as
 *   the Lease election expects) and the admin listener: ready when every
 *   worker is; /metrics sums the workers' with prom-client's AggregatorRegistry;
 * - the workers' stdout and stderr, copied as whole lines (line-pipe.ts).
 *
 * A worker that exits unexpectedly is started again; close() (SIGTERM)
 * closes every worker as a relay closes, then the rest.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, collectDefaultMetrics, Registry } from 'prom-client';
import { boundPort, closeServer, type Readiness, startAdminServer } from '../../admin.js';
import { startCentralGrants } from '../../grants/central-grants.js';
import { listenerUrl } from '../../net.js';
import { agentQuotas } from '../../request-stages/agent-quotas.js';
import { RevocationList } from '../../request-stages/revocations.js';
import { caPaths, loadOrCreateCa } from '../../tls/local-ca.js';
import { TunnelConnector } from '../../tunnel/connector.js';
import { version } from '../../version.js';
import type { RelayConfig, RunningRelay } from '../server.js';
import { copyLines } from './line-pipe.js';
import { isRelayMessage, KIND, type PrimaryMessage, type WorkerMessage } from './protocol.js';
import { SharedLimits } from './shared-limits.js';

/** A worker that lived shorter than this is started again only after as long, so a crash at start cannot spin. */
const RESTART_DELAY_MS = 5_000;
/** How long close() waits for a worker to close before it kills it. */
const WORKER_CLOSE_DEADLINE_MS = 15_000;

export type RunningPrimary = Pick<RunningRelay, 'url' | 'caFile' | 'adminPort' | 'failed' | 'readiness' | 'close'>;

export async function startRelayPrimary(config: RelayConfig, workers: number): Promise<RunningPrimary> {
  const { log } = config;
  if (!config.listen) throw new Error('direct mode needs a listen address');
  // Created before the workers start, which would each race to create the data directory's CA.
  if (!config.tlsCertFile) loadOrCreateCa(config.dataDir);
  const limits = new SharedLimits(agentQuotas(config));
  const revocations = new RevocationList();
  const subscribed = new Set<Worker>();
  const readinessOf = new Map<Worker, Readiness>();
  const send = (worker: Worker, message: PrimaryMessage) => {
    // A worker that has just died: onGone gives back what it held.
    if (worker.isConnected()) worker.send(message, undefined, () => undefined);
  };
  revocations.onRevoked((entry) => {
    log.info('agent revoked', { user: entry.user, workers: subscribed.size });
    for (const worker of subscribed) send(worker, { [KIND]: 'revoked', entries: [entry] });
  });
  const stopPolling = config.pollRevocations ? revocations.startPolling(config.issuer, config.issuerCa, log, config.revocationPollIntervalMs) : () => undefined;

  let reportFatal: (err: Error) => void = () => undefined;
  const failed = new Promise<Error>((resolve) => (reportFatal = resolve));
  let fatal: Error | undefined;
  const fail = (err: Error) => {
    fatal ??= err;
    reportFatal(err);
  };
  let stopping = false;
  let port: number | undefined;
  const listening = new Set<Worker>();
  const restarts = new Set<NodeJS.Timeout>();
  let startedAll: () => void = () => undefined;
  const allListening = new Promise<void>((resolve) => (startedAll = resolve));

  // Round-robin in the primary rather than the kernel's accept() among workers (SCHED_NONE): on Linux
  // the kernel wakes the same few processes and one worker takes most connections (Node's cluster docs).
  cluster.schedulingPolicy = cluster.SCHED_RR;
  cluster.setupPrimary({ silent: true });
  const fork = () => {
    const worker = cluster.fork();
    const startedAt = Date.now();
    copyLines(worker.process.stdout!, process.stdout);
    copyLines(worker.process.stderr!, process.stderr);
    worker.on('message', (message: unknown) => {
      if (!isRelayMessage<WorkerMessage>(message)) return;
      switch (message[KIND]) {
        case 'limits': {
          for (const id of message.releases) limits.release(worker.id, id);
          if (message.takes.length > 0) send(worker, { [KIND]: 'took', answers: message.takes.map((take) => limits.take(worker.id, take)) });
          return;
        }
        case 'subscribe':
          subscribed.add(worker);
          return send(worker, { [KIND]: 'revoked', entries: revocations.entries() });
        case 'readiness':
          readinessOf.set(worker, { ready: message.ready, waitingFor: message.waitingFor });
          return;
        case 'fatal':
          return fail(new Error(message.message));
      }
    });
    worker.on('listening', (address) => {
      port ??= address.port;
      listening.add(worker);
      if (listening.size === workers) startedAll();
    });
    // A worker is gone once it has exited and its channel is closed, in either order: until then
    // messages it sent may still be read (its last slots, its reason to stop).
    let status: string | undefined;
    let gone = 0;
    const onGone = () => {
      subscribed.delete(worker);
      readinessOf.delete(worker);
      listening.delete(worker);
      if (++gone < 2) return;
      const released = limits.releaseAll(worker.id);
      if (stopping || fatal) return;
      if (port === undefined) return fail(new Error(`a relay worker exited (${status}) before it listened`));
      const lived = Date.now() - startedAt;
      log.warn('relay worker exited unexpectedly; starting another', { worker: worker.id, pid: worker.process.pid, status, requestsReleased: released });
      const restart = setTimeout(() => {
        restarts.delete(restart);
        fork();
      }, lived < RESTART_DELAY_MS ? RESTART_DELAY_MS : 0);
      restarts.add(restart);
    };
    worker.once('exit', (code: number | null, signal: string | null) => {
      status = signal ?? `status ${code}`;
      onGone();
    });
    worker.once('disconnect', onGone);
  };
  for (let n = 0; n < workers; n++) fork();

  const stopWorkers = () => Promise.all(Object.values(cluster.workers ?? {}).map((worker) => closeWorker(worker!)));
  const startFailure = await Promise.race([allListening.then(() => undefined), failed]);
  if (startFailure) {
    stopping = true;
    stopPolling();
    await stopWorkers();
    throw startFailure;
  }

  const ownMetrics = new Registry();
  collectDefaultMetrics({ register: ownMetrics, prefix: 'kube_relay_primary_' });
  const aggregator = new AggregatorRegistry();
  const metrics = {
    contentType: aggregator.contentType,
    // The workers' metrics summed (each gauge, counter and histogram series across workers), then the primary's own.
    metrics: async () => `${await aggregator.clusterMetrics()}\n${await ownMetrics.metrics()}`,
  };
  const readiness = (): Readiness => {
    const waitingFor = new Set<string>();
    const reporting = [...readinessOf.values()];
    if (reporting.length < workers) waitingFor.add(`${workers - reporting.length} of ${workers} workers to start`);
    for (const state of reporting) for (const reason of state.waitingFor) waitingFor.add(reason);
    return { ready: waitingFor.size === 0 && reporting.every((state) => state.ready), waitingFor: [...waitingFor] };
  };

  const centralGrants = config.centralGrants
    ? startCentralGrants({ ...config.centralGrants, cluster: config.cluster, issuer: config.issuer, issuerCa: config.issuerCa, upstream: config.upstream, log })
    : undefined;
  const dial = config.controlChannel;
  const connector = dial
    ? new TunnelConnector({
        hubUrl: dial.hubUrl,
        cluster: config.cluster,
        connectorKey: dial.connectorKey,
        channel: 'control',
        version: version(),
        hubCa: dial.hubCa,
        hubCaDescription: dial.hubCaFile ? `the CA file ${dial.hubCaFile} (--issuer-ca-file)` : undefined,
        keepaliveMs: dial.keepaliveMs,
        ...(dial.backoff ? { backoff: dial.backoff } : {}),
        onRevocations: (entries) => revocations.apply(entries),
        onGrantsChanged: () => centralGrants?.sync.nudge(),
        onRefused: (reason) => fail(new Error(`the hub refused this relay's connector key for cluster "${config.cluster}": ${reason}`)),
        readiness: () => {
          const state = readiness();
          return state.ready ? { ready: true } : { ready: false, reason: `waiting for ${state.waitingFor.join(', ')}` };
        },
        log: log.child({ channel: 'control' }),
        metrics: ownMetrics,
      })
    : undefined;
  connector?.start();
  const admin = config.adminListen ? await startAdminServer(config.adminListen, metrics, readiness) : undefined;
  const url = listenerUrl(config.listen.host, port!);
  const caFile = config.tlsCertFile ? undefined : caPaths(config.dataDir).cert;
  log.info('relay listening', { url, cluster: config.cluster, mode: config.mode, upstream: config.upstream.description, admin: admin ? boundPort(admin) : undefined, workers });
  return {
    url,
    ...(caFile ? { caFile } : {}),
    ...(admin ? { adminPort: boundPort(admin) } : {}),
    failed,
    readiness,
    async close() {
      stopping = true;
      for (const restart of restarts) clearTimeout(restart);
      await stopWorkers();
      await centralGrants?.stop();
      await connector?.stop();
      stopPolling();
      if (admin) await closeServer(admin);
    },
  };
}

/** SIGTERM, which a worker answers as a relay does (it closes), then SIGKILL past the deadline. */
function closeWorker(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    if (worker.process.exitCode !== null || worker.process.signalCode !== null) return resolve();
    const timer = setTimeout(() => worker.process.kill('SIGKILL'), WORKER_CLOSE_DEADLINE_MS);
    worker.process.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    worker.process.kill('SIGTERM');
  });
}
