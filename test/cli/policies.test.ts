/**
 * `kube-relay policy set|show|clear` (issue 19 item 1) on the local store and through the admin
 * API, with the same output on both; the table of show (each field on its line, an Effective
 * block for an agent); --now naming the agents whose tokens were cut; and every misuse a usage
 * error (exit 2) found before anything is opened or changed.
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';

let issuer: RunningIssuer;
let work: string;
let data: string;
let remote: string[];
let acmeRemote: string[];

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kube-relay-policies-cli-'));
  data = path.join(work, 'data');
  for (const args of [
    ['admin', 'create', 'root', '--all-orgs', '--out', path.join(work, 'root.admin-key')],
    ['admin', 'create', 'acme-platform', '--org', 'acme', '--out', path.join(work, 'acme.admin-key')],
    ['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--team', 'dev', '--out', path.join(work, 'deployer.api-key')],
    ['agent', 'create', 'g-bot', '--org', 'globex', '--team', 'sre', '--out', path.join(work, 'g-bot.api-key')],
  ]) {
    const result = await runCli([...args, '--data', data]);
    expect(result.code, result.stderr).toBe(0);
  }
  issuer = await startIssuer({ dataDir: data, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: path.join(work, 'audit.jsonl') }, log: createLogger('error') });
  const trust = ['--issuer', issuer.url, '--issuer-ca-file', issuer.caFile!];
  remote = [...trust, '--admin-key-file', path.join(work, 'root.admin-key')];
  acmeRemote = [...trust, '--admin-key-file', path.join(work, 'acme.admin-key')];
});
afterAll(async () => {
  await issuer?.close();
});

const local = () => ['--data', data];
const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;
/** Who and when differ between two changes; everything else must not. */
const unstamped = (view: Record<string, unknown>) => ({ ...view, updatedAt: typeof view.updatedAt, updatedBy: typeof view.updatedBy });

describe('policy set, show and clear on both paths', () => {
  it('set gives the same JSON locally and remotely, and show then reads the same on both', async () => {
    const flags = ['--deny', 'delete:pods@kube-system', '--deny', 'create:pods/exec', '--rate', '5/s', '--burst', '10', '--max-streams', '4', '-o', 'json'];
    const here = await runCli(['policy', 'set', '--team', 'acme/sre', ...flags, ...local()]);
    const there = await runCli(['policy', 'set', '--team', 'acme/sre', ...flags, ...acmeRemote]);
    expect([here.code, there.code], here.stderr + there.stderr).toEqual([0, 0]);
    expect(unstamped(json(there.stdout))).toEqual(unstamped(json(here.stdout)));
    expect(json(there.stdout)).toEqual({
      subject: { kind: 'team', name: 'acme/sre' },
      org: 'acme',
      policy: { readOnly: false, dryRun: false, deny: ['delete:pods@kube-system', 'create:pods/exec'], rate: { perSecond: 5, burst: 10 }, maxStreams: 4 },
      updatedAt: expect.stringMatching(/^\d{4}-/),
      updatedBy: 'admin:acme-platform',
    });
    expect(there.stderr).toBe('policy of team acme/sre set; tokens minted from now on carry the change; tokens already minted keep their policy until they expire (60 s) unless --now cuts them.\n');
    expect(there.stderr).toBe(here.stderr);

    await runCli(['policy', 'set', '--agent', 'deployer', '--read-only', '--rate', '20', ...local()]);
    for (const extra of [['-o', 'json'], []]) {
      const shownHere = await runCli(['policy', 'show', '--agent', 'deployer', ...extra, ...local()]);
      const shownThere = await runCli(['policy', 'show', '--agent', 'deployer', ...extra, ...remote]);
      expect(shownHere.code, shownHere.stderr).toBe(0);
      expect(shownThere).toEqual(shownHere);
    }
  });

  it('show prints each field on its line, the deny rules one a line, and for an agent what its tokens carry', async () => {
    const shown = (await runCli(['policy', 'show', '--agent', 'deployer', ...local()])).stdout;
    expect(shown).toMatch(
      new RegExp(
        [
          '^agent deployer \\(org acme\\)',
          '  read-only    yes',
          '  dry-run      no',
          '  deny         none',
          '  rate         20/s burst 20',
          "  max-streams  the relay's default",
          '  updated      \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z by operator',
          'Effective \\(with its teams\\):',
          '  read-only    yes',
          '  dry-run      no',
          '  deny         delete:pods@kube-system',
          '               create:pods/exec',
          '  rate         5/s burst 10',
          '  max-streams  4',
          '$',
        ].join('\n'),
      ),
    );
    expect((await runCli(['policy', 'show', '--team', 'acme/dev', ...local()])).stdout).toBe(
      ['team acme/dev (org acme)', '  read-only    no', '  dry-run      no', '  deny         none', '  rate         none', "  max-streams  the relay's default", '  updated      never: no policy of its own', ''].join('\n'),
    );
  });

  it('--now names the agents whose tokens were cut; clear removes the policy on both paths', async () => {
    const cut = await runCli(['policy', 'set', '--team', 'acme/dev', '--dry-run', '--now', '-o', 'json', ...acmeRemote]);
    expect(cut.code, cut.stderr).toBe(0);
    expect(json(cut.stdout).tokensCut).toEqual({ at: expect.stringMatching(/^\d{4}-/), agents: ['deployer'] });
    expect(cut.stderr).toMatch(/^policy of team acme\/dev set; tokens of agent:deployer cut at \S+: their live streams end and their next request needs a new token, which carries the change\.\n$/);
    const here = await runCli(['policy', 'clear', '--team', 'acme/dev', '-o', 'json', ...local()]);
    const there = await runCli(['policy', 'clear', '--team', 'acme/dev', '-o', 'json', ...remote]);
    expect(there).toEqual(here);
    expect(json(here.stdout)).toMatchObject({ policy: { dryRun: false }, updatedAt: null });
    expect((await runCli(['policy', 'clear', '--agent', 'deployer', ...local()])).stdout).toBe('');
  });

  it("refuses another org's agent (not found) and team (forbidden) through an org admin's key", async () => {
    expect(await runCli(['policy', 'show', '--agent', 'g-bot', ...acmeRemote])).toEqual({ code: 2, stdout: '', stderr: 'kube-relay: no agent named "g-bot"; see kube-relay agent list\n' });
    const team = await runCli(['policy', 'set', '--team', 'globex/sre', '--read-only', ...acmeRemote]);
    expect(team.code).toBe(2);
    expect(team.stderr).toBe('kube-relay: team "globex/sre" is of org "globex": admin "acme-platform" of org "acme" manages the policies of its own org\'s agents and teams only\n');
  });
});

