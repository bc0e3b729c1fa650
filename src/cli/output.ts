/**
 * What management commands print (DESIGN §10): a table for people by
 * default, or with `--output json` the views of src/control/views.ts as
 * JSON, one document on stdout, stable for scripts. Confirmations go to
 * stderr in both, so stdout holds only the result.
 */
import { type FlagSpec, type Io, str, UsageError, type Values } from './command.js';
import { openSecretOutput } from './secret-output.js';

export const OUTPUT_FLAG: FlagSpec = {
  name: 'output',
  short: 'o',
  value: 'table|json',
  description: 'table for people, or json (the admin API\'s objects; lists as {"items": [...]}) for scripts.',
  default: 'table',
};

export type OutputFormat = 'table' | 'json';

export function outputFormat(values: Values): OutputFormat {
  const format = str(values, 'output') ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(`--output must be table or json, not "${format}"`);
  return format;
}

export function printList<T>(io: Io, format: OutputFormat, items: T[], header: string[], row: (item: T) => string[]): void {
  io.stdout(format === 'json' ? json({ items }) : table(header, items.map(row)));
}

export function printJson(io: Io, object: object): void {
  io.stdout(json(object));
}

/**
 * Makes an object with a new key and delivers the key once: with `--out FILE` to that file
 * (created before anything is made, so an unwritable path changes nothing), else on stdout,
 * alone on its line (table) or as `keyField` of the JSON object (json). Returns the view and
 * where the key went, for the confirmation.
 */
export async function deliverCreated<V extends object>(
  io: Io,
  values: Values,
  keyField: string,
  make: () => Promise<{ view: V; key: string }>,
): Promise<{ view: V; where: string }> {
  const format = outputFormat(values);
  const file = str(values, 'out');
  const out = file === undefined && format === 'json' ? undefined : openSecretOutput(file, io);
  let made: { view: V; key: string };
  try {
    made = await make();
  } catch (err) {
    out?.abandon();
    throw err;
  }
  if (out === undefined) {
    io.stdout(json({ ...made.view, [keyField]: made.key }));
    return { view: made.view, where: `(${keyField}) above` };
  }
  const where = out.write(made.key);
  if (format === 'json') io.stdout(json(made.view));
  return { view: made.view, where };
}

export function table(header: string[], rows: string[][]): string {
  return aligned([header, ...rows]);
}

/** Rows in columns two spaces apart, each line prefixed with `indent`; a row may have fewer cells than others. */
export function aligned(rows: string[][], indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => indent + row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** The STATUS of a revocable object. */
export function lifecycle(object: { revokedAt?: string }): string {
  return object.revokedAt ? `revoked ${object.revokedAt}` : 'active';
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
