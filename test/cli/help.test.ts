/**
 * Help never acts (issue 13): `--help`/`-h` anywhere, `help COMMAND` and
 * `--version` print and exit 0 having changed nothing, whatever else the
 * arguments say; global flags work before or after the command; a mistyped
 * flag or command gets a suggestion.
 */
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/commands/index.js';
import { runCli } from '../helpers/cli.js';

const fresh = () => path.join(mkdtempSync(path.join(tmpdir(), 'kube-relay-help-')), 'data');

describe('--help never acts', () => {
  it.each([
    ['issuer rotate-keys --help', ['issuer', 'rotate-keys', '--help']],
    ['agent create … --help (last)', ['agent', 'create', 'helpdemo', '--org', 'acme', '--team', 'x', '--help']],
    ['agent create -h … (first flag)', ['agent', 'create', '-h', 'helpdemo', '--org', 'acme', '--team', 'x']],
    ['agent revoke NAME --help', ['agent', 'revoke', 'helpdemo', '--help']],
    ['agent rotate-key NAME --help', ['agent', 'rotate-key', 'helpdemo', '--help']],
    ['cluster create … --help', ['cluster', 'create', 'dev', '--org', 'acme', '--help']],
    ['cluster revoke NAME -h', ['cluster', 'revoke', 'dev', '-h']],
    ['--help before the command', ['--help', 'agent', 'create', 'helpdemo', '--org', 'acme', '--team', 'x']],
    ['help agent create', ['help', 'agent', 'create']],
  ])('%s prints usage, exits 0 and leaves no data directory', async (_name, args) => {
    const data = fresh();
    const result = await runCli([...args, '--data', data]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: kube-relay /);
    expect(result.stderr).toBe('');
    expect(existsSync(data), `${data} was created`).toBe(false);
  });

  it('issuer --help does not listen (its port is taken, and it still exits 0)', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const result = await runCli(['issuer', '--listen', `127.0.0.1:${port}`, '--help', '--data', fresh()]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Usage: kube-relay issuer');
      expect(result.stdout).toContain('--listen HOST:PORT');
      expect(result.stderr).not.toContain('EADDRINUSE');
    } finally {
      taken.close();
    }
  });

  it('relay --help prints its usage instead of "--cluster is required"', async () => {
    const result = await runCli(['relay', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: kube-relay relay');
    expect(result.stdout).toContain('KUBE_RELAY_CONNECTOR_KEY_FILE');
    expect(result.stdout).toContain('default 4h');
  });

  it.each(COMMANDS.map((c) => [c.words.join(' ')]))('kube-relay %s --help shows that command: synopsis, flags, an example', async (words) => {
    const spec = COMMANDS.find((c) => c.words.join(' ') === words)!;
    const result = await runCli([...spec.words, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[0]).toBe(`Usage: kube-relay ${words} ${spec.synopsis}`.trimEnd());
    for (const flag of spec.flags) expect(result.stdout).toContain(`--${flag.name}`);
    expect(result.stdout).toMatch(/Examples?:\n {2}kube-relay|Examples?:\n {2}KUBE_RELAY/);
  });

  it('kube-relay --help and kube-relay agent --help list the commands', async () => {
    const all = await runCli(['--help']);
    expect(all.code).toBe(0);
    for (const spec of COMMANDS) expect(all.stdout).toContain(spec.words.join(' '));
    const agent = await runCli(['agent', '--help']);
    expect(agent.code).toBe(0);
    expect(agent.stdout).toContain('agent rotate-key');
    expect(agent.stdout).not.toContain('cluster create');
  });

  it('--version prints the package version', async () => {
    const { version } = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };
    const result = await runCli(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `kube-relay ${version}\n` });
  });
});

describe('global flags before or after the command', () => {
  it('kube-relay --data DIR cluster create … works as with --data after it', async () => {
    const data = fresh();
    const created = await runCli(['--data', data, 'cluster', 'create', 'dev', '--org', 'acme']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^krl_cluster_/);
    const listed = await runCli(['cluster', '--log-level', 'warn', 'list', '--data', data]);
    expect(listed.stdout).toMatch(/dev\s+acme\s+active/);
    const between = await runCli(['--log-level=warn', 'agent', '--data', data, 'create', 'bot', '--org', 'acme', '--team', 'sre']);
    expect(between.code, between.stderr).toBe(0);
    expect(readdirSync(data)).toContain('issuer.db');
  });

  it('KUBE_RELAY_DATA is the twin of --data', async () => {
    const data = fresh();
    expect((await runCli(['cluster', 'create', 'dev', '--org', 'acme'], { KUBE_RELAY_DATA: data })).code).toBe(0);
    expect((await runCli(['cluster', 'list', '--data', data])).stdout).toContain('dev');
  });
});

describe('mistakes get a sentence to act on (exit 2)', () => {
  it.each([
    ['a mistyped flag', ['agent', 'list', '--dta', '/tmp/x'], 'unknown flag --dta for "kube-relay agent list"; did you mean --data?'],
    ['a mistyped action', ['agent', 'lst'], 'unknown action "lst" for "kube-relay agent"; did you mean "list"?'],
    ['a mistyped command', ['clustr', 'list'], 'unknown command "clustr"; did you mean "cluster"?'],
    ['a group without its action', ['cluster'], 'cluster needs an action: create, list, status, revoke, rotate-key'],
    ['a flag without its value', ['agent', 'create', 'x', '--team', 'a', '--org'], '--org needs a value'],
    ['a boolean flag given a value', ['token', '--raw=yes'], '--raw takes no value'],
  ])('%s', async (_name, args, message) => {
    const result = await runCli(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`kube-relay: ${message}`);
    expect(result.stderr).toMatch(/Run "kube-relay .*--help" for usage/);
    expect(result.stdout).toBe('');
  });
});