describe('usage errors', () => {
  it.each([
    [['set', '--agent', 'deployer', '--team', 'acme/sre', '--read-only'], /^kube-relay: give one of --agent NAME and --team ORG\/TEAM/],
    [['set', '--read-only'], /^kube-relay: give one of --agent NAME and --team ORG\/TEAM/],
    [['show'], /^kube-relay: give one of --agent NAME and --team ORG\/TEAM/],
    [['clear', '--agent', 'deployer', '--team', 'acme/sre'], /^kube-relay: give one of --agent NAME and --team ORG\/TEAM/],
    [['set', '--team', 'sre', '--read-only'], /^kube-relay: team "sre" is not ORG\/TEAM/],
    [['set', '--agent', 'deployer', '--burst', '5'], /^kube-relay: --burst needs --rate N\/s/],
    [['set', '--agent', 'deployer', '--deny', 'remove:pods'], /^kube-relay: verb "remove" in a deny rule is not a Kubernetes verb/],
    [['set', '--agent', 'deployer', '--read-only', '--deny', 'delete:pods@Kube_System'], /^kube-relay: namespace "Kube_System" in a deny rule is not a namespace name or \*/],
    [['set', '--agent', 'deployer', '--rate', 'fast'], /^kube-relay: rate "fast" must be requests a second/],
    [['set', '--agent', 'deployer', '--rate', '5/s', '--burst', 'lots'], /^kube-relay: burst "lots" must be a whole number/],
    [['set', '--agent', 'deployer', '--max-streams', 'many'], /^kube-relay: --max-streams "many" is not a whole number/],
    [['set', '--agent', 'deployer'], /^kube-relay: policy set needs at least one brake/],
    [['set', '--agent', 'deployer', '--read-only', '-o', 'yaml'], /^kube-relay: --output must be table or json/],
    [['show', '--agent', 'deployer', '--now'], /^kube-relay: unknown flag --now/],
  ])('policy %j: exit 2, and nothing opened or changed on either path', async (args, message) => {
    const fresh = path.join(work, `never-${Math.random().toString(36).slice(2)}`);
    const here = await runCli(['policy', ...args, '--data', fresh]);
    expect(here.code).toBe(2);
    expect(here.stdout).toBe('');
    expect(here.stderr).toMatch(message);
    expect(here.stderr).toMatch(/Run "kube-relay policy (set|show|clear) --help" for usage\.\n$/);
    expect(existsSync(fresh)).toBe(false);
    expect(await runCli(['policy', ...args, ...remote])).toEqual(here);
  });

  it('left the policies as they were', async () => {
    const shown = json((await runCli(['policy', 'show', '--agent', 'deployer', '-o', 'json', ...local()])).stdout);
    expect(shown.policy).toEqual({ readOnly: false, dryRun: false, deny: [], rate: null, maxStreams: null });
    expect((shown.effective as { deny: string[] }).deny).toEqual(['delete:pods@kube-system', 'create:pods/exec']);
  });
});
