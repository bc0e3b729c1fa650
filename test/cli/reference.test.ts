/** docs/cli.md is the CLI reference users read: it must list every command and flag the parser takes. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envName, GLOBAL_FLAGS } from '../../src/cli/command.js';
import { COMMANDS } from '../../src/cli/commands/index.js';
import { commandHelp, referenceMarkdown } from '../../src/cli/help.js';

const reference = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');

/** The part of docs/cli.md under one command's heading. */
function section(words: string[]): string {
  const heading = `### kube-relay ${words.join(' ')}\n`;
  const start = reference.indexOf(heading);
  expect(start, `docs/cli.md has no section "${heading.trim()}"`).toBeGreaterThanOrEqual(0);
  const end = reference.indexOf('\n### ', start + heading.length);
  return reference.slice(start, end === -1 ? undefined : end);
}

describe('the CLI reference (docs/cli.md)', () => {
  it.each(COMMANDS.map((c) => [c.words.join(' '), c] as const))('documents every flag of "%s" with its environment twin', (_name, spec) => {
    const text = section(spec.words);
    for (const flag of spec.flags) {
      expect(text, `--${flag.name} of kube-relay ${spec.words.join(' ')}`).toContain(`--${flag.name}`);
      expect(text).toContain(envName(flag.name));
    }
  });

  it('documents the global flags', () => {
    for (const flag of GLOBAL_FLAGS) expect(reference).toContain(`--${flag.name}`);
    expect(reference).toContain('--version');
  });

  it('is exactly what `npm run docs:cli` renders from the command declarations', () => {
    expect(reference, 'docs/cli.md is out of date: run npm run docs:cli').toBe(referenceMarkdown(COMMANDS));
  });

  it.each(COMMANDS.map((c) => [c.words.join(' '), c] as const))('help for "%s" names each flag, its env twin and default, and an example', (_name, spec) => {
    const help = commandHelp(spec);
    for (const flag of spec.flags) {
      expect(help).toContain(`--${flag.name}`);
      expect(help).toContain(envName(flag.name));
      if (flag.default !== undefined) expect(help).toContain(`default ${flag.default}`);
    }
    expect(spec.examples.length).toBeGreaterThan(0);
    expect(help).toContain(spec.examples[0]!);
  });
});
