/** `kube-relay cluster …`: clusters on the local store (DESIGN §2, §4, §6). */
import { OPERATOR } from '../../control/caller.js';
import * as ops from '../../control/operations.js';
import { type CommandSpec, required } from '../command.js';
import { status, STORE_FLAGS, table, withRegistry } from '../local-store.js';
import { deliverNewKey, openSecretOutput, OUT_FLAG } from '../secret-output.js';

const NAME = { name: 'NAME', description: 'The cluster name, a DNS label, unique across the issuer; tokens for it carry it as their audience.' };

export const clusterCommands: CommandSpec[] = [
  {
    words: ['cluster', 'create'],
    summary: "Register a cluster and print its relay's connector key once.",
    synopsis: 'NAME --org ORG [--out FILE]',
    description:
      'The connector key (krl_cluster_…) lets the cluster\'s relay open tunnels to the hub; it is printed on stdout alone on its line, or written to --out FILE, and never shown again. Only agents of the same org get tokens for the cluster. Names of revoked clusters stay reserved.',
    positionals: [NAME],
    flags: [{ name: 'org', value: 'ORG', description: 'The org the cluster belongs to (a DNS label).' }, OUT_FLAG, ...STORE_FLAGS],
    examples: ['kube-relay cluster create prod-eu --org acme --out prod-eu.connector-key'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const org = required(values, 'org', 'the org the cluster belongs to');
      const out = openSecretOutput(values.out as string | undefined, io);
      return withRegistry(values, io, async (registry) => {
        const where = await deliverNewKey(out, async () => (await ops.createCluster(registry, OPERATOR, { name, org })).connectorKey);
        io.stderr(`cluster "${name}" created for org "${org}". The connector key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'list'],
    summary: 'List clusters with their org and state.',
    synopsis: '',
    flags: [...STORE_FLAGS],
    examples: ['kube-relay cluster list'],
    run({ values }, io) {
      return withRegistry(values, io, async (registry) => {
        const rows = (await ops.listClusters(registry, OPERATOR)).items.map((c) => [c.name, c.org, status(c.revokedAt)]);
        io.stdout(table(['NAME', 'ORG', 'STATUS'], rows));
        return 0;
      });
    },
  },
  {
    words: ['cluster', 'revoke'],
    summary: 'Revoke a cluster: its tunnels are closed and no tokens are minted for it.',
    synopsis: 'NAME',
    positionals: [NAME],
    flags: [...STORE_FLAGS],
    examples: ['kube-relay cluster revoke prod-eu'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      return withRegistry(values, io, async (registry) => {
        await ops.revokeCluster(registry, OPERATOR, name);
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
    flags: [OUT_FLAG, ...STORE_FLAGS],
    examples: ['kube-relay cluster rotate-key prod-eu --out prod-eu.connector-key.new'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const out = openSecretOutput(values.out as string | undefined, io);
      return withRegistry(values, io, async (registry) => {
        const where = await deliverNewKey(out, async () => (await ops.rotateClusterKey(registry, OPERATOR, name)).connectorKey);
        io.stderr(`cluster "${name}" has a new connector key; relays using the old one are disconnected. The key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
];
