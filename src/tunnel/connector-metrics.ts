/** The relay's metrics of its tunnels (or, in direct mode, its control channels) to the hub (docs/http-api.md lists them). */
import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import type { MuxSession } from './mux.js';

export interface ConnectorMetrics {
  reconnects: Counter;
  rtt: Gauge;
}

/** What the gauges read when scraped. */
export interface ConnectorState {
  /** Hub replicas a tunnel is held to. */
  readonly heldReplicas: number;
  /** Hub replicas the last handshake told of. */
  readonly replicas: number;
  readonly sessions: ReadonlySet<MuxSession>;
}

export function registerConnectorMetrics(metrics: MetricsRegistry, state: ConnectorState): ConnectorMetrics {
  const registers = [metrics];
  new Gauge({
    name: 'kube_relay_tunnel_connected',
    help: 'Tunnels up (a direct-mode relay: control channels), one per hub replica reached (1 with a single hub).',
    registers,
    collect() {
      this.set(state.heldReplicas);
    },
  });
  new Gauge({
    name: 'kube_relay_tunnel_hub_replicas',
    help: 'Hub replicas the hub says there are; the relay keeps a tunnel to each.',
    registers,
    collect() {
      this.set(state.replicas);
    },
  });
  new Gauge({
    name: 'kube_relay_tunnel_open_streams',
    help: "Streams open on this relay's tunnels.",
    registers,
    collect() {
      this.set([...state.sessions].reduce((sum, session) => sum + session.openStreams, 0));
    },
  });
  return {
    reconnects: new Counter({ name: 'kube_relay_tunnel_reconnects_total', help: 'Tunnel connections dialled after the first.', registers }),
    rtt: new Gauge({ name: 'kube_relay_tunnel_rtt_seconds', help: 'Round trip of the last tunnel ping.', registers }),
  };
}
