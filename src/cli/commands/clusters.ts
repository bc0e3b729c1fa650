/** `kube-relay cluster …`: clusters, on the local store or through a remote issuer's admin API (DESIGN §2, §4, §6, §10). */
import type { ClusterStatus } from '../../control/cluster-status.js';
import type { ClusterView } from '../../control/views.js';
import { type CommandSpec, str, UsageError } from '../command.js';
import { isRemote, MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { deliverCreated, lifecycle, OUTPUT_FLAG, outputFormat, printJson, printList, table } from '../output.js';
import { OUT_FLAG } from '../secret-output.js';

const NAME = { name: 'NAME', description: 'The cluster name, a DNS label, unique across the issuer; tokens for it carry it as their audience.' };
const HEADER = ['NAME', 'ORG', 'STATUS'];
const row = (c: ClusterView) => [c.name, c.org, lifecycle(c)];
const LIST_HEADER = [...HEADER, 'CONNECTION'];

/** "2 relays, 1 ready" or "not connected since …": the CONNECTION of `cluster list`. */
function connection(status: ClusterStatus): string {
  if (!status.connected) return status.neverConnected ? 'never connected' : `not connected since ${status.notConnectedSince}`;
  const ready = status.relays.filter((r) => r.ready).length;
  return `${status.relays.length} relay${status.relays.length === 1 ? '' : 's'}, ${ready} ready`;
}

export const clusterCommands: CommandSpec[] = [
  {
    words: ['cluster', 'create'],
    summary: "Register a cluster and print its relay's connector key once.",
    synopsis: 'NAME --org ORG [--out FILE]',
    description:
      'The connector key (krl_cluster_…) lets the cluster\'s relay open tunnels to the hub; it is printed on stdout alone on its line (with --output json, as the connectorKey of the cluster object), or written to --out FILE, and never shown again. Only agents of the same org get tokens for the cluster. Names of revoked clusters stay reserved.',
    positionals: [NAME],
    flags: [
      { name: 'org', value: 'ORG', description: 'The org the cluster belongs to (a DNS label).', default: "with --issuer, the admin's org" },
      OUT_FLAG,
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: ['kube-relay cluster create prod-eu --org acme --out prod-eu.connector-key'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const org = str(values, 'org');
      if (org === undefined && !isRemote(values)) throw new UsageError('--org is required: the org the cluster belongs to');
      return withManagement(values, io, async (management) => {
        const { view, where } = await deliverCreated(io, values, 'connectorKey', async () => {
          const created = await management.createCluster({ name, org });
          return { view: created.cluster, key: created.connectorKey };
        });
        io.stderr(`cluster "${name}" created for org "${view.org}". The connector key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'list'],
    summary: 'List clusters with their org, state and connection.',
    synopsis: '',
    description: 'CONNECTION counts the relays connected to each active cluster (tunnels and direct-mode control channels, on every hub replica) and how many say they are ready; kube-relay cluster status NAME shows them one by one.',
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay cluster list'],
    run({ values }, io) {
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const clusters = await management.listClusters();
        if (format === 'json') {
          printList(io, format, clusters, HEADER, row);
          return 0;
        }
        const connections = await Promise.all(clusters.map(async (c) => (c.revokedAt ? '-' : connection(await management.clusterStatus(c.name)))));
        printList(io, format, clusters.map((c, i) => [...row(c), connections[i]!]), LIST_HEADER, (cells) => cells);
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'status'],
    summary: 'Show the relays connected to a cluster: mode, hub replica, version, since when, last heard, ready.',
    synopsis: 'NAME',
    description:
      'Every relay of the cluster connected to any hub replica: a tunnel, or the control channel of a direct-mode relay with a connector key. READY is what the relay last said, with its reason when it is not ready (its audit trail full, its API server unreachable…). A cluster with none is not connected since its last relay went (or since it was created).',
    positionals: [NAME],
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay cluster status prod-eu', 'kube-relay cluster status prod-eu --output json'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const status = await management.clusterStatus(name);
        if (format === 'json') printJson(io, status);
        else if (!status.connected) io.stdout(`cluster ${status.cluster}: ${status.neverConnected ? `never connected (created ${status.notConnectedSince})` : `not connected since ${status.notConnectedSince}`}\n`);
        else {
          io.stdout(`cluster ${status.cluster}: ${connection(status)}\n`);
          io.stdout(
            table(
              ['MODE', 'HUB REPLICA', 'VERSION', 'CONNECTED SINCE', 'LAST HEARD', 'READY'],
              status.relays.map((r) => [r.mode, r.hubReplica, r.version ?? '-', r.connectedSince, r.lastHeard, r.ready ? 'yes' : `no: ${r.reason}`]),
            ),
          );
        }
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'revoke'],
    summary: 'Revoke a cluster: its tunnels are closed and no tokens are minted for it.',
    synopsis: 'NAME',
    positionals: [NAME],
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay cluster revoke prod-eu'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const cluster = await management.revokeCluster(name);
        if (format === 'json') printJson(io, cluster);
        io.stderr(`cluster "${name}" revoked: the hub closes its tunnels within a second and mints no tokens for it.\n`);
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'rotate-key'],
    summary: 'Give a cluster a new connector key; tunnels opened with the old one are closed.',
    synopsis: 'NAME [--out FILE]',
    description:
      'The old key is refused at once and the hub closes the tunnels it opened within a second; the relay then exits with the reason. Update the relay\'s key (the chart\'s Secret) and restart it.',
    positionals: [NAME],
    flags: [OUT_FLAG, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay cluster rotate-key prod-eu --out prod-eu.connector-key.new'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      return withManagement(values, io, async (management) => {
        const { where } = await deliverCreated(io, values, 'connectorKey', async () => {
          const rotated = await management.rotateClusterKey(name);
          return { view: rotated.cluster, key: rotated.connectorKey };
        });
        io.stderr(`cluster "${name}" has a new connector key; relays using the old one are disconnected. The key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
];
