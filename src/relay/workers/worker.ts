/**
 * One worker of a relay with several (primary.ts): the relay's own
 * startRelay, serving the API listener the workers share, with its
 * admission limits and its revocations held by the primary. It polls
 * nothing, dials no hub and runs no grant sync; it writes its own audit
 * records (central audit included) and reports its readiness and its
 * metrics (prom-client's cluster protocol) to the primary.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, Gauge } from 'prom-client';
import { RevocationList } from '../../request-stages/revocations.js';
import { type RelayConfig, startRelay } from '../server.js';
import { PrimaryLimits } from './limits-client.js';
import { isRelayMessage, KIND, type PrimaryMessage, type WorkerMessage } from './protocol.js';

/** How often the worker looks whether its readiness changed, to tell the primary. */
const READINESS_REPORT_MS = 500;

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    // An error here is the channel closing: the primary is gone, and cluster ends this worker.
    process.send!(message, undefined, {}, () => resolve());
  });
}

/**
 * Runs until SIGTERM (the primary closing it), or until the relay must stop; the exit status.
 * SIGINT is the primary's to act on: a terminal's Ctrl-C reaches every process of the group,
 * and the primary then closes its workers in order.
 */
export async function runRelayWorker(config: RelayConfig): Promise<number> {
  const untilSignal = new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  process.on('SIGINT', () => undefined);
  // Answers the primary's requests for metrics from the start (none until the relay runs), so /metrics never waits on a starting worker.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([]);
  const id = cluster.worker!.id;
  const log = config.log.child({ worker: id });
  const limits = new PrimaryLimits((message) => void send(message));
  const revocations = new RevocationList();
  let subscribed!: () => void;
  const known = new Promise<void>((resolve) => (subscribed = resolve));
  process.on('message', (message: unknown) => {
    if (!isRelayMessage<PrimaryMessage>(message)) return;
    if (message[KIND] === 'took') return limits.answered(message.answers);
    revocations.apply(message.entries);
    subscribed();
  });
  // Before it listens: a worker started late must know every revocation before its first request.
  await send({ [KIND]: 'subscribe' });
  await known;

  let relay;
  try {
    relay = await startRelay({ ...config, log, admissionLimits: limits, revocations, pollRevocations: false, adminListen: undefined, worker: true });
  } catch (err) {
    await stop({ [KIND]: 'fatal', message: (err as Error).message });
    return 1;
  }
  AggregatorRegistry.setRegistries([relay.metrics]);
  const requests = relay.metrics.getSingleMetric('kube_relay_requests_total')!;
  new Gauge({
    name: 'kube_relay_worker_requests',
    help: 'Requests each worker has handled since it started, by worker id (a relay with --workers): how evenly they share the load.',
    labelNames: ['worker'],
    registers: [relay.metrics],
    async collect() {
      const { values } = await requests.get();
      this.set({ worker: String(id) }, values.reduce((sum, { value }) => sum + value, 0));
    },
  });

  let reported = '';
  const report = () => {
    const { ready, waitingFor } = relay.readiness();
    const state = JSON.stringify({ ready, waitingFor });
    if (state === reported) return;
    reported = state;
    void send({ [KIND]: 'readiness', ready, waitingFor });
  };
  report();
  const reporting = setInterval(report, READINESS_REPORT_MS);
  reporting.unref();

  const failure = await Promise.race([untilSignal.then(() => undefined), relay.failed]);
  clearInterval(reporting);
  await relay.close();
  await stop(failure && { [KIND]: 'fatal', message: failure.message });
  return failure ? 1 : 0;
}

/** Says a last word, if any, and lets go of the channel, so the process can end. */
async function stop(last: WorkerMessage | undefined): Promise<void> {
  if (last) await send(last);
  if (process.connected) cluster.worker!.disconnect();
}
