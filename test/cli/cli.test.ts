import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BIN, runCli } from '../helpers/cli.js';

const data = () => mkdtempSync(path.join(tmpdir(), 'kube-relay-cli-'));

describe('CLI misuse: a sentence on stderr and exit status 2 (DESIGN §6)', () => {
  it.each([
    ['no command', []],
    ['an unknown command', ['frobnicate']],
    ['an unknown flag', ['agent', 'list', '--colour']],
    ['agent create without --org', ['agent', 'create', 'bot', '--team', 'sre']],
    ['agent create without a team', ['agent', 'create', 'bot', '--org', 'acme']],
    ['an agent name that is not a DNS label', ['agent', 'create', 'Bot_1', '--org', 'acme', '--team', 'sre']],
    ['cluster create without a name', ['cluster', 'create', '--org', 'acme']],
    ['token without an API key', ['token', '--issuer', 'https://127.0.0.1:1', '--cluster', 'c']],
    ['relay without --cluster', ['relay', '--issuer', 'https://x', '--mode', 'direct', '--listen', '127.0.0.1:0']],
    ['relay with a bad --listen', ['relay', '--cluster', 'c', '--issuer', 'https://x', '--mode', 'direct', '--listen', 'nowhere']],
    ['relay in tunnel mode without --hub', ['relay', '--cluster', 'c', '--issuer', 'https://x', '--mode', 'tunnel', '--connector-key-file', '/etc/hostname']],
    ['relay in tunnel mode without a connector key', ['relay', '--cluster', 'c', '--issuer', 'https://x', '--mode', 'tunnel', '--hub', 'https://x']],
    ['relay with an unknown mode', ['relay', '--cluster', 'c', '--issuer', 'https://x', '--mode', 'sideways', '--listen', '127.0.0.1:0']],
    ['a bad --log-level', ['agent', 'list', '--log-level', 'loud']],
    ['issuer with a key rotation interval of 0', ['issuer', '--key-rotation-interval', '0'], '--key-rotation-interval "0" is too short'],
    ['issuer with a key rotation interval under 5 minutes', ['issuer', '--key-rotation-interval', '60s'], 'at least 5m'],
    ['issuer with an unknown --audit-when-full', ['issuer', '--audit-when-full', 'sometimes'], '--audit-when-full'],
    ['audit rotation without an audit file', ['issuer', '--audit-file-max-size', '10Mi'], '--audit-file'],
    ['an audit file size that is not a size', ['issuer', '--audit-file', 'a.jsonl', '--audit-file-max-size', '10MB'], '--audit-file-max-size'],
    ['an audit webhook URL that is not http(s)', ['issuer', '--audit-webhook-url', 'ftp://logs.example'], '--audit-webhook-url'],
    ['an audit webhook token file that cannot be read', ['issuer', '--audit-webhook-url', 'https://127.0.0.1:1/', '--audit-webhook-token-file', '/nonexistent/token'], '--audit-webhook-token-file'],
    ['relay with --max-streams-per-agent 0', ['relay', '--cluster', 'c', '--issuer', 'https://x', '--mode', 'direct', '--listen', '127.0.0.1:0', '--max-streams-per-agent', '0'], '--max-streams-per-agent'],
  ])('%s', async (_name, args, named?: string) => {
    const result = await runCli([...args, '--data', data()]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^kube-relay: \S.+/);
    if (named) expect(result.stderr).toContain(named);
    expect(result.stdout).toBe('');
  });
});

describe('agents and clusters', () => {
  it('prints a new key alone on stdout, lists and revokes, and refuses duplicates', async () => {
    const dir = data();
    const created = await runCli(['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--team', 'platform'], { KUBE_RELAY_DATA: dir });
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^krl_agent_[A-Za-z0-9_-]{43}\n$/);
    const cluster = await runCli(['cluster', 'create', 'prod-eu', '--org', 'acme', '--data', dir]);
    expect(cluster.stdout).toMatch(/^krl_cluster_[A-Za-z0-9_-]{43}\n$/);
    const again = await runCli(['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--data', dir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already exists');
    expect((await runCli(['agent', 'revoke', 'deployer', '--data', dir])).code).toBe(0);
    const list = await runCli(['agent', 'list', '--data', dir]);
    expect(list.stdout).toMatch(/deployer\s+acme\s+sre,platform\s+revoked/);
    expect(list.stdout).not.toContain('krl_');
    const unknown = await runCli(['agent', 'revoke', 'nobody', '--data', dir]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no agent named "nobody"');
  });

  it('rotates signing keys from the command line', async () => {
    const dir = data();
    const result = await runCli(['issuer', 'rotate-keys', '--data', dir]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/new signing key \S+ is current/);
  });
});

describe('kubeconfig', () => {
  it('writes an exec-plugin kubeconfig with absolute paths that works from any directory', async () => {
    const dir = data();
    const keyFile = path.join(dir, 'key');
    writeFileSync(keyFile, 'krl_agent_x\n');
    writeFileSync(path.join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\n');
    const result = await runCli(
      ['kubeconfig', '--issuer', 'https://127.0.0.1:8443', '--cluster', 'prod-eu', '--server', 'https://127.0.0.1:9443', '--ca-file', 'ca.crt', '--issuer-ca-file', 'ca.crt', '--api-key-file', 'key', '--no-check'],
      {},
      dir,
    );
    expect(result.code).toBe(0);
    const config = parse(result.stdout) as { clusters: { cluster: Record<string, string> }[]; users: { user: { exec: { command: string; args: string[]; apiVersion: string } } }[] };
    expect(config.clusters[0]!.cluster.server).toBe('https://127.0.0.1:9443');
    expect(Buffer.from(config.clusters[0]!.cluster['certificate-authority-data']!, 'base64').toString()).toBe(readFileSync(path.join(dir, 'ca.crt'), 'utf8'));
    const exec = config.users[0]!.user.exec;
    expect(exec.apiVersion).toBe('client.authentication.k8s.io/v1');
    expect(path.isAbsolute(exec.command)).toBe(true);
    expect(exec.args.slice(0, 2)).toEqual([BIN, 'token']);
    expect(exec.args).toContain(path.join(dir, 'key'));
    expect(exec.args).toContain(path.join(dir, 'ca.crt'));
  });
});

describe('long-running commands', () => {
  it('issuer starts with embedded defaults, serves its JWKS over HTTPS and stops cleanly on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const { fetchWithCa } = await import('../../src/https-fetch.js');
    const dir = data();
    const child = spawn(process.execPath, [BIN, 'issuer', '--listen', '127.0.0.1:0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 15_000;
    while (!/serving at (https:\S+)/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const url = /serving at (https:\S+)/.exec(stderr)?.[1];
    expect(url, stderr).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const caFile = path.join(dir, '.kube-relay', 'tls', 'ca.crt');
    const jwks = (await (await fetchWithCa({ ca: readFileSync(caFile) })(`${url}/.well-known/jwks.json`)).json()) as { keys: unknown[] };
    expect(jwks.keys).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/krl_|BEGIN .*PRIVATE KEY/);
  });
});
