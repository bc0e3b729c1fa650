/**
 * The `kube-relay` command line (DESIGN §6). Thin: it finds the command in
 * the arguments (global flags may stand before or after it), answers
 * `--help`, `help COMMAND` and `--version` without running anything, and
 * hands the rest to the command's declaration (src/cli/commands). Misuse
 * prints a sentence on stderr and exits 2; failures exit 1.
 */
import { version } from '../version.js';
import { InvalidInputError } from '../issuer/errors.js';
import { AlreadyExistsError } from '../issuer/store/types.js';
import { UpstreamConfigError } from '../relay/upstream.js';
import { closestName, type CommandSpec, GLOBAL_FLAGS, hasValue, type Io, parseCommandArgs, UsageError } from './command.js';
import { COMMANDS } from './commands/index.js';
import { commandHelp, overviewHelp } from './help.js';

export { UsageError, type Io } from './command.js';

const defaultIo: Io = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`kube-relay: ${err.message}\nRun "kube-relay ${err.command ? `${err.command} ` : ''}--help" for usage.\n`);
      return 2;
    }
    if (err instanceof InvalidInputError || err instanceof AlreadyExistsError) {
      io.stderr(`kube-relay: ${err.message}\n`);
      return 2;
    }
    if (err instanceof UpstreamConfigError) {
      io.stderr(`kube-relay: ${err.message}\n`);
      return 1;
    }
    io.stderr(`kube-relay: ${(err as Error).message}\n`);
    return 1;
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  const { words, rest, help } = splitCommandWords(argv);
  if (words[0] === 'help') return printHelp(words.slice(1), io);
  if (words.length === 0) {
    if (help) return printHelp([], io);
    if (rest.includes('--version')) {
      io.stdout(`kube-relay ${version()}\n`);
      return 0;
    }
    throw new UsageError('a command is required');
  }
  if (help) return printHelp(words, io);
  const spec = findCommand(words);
  try {
    return await spec.run(parseCommandArgs(spec, rest, io), io);
  } catch (err) {
    if (err instanceof UsageError) err.command ??= spec.words.join(' ');
    throw err;
  }
}

/** Commands that take an action word after them: `agent create`. */
function groupOf(word: string): CommandSpec[] {
  return COMMANDS.filter((c) => c.words[0] === word && c.words.length > 1);
}

/**
 * Takes the command's words out of the arguments wherever the global flags
 * put them (`kube-relay --data D agent create x` is `agent create x
 * --data D`), and notes a `--help`/`-h` standing anywhere before `--`.
 * Flags that take a value are skipped with it, so `--org acme` is never
 * read as an action.
 */
function splitCommandWords(argv: string[]): { words: string[]; rest: string[]; help: boolean } {
  const words: string[] = [];
  const rest: string[] = [];
  let help = false;
  let wanted = 1;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg.startsWith('-')) {
      rest.push(arg);
      if (!arg.includes('=') && takesValue(arg, words) && i + 1 < argv.length) rest.push(argv[++i]!);
      continue;
    }
    if (words.length < wanted) {
      words.push(arg);
      if (words.length === 1 && (groupOf(arg).length > 0 || arg === 'help')) wanted = arg === 'help' ? 3 : 2;
      const isAction = groupOf(words[0]!).some((c) => c.words[1] === arg);
      if (words.length === 2 && words[0] !== 'help' && !isAction && COMMANDS.some((c) => c.words.join(' ') === words[0])) {
        // `issuer --listen …` has no action word: this is a positional of the command itself.
        words.pop();
        rest.push(arg);
        wanted = 1;
      }
      continue;
    }
    rest.push(arg);
  }
  return { words, rest, help };
}

function takesValue(arg: string, words: string[]): boolean {
  const name = arg.replace(/^-+/, '');
  const candidates = [...GLOBAL_FLAGS, ...COMMANDS.filter((c) => c.words[0] === words[0]).flatMap((c) => c.flags)];
  return candidates.some((flag) => (flag.name === name || flag.short === name) && hasValue(flag));
}

function findCommand(words: string[]): CommandSpec {
  const exact = COMMANDS.find((c) => c.words.join(' ') === words.join(' '));
  if (exact) return exact;
  const group = groupOf(words[0]!);
  if (group.length > 0) {
    const actions = group.map((c) => c.words[1]!);
    if (words.length === 1) throw new UsageError(`${words[0]} needs an action: ${actions.join(', ')}`);
    const closest = closestName(words[1]!, actions);
    throw new UsageError(`unknown action "${words[1]}" for "kube-relay ${words[0]}"${closest ? `; did you mean "${closest}"?` : `: use ${actions.join(', ')}`}`);
  }
  const closest = closestName(words[0]!, [...new Set(COMMANDS.map((c) => c.words[0]!))]);
  throw new UsageError(`unknown command "${words[0]}"${closest ? `; did you mean "${closest}"?` : ''}`);
}

function printHelp(words: string[], io: Io): number {
  if (words.length === 0) io.stdout(overviewHelp(COMMANDS, version()));
  else if (words.length === 1 && groupOf(words[0]!).length > 0 && !COMMANDS.some((c) => c.words.join(' ') === words[0])) {
    io.stdout(overviewHelp(COMMANDS, version(), words[0]));
  } else io.stdout(commandHelp(findCommand(words)));
  return 0;
}
