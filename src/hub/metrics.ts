/** The hub's gauges of its tunnels, by cluster (docs/http-api.md lists them). */
import { Gauge, type Registry as MetricsRegistry } from 'prom-client';
import type { MuxSession } from '../tunnel/mux.js';

export interface TunnelGauges {
  /** Counted up and down as tunnels come and go. */
  connected: Gauge;
}

/**
 * The gauges of the tunnels in `tunnels` and the control channels in
 * `controlChannels` (cluster → its sessions); all but `connected` are read
 * from the sessions when scraped.
 */
export function registerTunnelGauges(metrics: MetricsRegistry, tunnels: ReadonlyMap<string, readonly MuxSession[]>, controlChannels: ReadonlyMap<string, readonly MuxSession[]>): TunnelGauges {
  const registers = [metrics];
  const connected = new Gauge({ name: 'kube_relay_tunnel_connected', help: 'Relay tunnels connected to this hub, by cluster.', labelNames: ['cluster'], registers });
  new Gauge({
    name: 'kube_relay_control_channels_connected',
    help: 'Control channels of direct-mode relays connected to this hub, by cluster (they carry no requests).',
    labelNames: ['cluster'],
    registers,
    collect() {
      this.reset();
      for (const [cluster, sessions] of controlChannels) this.set({ cluster }, sessions.length);
    },
  });
  const perCluster = (name: string, help: string, measure: (session: MuxSession) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const [cluster, sessions] of tunnels) this.set({ cluster }, sessions.reduce((sum, session) => sum + measure(session), 0));
      },
    });
  perCluster('kube_relay_tunnel_open_streams', 'Streams open on the tunnels connected to this hub, by cluster.', (session) => session.openStreams);
  perCluster(
    'kube_relay_tunnel_send_buffer_bytes',
    "Bytes the hub has handed to the tunnels' WebSockets that their connections have not written out yet, by cluster: about 2 MiB a tunnel at most, as streams wait above that.",
    (session) => session.bufferedBytes,
  );
  return { connected };
}
