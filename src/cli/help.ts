/**
 * Usage text for the terminal and the CLI reference (docs/cli.md), both
 * rendered from the command declarations, so neither can miss a flag.
 */
import { type CommandSpec, envName, type FlagSpec, GLOBAL_FLAGS, hasValue } from './command.js';

export const EXIT_STATUSES: [string, string][] = [
  ['0', 'success (and every `--help`)'],
  ['1', 'failure: the command ran and something outside it failed (an issuer that refused, a file that could not be written, a relay that lost its upstream)'],
  ['2', 'misuse: an unknown command or flag, a missing or malformed value; nothing was done'],
];

function flagLabel(flag: FlagSpec): string {
  return `${flag.short ? `-${flag.short}, ` : ''}--${flag.name}${hasValue(flag) ? ` ${flag.value}` : ''}${flag.multiple ? ' (repeatable)' : ''}`;
}

function flagNotes(flag: FlagSpec): string {
  const notes: string[] = [];
  if (flag.default !== undefined) notes.push(`default ${flag.default}`);
  if (!flag.noEnv) notes.push(`env ${envName(flag.name)}`);
  return notes.length ? ` (${notes.join('; ')})` : '';
}

export function commandName(spec: CommandSpec): string {
  return `kube-relay ${spec.words.join(' ')}`;
}

/** `kube-relay agent create --help`. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: ${commandName(spec)} ${spec.synopsis}`.trimEnd(), '', spec.summary];
  if (spec.description) lines.push('', spec.description);
  if (spec.positionals?.length) {
    lines.push('', 'Arguments:');
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(28)} ${p.description}`);
  }
  if (spec.flags.length) {
    lines.push('', 'Flags:');
    for (const flag of spec.flags) lines.push(`  ${flagLabel(flag).padEnd(28)} ${flag.description}${flagNotes(flag)}`);
  }
  lines.push('', 'Global flags (before or after the command):');
  for (const flag of GLOBAL_FLAGS) lines.push(`  ${flagLabel(flag).padEnd(28)} ${flag.description}${flagNotes(flag)}`);
  lines.push('', spec.examples.length > 1 ? 'Examples:' : 'Example:', ...spec.examples.map((e) => `  ${e}`), '');
  return lines.join('\n');
}

/** `kube-relay --help`, or `kube-relay agent --help` for one group. */
export function overviewHelp(commands: CommandSpec[], version: string, group?: string): string {
  const shown = group ? commands.filter((c) => c.words[0] === group) : commands;
  const width = Math.max(...shown.map((c) => c.words.join(' ').length)) + 2;
  const lines = [
    group ? `Usage: kube-relay ${group} <action> [flags]` : `Usage: kube-relay <command> [flags]   (kube-relay ${version})`,
    '',
    'Commands:',
    ...shown.map((c) => `  ${c.words.join(' ').padEnd(width)} ${c.summary}`),
    '',
    'Global flags (before or after the command):',
    ...GLOBAL_FLAGS.map((flag) => `  ${flagLabel(flag).padEnd(width)} ${flag.description}${flagNotes(flag)}`),
    ...(group ? [] : [`  ${'--version'.padEnd(width)} Print the version.`]),
    '',
    `Every flag that takes a value has an environment twin KUBE_RELAY_<FLAG>, for example KUBE_RELAY_ISSUER_CA_FILE.`,
    `Run "kube-relay help <command>" or "kube-relay <command> --help" for one command's flags.`,
    '',
  ];
  return lines.join('\n');
}

/** The CLI reference, docs/cli.md: generated (`npm run docs:cli`), and a test holds it in step. */
export function referenceMarkdown(commands: CommandSpec[]): string {
  const md = (text: string) => text.replace(/\|/g, '\\|');
  const flagRow = (flag: FlagSpec) =>
    `| \`${flagLabel(flag)}\` | ${md(flag.description)} | ${flag.default !== undefined ? `\`${flag.default}\`` : ''} | ${flag.noEnv ? '' : `\`${envName(flag.name)}\``} |`;
  const out = [
    '# CLI reference',
    '',
    '<!-- Generated from src/cli/commands by `npm run docs:cli`; test/cli/reference.test.ts fails when it is out of date. -->',
    '',
    'One executable, `kube-relay` (`npx kube-relay …` from a checkout after `npm ci`).',
    '`kube-relay --help`, `kube-relay help COMMAND` and `--help`/`-h` anywhere in a command print usage and do nothing else; `kube-relay --version` prints the version.',
    'Errors go to stderr as a sentence, with a non-zero exit status.',
    '',
    '## Global flags',
    '',
    'Accepted before or after the command (`kube-relay --data DIR agent list` and `kube-relay agent list --data DIR` are the same).',
    '',
    '| flag | meaning | default | environment |',
    '|---|---|---|---|',
    ...GLOBAL_FLAGS.map(flagRow),
    '| `--version` | Print the version and do nothing else. |  |  |',
    '',
    'Every flag that takes a value has an environment twin `KUBE_RELAY_<FLAG>` (upper case, `-` as `_`); a flag on the command line wins over its twin.',
    'Boolean flags take `true` or `false` in their twin. Repeatable flags take a comma-separated list.',
    '',
    '## Exit status',
    '',
    '| status | meaning |',
    '|---|---|',
    ...EXIT_STATUSES.map(([code, meaning]) => `| ${code} | ${meaning} |`),
    '',
    '## Commands',
    '',
    ...commands.map((c) => `- [\`${commandName(c)}\`](#${anchor(c)}): ${c.summary}`),
    '',
  ];
  for (const spec of commands) {
    out.push(`### ${commandName(spec)}`, '', spec.summary, '', '```', `${commandName(spec)} ${spec.synopsis}`.trimEnd(), '```', '');
    if (spec.description) out.push(spec.description, '');
    if (spec.positionals?.length) {
      out.push('| argument | meaning |', '|---|---|', ...spec.positionals.map((p) => `| \`${p.name}\` | ${md(p.description)} |`), '');
    }
    if (spec.flags.length) out.push('| flag | meaning | default | environment |', '|---|---|---|---|', ...spec.flags.map(flagRow), '');
    out.push(spec.examples.length > 1 ? 'Examples:' : 'Example:', '', '```sh', ...spec.examples, '```', '');
  }
  return out.join('\n');
}

function anchor(spec: CommandSpec): string {
  return commandName(spec).replace(/ /g, '-');
}
