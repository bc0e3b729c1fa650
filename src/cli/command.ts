/**
 * How every `kube-relay` command is declared and parsed (DESIGN §6).
 *
 * A command is data: its words, synopsis, flags (each with a description,
 * a default and an environment twin `KUBE_RELAY_<FLAG>`), examples and a
 * `run`. From that one declaration come the parser, `--help` and the CLI
 * reference in docs/cli.md, so the three cannot drift apart. As in
 * kubectl's Complete → Validate → Run, `run` validates everything before
 * its first side effect, and help is answered before `run` is called, so
 * `--help` can never act.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isLogLevel, LOG_LEVELS } from '../log.js';

export class UsageError extends Error {
  /** The command whose `--help` the message points to. */
  command?: string;
}

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface FlagSpec {
  name: string;
  /** The value's placeholder in help (`ORG`, `HOST:PORT`); none for a boolean flag. */
  value?: string;
  description: string;
  /** Shown in help and docs; the command applies it. */
  default?: string;
  multiple?: boolean;
  short?: string;
  /** Global flags and --help have no environment twin. */
  noEnv?: boolean;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  values: Values;
  positionals: string[];
}

export interface CommandSpec {
  /** The words that name it: ['agent', 'create']. */
  words: string[];
  summary: string;
  /** What follows the words in the synopsis: `NAME --org ORG --team TEAM...`. */
  synopsis: string;
  /** A paragraph or two for help and the reference. */
  description?: string;
  positionals?: { name: string; description: string; optional?: boolean }[];
  flags: FlagSpec[];
  examples: string[];
  run(parsed: Parsed, io: Io): Promise<number> | number;
}

export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'data', value: 'DIR', description: 'The data directory: store, keys, local CA.', default: './.kube-relay' },
  { name: 'log-level', value: 'LEVEL', description: 'debug, info, warn or error.', default: 'info' },
  { name: 'help', short: 'h', description: 'Print usage and do nothing else.', noEnv: true },
];

export function envName(flag: string): string {
  return `KUBE_RELAY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export function hasValue(flag: FlagSpec): boolean {
  return flag.value !== undefined;
}

/**
 * Parses a command's arguments strictly, with the global flags allowed
 * anywhere, and fills unset flags from their `KUBE_RELAY_<FLAG>` twins.
 */
export function parseCommandArgs(spec: CommandSpec, args: string[], io: Io): Parsed {
  const flags = [...GLOBAL_FLAGS, ...spec.flags];
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const flag of flags) {
    options[flag.name] = { type: hasValue(flag) ? 'string' : 'boolean', ...(flag.multiple ? { multiple: true } : {}), ...(flag.short ? { short: flag.short } : {}) };
  }
  let parsed: Parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true }) as Parsed;
  } catch (err) {
    throw new UsageError(describeParseError(err as Error & { code?: string }, spec, flags));
  }
  for (const flag of flags) {
    if (parsed.values[flag.name] !== undefined || flag.noEnv) continue;
    const fromEnv = io.env[envName(flag.name)];
    if (fromEnv === undefined || fromEnv === '') continue;
    if (!hasValue(flag)) parsed.values[flag.name] = envBoolean(flag.name, fromEnv);
    else parsed.values[flag.name] = flag.multiple ? fromEnv.split(',').map((v) => v.trim()) : fromEnv;
  }
  const level = str(parsed.values, 'log-level');
  if (level !== undefined && !isLogLevel(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`);
  const allowed = spec.positionals?.length ?? 0;
  if (parsed.positionals.length > allowed) throw new UsageError(`unexpected argument "${parsed.positionals[allowed]}" for "kube-relay ${spec.words.join(' ')}"`);
  for (const [index, positional] of (spec.positionals ?? []).entries()) {
    if (!positional.optional && parsed.positionals[index] === undefined) {
      throw new UsageError(`kube-relay ${spec.words.join(' ')} needs a ${positional.name}: ${positional.description}`);
    }
  }
  return parsed;
}

function envBoolean(flag: string, value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new UsageError(`${envName(flag)}="${value}" must be true or false`);
}

function describeParseError(err: Error & { code?: string }, spec: CommandSpec, flags: FlagSpec[]): string {
  const unknown = /^Unknown option '(-{1,2}[^']*)'/.exec(err.message)?.[1];
  if (unknown) {
    const name = unknown.replace(/^-+/, '').split('=')[0]!;
    const closest = closestName(name, flags.map((f) => f.name));
    return `unknown flag ${unknown} for "kube-relay ${spec.words.join(' ')}"${closest ? `; did you mean --${closest}?` : ''}`;
  }
  const missingValue = /^Option '(?:-\w, )?--([^ ]+) <value>' argument missing/.exec(err.message)?.[1];
  if (missingValue) return `--${missingValue} needs a value`;
  const unexpectedValue = /^Option '(?:-\w, )?--([^']+)' does not take an argument/.exec(err.message)?.[1];
  if (unexpectedValue) return `--${unexpectedValue} takes no value`;
  return err.message.split('. ')[0]!;
}

/** The candidate a mistyped name most likely meant: within two edits, or a prefix of it. */
export function closestName(name: string, candidates: string[]): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = candidate.startsWith(name) && name.length >= 2 ? 1 : editDistance(name, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

export function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function list(values: Values, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value : [];
}

export function required(values: Values, name: string, what: string): string {
  const value = str(values, name);
  if (value === undefined || value === '') throw new UsageError(`--${name} is required: ${what}`);
  return value;
}
