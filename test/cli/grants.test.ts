/**
 * `kube-relay grant add|list|remove` (issue 17 item 1) on the local store and through the admin
 * API (`/v1/grants`), with the same output on both: the id printed on add, each grant's state in
 * `grant list`, filters, the org rules (another org's cluster or grant is not found), refusals
 * with a sentence and nothing stored, and an audit record of kind "admin" for each change made
 * through the API.
 */
import { readFileSync } from 'node:fs';
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
let auditFile: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kube-relay-grants-cli-'));
  data = path.join(work, 'data');
  auditFile = path.join(work, 'hub-audit.jsonl');
  for (const args of [
    ['admin', 'create', 'root', '--all-orgs', '--out', path.join(work, 'root.admin-key')],
    ['admin', 'create', 'acme-platform', '--org', 'acme', '--out', path.join(work, 'acme.admin-key')],
    ['cluster', 'create', 'prod', '--org', 'acme', '--out', path.join(work, 'prod.connector-key')],
    ['cluster', 'create', 'g-prod', '--org', 'globex', '--out', path.join(work, 'g-prod.connector-key')],
    ['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--out', path.join(work, 'deployer.api-key')],
  ]) {
    const result = await runCli([...args, '--data', data]);
    expect(result.code, result.stderr).toBe(0);
  }
  issuer = await startIssuer({ dataDir: data, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, audit: { file: auditFile }, log: createLogger('error') });
  const trust = ['--issuer', issuer.url, '--issuer-ca-file', issuer.caFile!];
  remote = [...trust, '--admin-key-file', path.join(work, 'root.admin-key')];
  acmeRemote = [...trust, '--admin-key-file', path.join(work, 'acme.admin-key')];
});
afterAll(async () => {
  await issuer?.close();
});

const local = () => ['--data', data];
const ids: string[] = [];

describe('grant add', () => {
  it('prints the new grant id alone on stdout, locally and remotely, with the same sentence', async () => {
    const here = await runCli(['grant', 'add', '--cluster', 'prod', '--group', 'acme/sre', '--role', 'view', ...local()]);
    const there = await runCli(['grant', 'add', '--cluster', 'prod', '--agent', 'deployer', '--role', 'edit', '--namespace', 'web', '--expires', '8h', ...acmeRemote]);
    expect([here.code, there.code], here.stderr + there.stderr).toEqual([0, 0]);
    expect(here.stdout).toMatch(/^[a-z0-9]{12}\n$/);
    expect(there.stdout).toMatch(/^[a-z0-9]{12}\n$/);
    ids.push(here.stdout.trim(), there.stdout.trim());
    expect(here.stderr).toBe(`grant ${ids[0]} added: role view to group acme/sre on cluster prod; pending until the cluster's relay applies it (grant list shows its state).\n`);
    expect(there.stderr).toMatch(new RegExp(`^grant ${ids[1]} added: role edit to agent:deployer on cluster prod in namespace web until \\d{4}-\\d\\d-\\d\\dT[^ ]+Z; pending`));
  });

  it.each([
    [['--cluster', 'prod', '--group', 'acme/sre', '--role', 'view'], 2, /^kube-relay: grant [a-z0-9]{12} already gives role view to group acme\/sre on cluster prod: remove it first/],
    [['--cluster', 'prod', '--agent', 'deployer', '--role', 'superuser'], 2, /^kube-relay: role "superuser" is not grantable on cluster "prod": use one of cluster-admin, admin, edit, view/],
    [['--cluster', 'prod', '--agent', 'deployer', '--role', 'cluster-admin'], 2, /--i-understand-cluster-admin/],
    [['--cluster', 'prod', '--group', 'globex/ops', '--role', 'view'], 2, /a grant joins a cluster and a grantee of one org/],
    [['--cluster', 'prod', '--agent', 'deployer', '--role', 'view', '--expires', '31d'], 2, /^kube-relay: a grant may last at most 30d on this issuer/],
    [['--cluster', 'prod', '--agent', 'deployer', '--role', 'view', '--namespace', 'No_Such'], 2, /is not a Kubernetes namespace name/],
    [['--cluster', 'nowhere', '--agent', 'deployer', '--role', 'view'], 2, /^kube-relay: no cluster named "nowhere"/],
  ])('%j is refused alike on both paths, nothing stored', async (args, code, message) => {
    const here = await runCli(['grant', 'add', ...args, ...local()]);
    const there = await runCli(['grant', 'add', ...args, ...remote]);
    expect(here.code).toBe(code);
    expect(here.stderr).toMatch(message);
    expect(there).toEqual(here);
  });

  it('usage errors before anything is done', async () => {
    expect((await runCli(['grant', 'add', '--cluster', 'prod', '--agent', 'deployer', ...local()])).stderr).toMatch(/^kube-relay: --role is required/);
    expect((await runCli(['grant', 'add', '--cluster', 'prod', '--agent', 'deployer', '--role', 'view', '--expires', 'soon', ...local()])).stderr).toMatch(/--expires "soon" is not a duration/);
    expect((await runCli(['grant', 'add', '--cluster', 'prod', '--agent', 'deployer', '--role', 'view', '--max-grant-duration', '1h', ...remote])).stderr).toMatch(/--max-grant-duration applies to the local store/);
    const cut = await runCli(['grant', 'add', '--cluster', 'prod', '--agent', 'deployer', '--role', 'view', '--expires', '2h', '--max-grant-duration', '1h', ...local()]);
    expect(cut.stderr).toMatch(/at most 1h on this issuer/);
  });
});

