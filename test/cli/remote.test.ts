/**
 * The remote CLI (issue 16 item 3): `agent`, `cluster` and `admin` given `--issuer URL` and an
 * admin key act through the admin API, and print exactly what they print on the local store
 * (same tables, same JSON, same refusals and exit codes), because both paths end in the same
 * control operation and print the same views. An org admin's remote CLI sees only its org. The
 * flags that pick a path are checked before anything is done; `token --agent` mints with an
 * admin key.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { openStore } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';

let issuer: RunningIssuer;
let data: string;
let work: string;
let remote: string[];
let acmeRemote: string[];

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kube-relay-remote-cli-'));
  data = path.join(work, 'data');
  const root = await runCli(['admin', 'create', 'root', '--all-orgs', '--out', path.join(work, 'root.admin-key'), '--data', data]);
  expect(root.code, root.stderr).toBe(0);
  const acme = await runCli(['admin', 'create', 'acme-platform', '--org', 'acme', '--out', path.join(work, 'acme.admin-key'), '--data', data]);
  expect(acme.code, acme.stderr).toBe(0);
  issuer = await startIssuer({ dataDir: data, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  const trust = ['--issuer', issuer.url, '--issuer-ca-file', issuer.caFile!];
  remote = [...trust, '--admin-key-file', path.join(work, 'root.admin-key')];
  acmeRemote = [...trust, '--admin-key-file', path.join(work, 'acme.admin-key')];
});
afterAll(async () => {
  await issuer?.close();
});

const local = () => ['--data', data];

describe('the same command on the local store and through the admin API', () => {
  it('creating prints the key alone on stdout and the same sentence on stderr', async () => {
    const here = await runCli(['agent', 'create', 'local-made', '--org', 'acme', '--team', 'sre', ...local()]);
    const there = await runCli(['agent', 'create', 'remote-made', '--org', 'acme', '--team', 'sre', ...remote]);
    expect([here.code, there.code], here.stderr + there.stderr).toEqual([0, 0]);
    expect(there.stdout).toMatch(/^krl_agent_[A-Za-z0-9_-]{43}\n$/);
    expect(there.stderr.replaceAll('remote-made', 'local-made')).toBe(here.stderr);
    const clusterHere = await runCli(['cluster', 'create', 'c-local', '--org', 'acme', ...local()]);
    const clusterThere = await runCli(['cluster', 'create', 'c-remote', '--org', 'acme', ...remote]);
    expect(clusterThere.stdout).toMatch(/^krl_cluster_[A-Za-z0-9_-]{43}\n$/);
    expect(clusterThere.stderr.replaceAll('c-remote', 'c-local')).toBe(clusterHere.stderr);
    const adminThere = await runCli(['admin', 'create', 'ci-bot', '--org', 'acme', ...remote]);
    expect(adminThere.code, adminThere.stderr).toBe(0);
    expect(adminThere.stdout).toMatch(/^krl_admin_/);
  });

  it.each([
    [['agent', 'list']],
    [['agent', 'list', '--output', 'json']],
    [['cluster', 'list']],
    [['cluster', 'list', '-o', 'json']],
    [['admin', 'list']],
    [['admin', 'list', '--output', 'json']],
  ])('%j prints the same on both paths', async (command) => {
    const here = await runCli([...command, ...local()]);
    const there = await runCli([...command, ...remote]);
    expect(here.code, here.stderr).toBe(0);
    expect(there).toEqual(here);
    expect(here.stdout).toMatch(/local-made|c-local|ci-bot/);
    expect(here.stdout).toMatch(/remote-made|c-remote|ci-bot/);
  });

  it.each([
    [['agent', 'revoke', 'nobody']],
    [['agent', 'create', 'local-made', '--org', 'acme', '--team', 'sre']],
    [['cluster', 'rotate-key', 'nowhere']],
    [['admin', 'create', 'Bad_Name', '--org', 'acme']],
    [['agent', 'create', 'x1', '--org', 'acme', '--team', 'Not-A-Label']],
  ])('%j is refused with the same sentence and exit code on both paths', async (command) => {
    const here = await runCli([...command, ...local()]);
    const there = await runCli([...command, ...remote]);
    expect(here.code).not.toBe(0);
    expect(there).toEqual(here);
  });

  it('revoke and rotate-key behave alike; --output json shows the object (with its key when one is made)', async () => {
    const here = await runCli(['agent', 'revoke', 'local-made', '-o', 'json', ...local()]);
    const there = await runCli(['agent', 'revoke', 'remote-made', '-o', 'json', ...remote]);
    expect(JSON.parse(there.stdout)).toEqual({ ...JSON.parse(here.stdout), name: 'remote-made', createdAt: expect.any(String), revokedAt: expect.any(String) });
    expect(there.stderr.replaceAll('remote-made', 'local-made')).toBe(here.stderr);
    const rotated = await runCli(['cluster', 'rotate-key', 'c-remote', '--output', 'json', ...remote]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toEqual({ name: 'c-remote', org: 'acme', createdAt: expect.any(String), connectorKey: expect.stringMatching(/^krl_cluster_/) });
  });
});

describe('an org admin through the admin API', () => {
  it("sees its org only, creates in it without --org, and is told another org's object does not exist", async () => {
    await runCli(['agent', 'create', 'g-agent', '--org', 'globex', '--team', 'ops', ...local()]);
    const created = await runCli(['agent', 'create', 'task-1', '--team', 'agents', '--output', 'json', ...acmeRemote]);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toEqual({ name: 'task-1', org: 'acme', teams: ['agents'], createdAt: expect.any(String), apiKey: expect.stringMatching(/^krl_agent_/) });
    expect(created.stderr).toContain('groups acme/agents');
    const listed = await runCli(['agent', 'list', ...acmeRemote]);
    expect(listed.stdout).not.toContain('g-agent');
    expect(listed.stdout).toContain('task-1');
    const other = await runCli(['agent', 'revoke', 'g-agent', ...acmeRemote]);
    expect(other).toEqual({ code: 2, stdout: '', stderr: 'kube-relay: no agent named "g-agent"; see kube-relay agent list\n' });
    const elsewhere = await runCli(['cluster', 'create', 'g-c', '--org', 'globex', ...acmeRemote]);
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toBe('kube-relay: an admin of org "acme" creates clusters in org "acme" only, not in "globex"\n');
  });

  it('token --agent mints the agent\'s 60-second token with the admin key, as an ExecCredential', async () => {
    const minted = await runCli(['token', '--agent', 'task-1', '--cluster', 'c-remote', '--issuer', issuer.url, '--ca-file', issuer.caFile!], { KUBE_RELAY_ADMIN_KEY: readFileSync(path.join(work, 'acme.admin-key'), 'utf8').trim() });
    expect(minted.code, minted.stderr).toBe(0);
    const credential = JSON.parse(minted.stdout) as { kind: string; status: { token: string; expirationTimestamp: string } };
    expect(credential.kind).toBe('ExecCredential');
    expect(decodeJwt(credential.status.token)).toMatchObject({ sub: 'agent:task-1', aud: 'c-remote', groups: ['acme/agents'] });
    const foreign = await runCli(['token', '--agent', 'g-agent', '--cluster', 'c-remote', '--issuer', issuer.url, '--ca-file', issuer.caFile!, '--admin-key-file', path.join(work, 'acme.admin-key'), '--raw']);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toBe('kube-relay: no agent named "g-agent"; see kube-relay agent list\n');
  });
});

describe('choosing the path', () => {
  it.each([
    [['agent', 'list', '--issuer', 'https://127.0.0.1:1'], /^kube-relay: --issuer needs an admin key: pass --admin-key-file F or set KUBE_RELAY_ADMIN_KEY/],
    [['agent', 'list', '--admin-key-file', 'k'], /^kube-relay: --admin-key-file needs --issuer URL/],
    [['agent', 'list', '--issuer', 'http://127.0.0.1:1', '--admin-key-file', 'k'], /must be an https:\/\/ URL/],
    [['agent', 'list', '--issuer', 'https://127.0.0.1:1', '--store-url', 'postgres://x@127.0.0.1/x'], /^kube-relay: --store-url is for the local store and --issuer for a remote one/],
    [['agent', 'list', '--output', 'yaml'], /^kube-relay: --output must be table or json, not "yaml"/],
    [['token', '--agent', 'a', '--cluster', 'c', '--issuer', 'https://127.0.0.1:1'], /^kube-relay: --agent needs an admin key/],
  ])('%j: exit 2 with a sentence, nothing done', async (args, message) => {
    const result = await runCli(args, {}, work);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('a wrong admin key and an unreachable issuer: exit 1 saying which', async () => {
    const wrongKey = path.join(work, 'wrong.admin-key');
    writeFileSync(wrongKey, `krl_admin_${'A'.repeat(43)}\n`);
    const refused = await runCli(['agent', 'list', '--issuer', issuer.url, '--issuer-ca-file', issuer.caFile!, '--admin-key-file', wrongKey]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^kube-relay: the issuer refused the admin key: the key is not a valid admin key/);
    const untrusted = await runCli(['agent', 'list', '--issuer', issuer.url, '--admin-key-file', wrongKey]);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/cannot reach the issuer at https:\/\/127\.0\.0\.1:\d+: .*pass its CA with --issuer-ca-file/);
  });
});

describe('cluster status and the CONNECTION of cluster list', () => {
  it('show the relays every hub replica recorded, the same on both paths', async () => {
    const store = await openStore({ dataDir: data });
    try {
      const now = Date.now();
      const relay = (id: string, replica: string, ready: boolean, reason?: string) => ({
        id,
        cluster: 'c-local',
        hubReplica: replica,
        mode: 'tunnel' as const,
        relayVersion: '9.9.9',
        connectedAt: new Date(now - 60_000),
        lastHeardAt: new Date(now),
        heartbeatMs: 600_000,
        ready,
        ...(reason ? { notReadyReason: reason } : {}),
      });
      await store.saveRelayConnections([relay('11111111-1111-4111-8111-111111111111', 'issuer-0', true), relay('22222222-2222-4222-8222-222222222222', 'issuer-1', false, 'waiting for room in the audit trail')]);
    } finally {
      await store.close();
    }
    const here = await runCli(['cluster', 'status', 'c-local', ...local()]);
    const there = await runCli(['cluster', 'status', 'c-local', ...remote]);
    expect(here.code, here.stderr).toBe(0);
    expect(there).toEqual(here);
    const lines = here.stdout.split('\n');
    expect(lines[0]).toBe('cluster c-local: 2 relays, 1 ready');
    expect(lines[1]).toMatch(/^MODE\s+HUB REPLICA\s+VERSION\s+CONNECTED SINCE\s+LAST HEARD\s+READY$/);
    expect(lines[2]).toMatch(/^tunnel\s+issuer-0\s+9\.9\.9\s+\S+Z\s+\S+Z\s+yes$/);
    expect(lines[3]).toMatch(/^tunnel\s+issuer-1\s+9\.9\.9\s+.*no: waiting for room in the audit trail$/);
    const json = JSON.parse((await runCli(['cluster', 'status', 'c-local', '-o', 'json', ...remote])).stdout) as { connected: boolean; relays: { hubReplica: string; ready: boolean }[] };
    expect(json.connected).toBe(true);
    expect(json.relays.map((r) => `${r.hubReplica}:${r.ready}`)).toEqual(['issuer-0:true', 'issuer-1:false']);

    const never = await runCli(['cluster', 'status', 'c-remote', ...remote]);
    expect(never.stdout).toMatch(/^cluster c-remote: never connected \(created \S+Z\)\n$/);
    const listed = await runCli(['cluster', 'list', ...local()]);
    expect(await runCli(['cluster', 'list', ...remote])).toEqual(listed);
    expect(listed.stdout.split('\n')[0]).toMatch(/^NAME\s+ORG\s+STATUS\s+CONNECTION$/);
    expect(listed.stdout).toMatch(/^c-local\s+acme\s+active\s+2 relays, 1 ready$/m);
    expect(listed.stdout).toMatch(/^c-remote\s+acme\s+active\s+never connected$/m);
    expect(await runCli(['cluster', 'status', 'nowhere', ...remote])).toEqual(await runCli(['cluster', 'status', 'nowhere', ...local()]));
  });
});
