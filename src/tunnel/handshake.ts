/**
 * What the relay and the hub say to each other when a tunnel opens (DESIGN
 * §4, §9): the path, the headers of the WebSocket handshake both ways, and
 * the close code of a revoked key. Both ends import them from here, so the
 * transport does not depend on either end.
 */

export const TUNNEL_PATH = '/v1/tunnel';
/** The relay states its --cluster in this header; the key decides, a mismatch is refused. */
export const CLUSTER_HEADER = 'x-kube-relay-cluster';
/** In the handshake's answer: which hub replica this is, and how many there are (DESIGN §9). */
export const HUB_REPLICA_HEADER = 'x-kube-relay-hub-replica';
export const HUB_REPLICAS_HEADER = 'x-kube-relay-hub-replicas';
/** WebSocket close code for a tunnel whose connector key was revoked while it was connected (4000-4999: private use). */
export const KEY_REVOKED_CLOSE_CODE = 4401;
/**
 * What the relay's connection is for: `tunnel` (the default when absent)
 * carries agents' requests; `control` (a direct-mode relay given a connector
 * key) carries only control messages, and the hub never routes a request to it.
 */
export const CHANNEL_HEADER = 'x-kube-relay-channel';
export type RelayChannel = 'tunnel' | 'control';
export const RELAY_CHANNELS: readonly RelayChannel[] = ['tunnel', 'control'];
/** The relay's kube-relay version (package.json), for the hub's cluster status. */
export const RELAY_VERSION_HEADER = 'x-kube-relay-version';