describe('grant list and remove', () => {
  it('list prints the same table and JSON on both paths, and filters', async () => {
    for (const extra of [[], ['-o', 'json'], ['--agent', 'deployer'], ['--group', 'acme/sre'], ['--cluster', 'prod']]) {
      const here = await runCli(['grant', 'list', ...extra, ...local()]);
      const there = await runCli(['grant', 'list', ...extra, ...remote]);
      expect(here.code, here.stderr).toBe(0);
      expect(there).toEqual(here);
    }
    const table = (await runCli(['grant', 'list', ...local()])).stdout.split('\n');
    expect(table[0]).toMatch(/^ID\s+CLUSTER\s+GRANTEE\s+ROLE\s+NAMESPACE\s+EXPIRES\s+STATE$/);
    expect(table.find((line) => line.startsWith(ids[0]!))).toMatch(/prod\s+group:acme\/sre\s+view\s+\(all\)\s+never\s+pending$/);
    const json = JSON.parse((await runCli(['grant', 'list', '--agent', 'deployer', '-o', 'json', ...local()])).stdout) as { items: Record<string, unknown>[] };
    expect(json.items).toEqual([{ id: ids[1], cluster: 'prod', org: 'acme', agent: 'deployer', role: 'edit', namespace: 'web', expiresAt: expect.any(String), createdAt: expect.any(String), createdBy: 'admin:acme-platform', state: 'pending' }]);
  });

  it("an org admin sees its org's grants only and gets 'not found' for another org's", async () => {
    const globex = await runCli(['grant', 'add', '--cluster', 'g-prod', '--group', 'globex/ops', '--role', 'view', ...local()]);
    const id = globex.stdout.trim();
    expect((await runCli(['grant', 'list', ...acmeRemote])).stdout).not.toContain(id);
    expect(await runCli(['grant', 'remove', id, ...acmeRemote])).toEqual({ code: 2, stdout: '', stderr: `kube-relay: no grant "${id}"; see kube-relay grant list\n` });
    expect((await runCli(['grant', 'list', '--cluster', 'g-prod', ...acmeRemote])).stderr).toBe('kube-relay: no cluster named "g-prod"; see kube-relay cluster list\n');
    expect((await runCli(['grant', 'list', ...local()])).stdout).toContain(id);
  });

  it('remove takes the grant away on both paths', async () => {
    const here = await runCli(['grant', 'remove', ids[0]!, ...local()]);
    const there = await runCli(['grant', 'remove', ids[1]!, '-o', 'json', ...acmeRemote]);
    expect(here).toEqual({ code: 0, stdout: '', stderr: `grant ${ids[0]} removed: the relay of cluster prod deletes its binding.\n` });
    expect(JSON.parse(there.stdout)).toMatchObject({ id: ids[1], role: 'edit' });
    const listed = (await runCli(['grant', 'list', '--cluster', 'prod', ...local()])).stdout;
    expect(listed).not.toContain(ids[0]);
    expect(listed).not.toContain(ids[1]);
  });

  it('the API records each change as kind "admin" with the grant as object', async () => {
    const deadline = Date.now() + 5000;
    let records: { admin: string; action: string; object: { kind: string; name: string } }[] = [];
    while (records.length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      records = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.kind === 'admin' && r.object.kind === 'grant');
    }
    expect(records.map((r) => `${r.admin} ${r.action} ${r.object.name}`)).toEqual([`acme-platform create ${ids[1]}`, `acme-platform remove ${ids[1]}`]);
  });
});

describe('role list', () => {
  it('shows the built-in roles, the same on both paths, and another org\'s cluster is not found', async () => {
    const here = await runCli(['role', 'list', '--cluster', 'prod', ...local()]);
    const there = await runCli(['role', 'list', '--cluster', 'prod', ...acmeRemote]);
    expect(here.code, here.stderr).toBe(0);
    expect(there).toEqual(here);
    expect(here.stdout.split('\n')[0]).toMatch(/^ROLE\s+CLUSTERROLE\s+SOURCE$/);
    expect(here.stdout).toMatch(/^exec\s+kube-relay-exec\s+built-in$/m);
    const json = JSON.parse((await runCli(['role', 'list', '--cluster', 'prod', '-o', 'json', ...local()])).stdout) as { builtIn: { name: string }[]; custom: unknown[] };
    expect(json.builtIn.map((r) => r.name)).toEqual(['cluster-admin', 'admin', 'edit', 'view', 'logs', 'exec', 'port-forward', 'read-only']);
    expect(json.custom).toEqual([]);
    expect((await runCli(['role', 'list', '--cluster', 'g-prod', ...acmeRemote])).stderr).toBe('kube-relay: no cluster named "g-prod"; see kube-relay cluster list\n');
  });
});
