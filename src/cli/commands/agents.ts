/** `kube-relay agent …`: agents, on the local store or through a remote issuer's admin API (DESIGN §2, §6, §10). */
import type { AgentView } from '../../control/views.js';
import { type CommandSpec, list, str, UsageError } from '../command.js';
import { isRemote, MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { deliverCreated, lifecycle, OUTPUT_FLAG, outputFormat, printJson, printList } from '../output.js';
import { OUT_FLAG } from '../secret-output.js';

const NAME = { name: 'NAME', description: 'The agent name, a DNS label; its Kubernetes user is agent:NAME.' };
const HEADER = ['NAME', 'ORG', 'TEAMS', 'STATUS'];
const row = (a: AgentView) => [a.name, a.org, a.teams.join(','), lifecycle(a)];

export const agentCommands: CommandSpec[] = [
  {
    words: ['agent', 'create'],
    summary: 'Create an agent and print its API key once.',
    synopsis: 'NAME --org ORG --team TEAM [--team TEAM]... [--out FILE]',
    description:
      'The agent acts on clusters as user agent:NAME with one group ORG/TEAM per team. Its API key (krl_agent_…) is printed on stdout alone on its line (with --output json, as the apiKey of the agent object), or written to --out FILE, and never shown again; only its HMAC is stored. Names of revoked agents stay reserved. Through --issuer, an org admin\'s agents are of its org (--org may be left out).',
    positionals: [NAME],
    flags: [
      { name: 'org', value: 'ORG', description: 'The org the agent belongs to (a DNS label).', default: "with --issuer, the admin's org" },
      { name: 'team', value: 'TEAM', multiple: true, description: 'A team of the agent in its org; gives the group ORG/TEAM.' },
      OUT_FLAG,
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: [
      'kube-relay agent create deployer --org acme --team sre --out deployer.api-key',
      'kube-relay agent create task-4711 --team agents --issuer https://issuer.example.com --admin-key-file acme-platform.admin-key --output json',
    ],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const org = str(values, 'org');
      if (org === undefined && !isRemote(values)) throw new UsageError('--org is required: the org the agent belongs to');
      const teams = list(values, 'team');
      if (teams.length === 0) throw new UsageError('--team is required: at least one team of the agent');
      return withManagement(values, io, async (management) => {
        const { view, where } = await deliverCreated(io, values, 'apiKey', async () => {
          const created = await management.createAgent({ name, org, teams });
          return { view: created.agent, key: created.apiKey };
        });
        io.stderr(`agent "${name}" created (user agent:${name}, groups ${view.teams.map((t) => `${view.org}/${t}`).join(', ')}). The API key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
  {
    words: ['agent', 'list'],
    summary: 'List agents with their org, teams and state.',
    synopsis: '',
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay agent list', 'kube-relay agent list --output json'],
    run({ values }, io) {
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        printList(io, format, await management.listAgents(), HEADER, row);
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
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay agent revoke deployer'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const agent = await management.revokeAgent(name);
        if (format === 'json') printJson(io, agent);
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
    flags: [OUT_FLAG, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay agent rotate-key deployer --out deployer.api-key.new'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      return withManagement(values, io, async (management) => {
        const { where } = await deliverCreated(io, values, 'apiKey', async () => {
          const rotated = await management.rotateAgentKey(name);
          return { view: rotated.agent, key: rotated.apiKey };
        });
        io.stderr(`agent "${name}" has a new API key; the old one is refused from now on. The key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
];
