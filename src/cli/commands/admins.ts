/**
 * `kube-relay admin …` (DESIGN §10): admins, on the local store (as the
 * operator, every org in reach) or through a remote issuer's admin API (as
 * the admin whose key is given: an org admin manages its org's admins).
 */
import type { AdminView } from '../../control/views.js';
import { type CommandSpec, str, UsageError } from '../command.js';
import { MANAGEMENT_FLAGS, withManagement } from '../management.js';
import { deliverCreated, lifecycle, OUTPUT_FLAG, outputFormat, printJson, printList } from '../output.js';
import { OUT_FLAG } from '../secret-output.js';

const NAME = { name: 'NAME', description: 'The admin name, a DNS label, unique across the issuer; audit records of its changes name it.' };
const HEADER = ['NAME', 'ORG', 'STATUS'];
const row = (a: AdminView) => [a.name, a.org ?? '(all orgs)', lifecycle(a)];

export const adminCommands: CommandSpec[] = [
  {
    words: ['admin', 'create'],
    summary: 'Create an admin of one org or of all orgs and print its admin key once.',
    synopsis: 'NAME (--org ORG | --all-orgs) [--out FILE]',
    description:
      'The admin key (krl_admin_…) authenticates to the admin API of the issuer; it is printed on stdout alone on its line (with --output json, as the adminKey of the admin object), or written to --out FILE, and never shown again; only its HMAC is stored. An org admin sees and changes only its org\'s agents, clusters and admins; an all-orgs admin reaches every org. Names of revoked admins stay reserved.',
    positionals: [NAME],
    flags: [
      { name: 'org', value: 'ORG', description: 'The one org the admin manages (a DNS label).' },
      { name: 'all-orgs', description: 'An admin of every org, as the operator.' },
      OUT_FLAG,
      OUTPUT_FLAG,
      ...MANAGEMENT_FLAGS,
    ],
    examples: ['kube-relay admin create acme-platform --org acme --out acme-platform.admin-key', 'kube-relay admin create ops --all-orgs --out ops.admin-key'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      const org = str(values, 'org');
      const allOrgs = values['all-orgs'] === true;
      if (org !== undefined && allOrgs) throw new UsageError('--org and --all-orgs exclude each other: an admin is of one org or of all orgs');
      if (org === undefined && !allOrgs) throw new UsageError('--org ORG or --all-orgs is required: the org the admin manages, or every org');
      return withManagement(values, io, async (management) => {
        const { where } = await deliverCreated(io, values, 'adminKey', async () => {
          const created = await management.createAdmin({ name, org, allOrgs });
          return { view: created.admin, key: created.adminKey };
        });
        io.stderr(`admin "${name}" created for ${org === undefined ? 'all orgs' : `org "${org}"`}. The admin key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
  {
    words: ['admin', 'list'],
    summary: 'List admins with their org (or all orgs) and state.',
    synopsis: '',
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay admin list'],
    run({ values }, io) {
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        printList(io, format, await management.listAdmins(), HEADER, row);
        return 0;
      });
    },
  },
  {
    words: ['admin', 'revoke'],
    summary: 'Revoke an admin: its admin key is refused from now on.',
    synopsis: 'NAME',
    description: 'The admin API refuses the key on its next request. The name stays reserved.',
    positionals: [NAME],
    flags: [OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay admin revoke acme-platform'],
    run({ values, positionals }, io) {
      const name = positionals[0]!;
      const format = outputFormat(values);
      return withManagement(values, io, async (management) => {
        const admin = await management.revokeAdmin(name);
        if (format === 'json') printJson(io, admin);
        io.stderr(`admin "${name}" revoked: its admin key is refused from now on.\n`);
        return 0;
      });
    },
  },
  {
    words: ['admin', 'rotate-key'],
    summary: 'Give an admin a new admin key; the old one is refused at once.',
    synopsis: 'NAME [--out FILE]',
    positionals: [NAME],
    flags: [OUT_FLAG, OUTPUT_FLAG, ...MANAGEMENT_FLAGS],
    examples: ['kube-relay admin rotate-key acme-platform --out acme-platform.admin-key.new'],
    async run({ values, positionals }, io) {
      const name = positionals[0]!;
      return withManagement(values, io, async (management) => {
        const { where } = await deliverCreated(io, values, 'adminKey', async () => {
          const rotated = await management.rotateAdminKey(name);
          return { view: rotated.admin, key: rotated.adminKey };
        });
        io.stderr(`admin "${name}" has a new admin key; the old one is refused from now on. The key ${where} is shown only once.\n`);
        return 0;
      });
    },
  },
];
