/** `kube-relay agent …`: agents on the local store (DESIGN §2, §6). */
import { OPERATOR } from '../../control/caller.js';
import * as ops from '../../control/operations.js';
import { type CommandSpec, list, required, UsageError } from '../command.js';
import { status, STORE_FLAGS, table, withRegistry } from '../local-store.js';
import { deliverNewKey, openSecretOutput, OUT_FLAG } from '../secret-output.js';

const NAME = { name: 'NAME', description: 'The agent name, a DNS label; its Kubernetes user is agent:NAME.' };

export const agentCommands: CommandSpec[] = [
  {
    words: ['agent', 'create'],
    summary: 'Create an agent and print its API key once.',
    synopsis: 'NAME --org ORG --team TEAM [--team TEAM]... [--out FILE]',
    description:
      'The agent acts on clusters as user agent:NAME with one group ORG/TEAM per team. Its API key (krl_agent_…) is printed on stdout alone on its line, or written to --out FILE, and never shown again; only its HMAC is stored. Names of revoked agents stay reserved.',
    positionals: [NAME],
    flags: [
      { name: 'org', value: 'ORG', description: 'The org the agent belongs to (a DNS label).' },
      { name: 'team', value: 'TEAM', multiple: true, description: 'A team of the agent in its org; gives the group ORG/TEAM.' },
      OUT_FLAG,
      ...STORE_FLAGS,
    ],
    examples: ['kube-relay agent create deployer --org acme --team sre --out deployer.api-key'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const org = required(values, 'org', 'the org the agent belongs to');
      const teams = list(values, 'team');
      if (teams.length === 0) throw new UsageError('--team is required: at least one team of the agent');
      const out = openSecretOutput(values.out as string | undefined, io);
      return withRegistry(values, io, async (registry) => {
        const where = await deliverNewKey(out, async () => (await ops.createAgent(registry, OPERATOR, { name, org, teams })).apiKey);
        io.stderr(`agent "${name}" created (user agent:${name}, groups ${teams.map((t) => `${org}/${t}`).join(', ')}). The API key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
  {
    words: ['agent', 'list'],
    summary: 'List agents with their org, teams and state.',
    synopsis: '',
    flags: [...STORE_FLAGS],
    examples: ['kube-relay agent list'],
    run({ values }, io) {
      return withRegistry(values, io, async (registry) => {
        const rows = (await ops.listAgents(registry, OPERATOR)).items.map((a) => [a.name, a.org, a.teams.join(','), status(a.revokedAt)]);
        io.stdout(table(['NAME', 'ORG', 'TEAMS', 'STATUS'], rows));
        return 0;
      });
    },
  },
  {
    words: ['agent', 'revoke'],
    summary: 'Revoke an agent: no new tokens, and relays refuse its current ones.',
    synopsis: 'NAME',
    description: 'Relays refuse the tokens the agent holds within 10 s (at once through a tunnel) and cut its live streams. The name stays reserved.',
    positionals: [NAME],
    flags: [...STORE_FLAGS],
    examples: ['kube-relay agent revoke deployer'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      return withRegistry(values, io, async (registry) => {
        await ops.revokeAgent(registry, OPERATOR, name);
        io.stderr(`agent "${name}" revoked: no new tokens; relays refuse its current ones within 10 s.\n`);
        return 0;
      });
    },
  },
  {
    words: ['agent', 'rotate-key'],
    summary: 'Give an agent a new API key; the old one is refused at once.',
    synopsis: 'NAME [--out FILE]',
    description: 'For a key that leaked or left with someone. Tokens already minted with the old key live out their 60 seconds; revoke the agent to cut those too.',
    positionals: [NAME],
    flags: [OUT_FLAG, ...STORE_FLAGS],
    examples: ['kube-relay agent rotate-key deployer --out deployer.api-key.new'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const out = openSecretOutput(values.out as string | undefined, io);
      return withRegistry(values, io, async (registry) => {
        const where = await deliverNewKey(out, async () => (await ops.rotateAgentKey(registry, OPERATOR, name)).apiKey);
        io.stderr(`agent "${name}" has a new API key; the old one is refused from now on. The key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
];
