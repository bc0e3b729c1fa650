/** The relay's Prometheus metrics (DESIGN §7), on a registry of its own so several relays can share a process (tests). */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export function createRelayMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kube_relay_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'kube_relay_requests_total',
      help: 'Requests handled, by cluster, Kubernetes verb, HTTP code and decision.',
      labelNames: ['cluster', 'verb', 'code', 'decision'],
      registers,
    }),
    duration: new Histogram({
      name: 'kube_relay_request_duration_seconds',
      help: 'Time from request to the end of the response (or of the upgraded session).',
      labelNames: ['cluster', 'verb'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers,
    }),
    activeStreams: new Gauge({
      name: 'kube_relay_active_streams',
      help: 'Upgraded sessions (exec, attach, port-forward) and long-running requests open now.',
      labelNames: ['kind'],
      registers,
    }),
    bytes: new Counter({
      name: 'kube_relay_bytes_total',
      help: 'Body bytes relayed, by direction (in = from the client).',
      labelNames: ['direction'],
      registers,
    }),
    authFailures: new Counter({
      name: 'kube_relay_authentication_failures_total',
      help: 'Requests refused by the relay, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    policyRefusals: new Counter({
      name: 'kube_relay_policy_refusals_total',
      help: "Requests refused by the agent's policy (DESIGN §13), by rule: read-only, dry-run, deny, rate.",
      labelNames: ['rule'],
      registers,
    }),
    policyDryRuns: new Counter({
      name: 'kube_relay_policy_dry_runs_total',
      help: "Changes of dry-run agents forwarded with dryRun=All.",
      registers,
    }),
    /** Reads the forwarder's pool: call once it exists. */
    countUpstreamSessions(open: () => number): void {
      new Gauge({
        name: 'kube_relay_upstream_http2_sessions',
        help: 'HTTP/2 connections open to the API server (each carries many watches and other long-running requests; 0 while it speaks HTTP/1.1 only).',
        registers,
        collect() {
          this.set(open());
        },
      });
    },
  };
}

export type RelayMetrics = ReturnType<typeof createRelayMetrics>;
