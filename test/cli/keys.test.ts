/**
 * Keys on disk and re-keying (issue 13): `--out FILE` writes a key 0600 and
 * never overwrites; `rotate-key` gives a new key and the old one is refused
 * at once; names of revoked agents and clusters stay reserved, and the
 * refusal says since when.
 */
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestToken } from '../../src/client/token.js';
import { runCli } from '../helpers/cli.js';
import { type Stack, startStack } from '../helpers/stack.js';

const fresh = () => mkdtempSync(path.join(tmpdir(), 'kube-relay-keys-'));

describe('--out FILE', () => {
  it.each([
    ['agent create', ['agent', 'create', 'bot', '--org', 'acme', '--team', 'sre'], /^krl_agent_[A-Za-z0-9_-]{43}\n$/],
    ['cluster create', ['cluster', 'create', 'dev', '--org', 'acme'], /^krl_cluster_[A-Za-z0-9_-]{43}\n$/],
  ])('%s writes the key to a new file with mode 0600 and nothing to stdout', async (_name, args, shape) => {
    const dir = fresh();
    const result = await runCli([...args, '--out', 'the.key', '--data', path.join(dir, 'data')], {}, dir);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('in the.key (mode 0600)');
    expect(readFileSync(path.join(dir, 'the.key'), 'utf8')).toMatch(shape);
    expect(statSync(path.join(dir, 'the.key')).mode & 0o777).toBe(0o600);
  });

  it('refuses to overwrite an existing file, and then creates nothing', async () => {
    const dir = fresh();
    const out = path.join(dir, 'existing.key');
    writeFileSync(out, 'keep me\n');
    const data = path.join(dir, 'data');
    const result = await runCli(['agent', 'create', 'bot', '--org', 'acme', '--team', 'sre', '--out', out, '--data', data]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('exists; kube-relay never overwrites a key file');
    expect(readFileSync(out, 'utf8')).toBe('keep me\n');
    expect((await runCli(['agent', 'list', '--data', data])).stdout).not.toContain('bot');
  });

  it('leaves no empty key file behind when the agent cannot be created', async () => {
    const dir = fresh();
    const data = path.join(dir, 'data');
    await runCli(['agent', 'create', 'bot', '--org', 'acme', '--team', 'sre', '--data', data]);
    const again = await runCli(['agent', 'create', 'bot', '--org', 'acme', '--team', 'sre', '--data', data, '--out', path.join(dir, 'second.key')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('agent "bot" already exists');
    expect(existsSync(path.join(dir, 'second.key'))).toBe(false);
  });
});

describe('revoked names stay reserved', () => {
  it.each([
    ['agent', ['agent', 'create', 'gone', '--org', 'acme', '--team', 'sre'], ['agent', 'revoke', 'gone']],
    ['cluster', ['cluster', 'create', 'gone', '--org', 'acme'], ['cluster', 'revoke', 'gone']],
  ])('a revoked %s name is refused, saying when it was revoked', async (kind, create, revoke) => {
    const data = fresh();
    expect((await runCli([...create, '--data', data])).code).toBe(0);
    expect((await runCli([...revoke, '--data', data])).code).toBe(0);
    const again = await runCli([...create, '--data', data]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(new RegExp(`${kind} "gone" was revoked at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z; names of revoked ${kind}s stay reserved`));
  });
});

describe('rotate-key', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("agent rotate-key: the issuer refuses the old API key at once and accepts the new one", async () => {
    const token = (apiKey: string) => requestToken({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey, issuerCa: stack.caPem });
    await expect(token(stack.agentKey)).resolves.toMatchObject({ token: expect.any(String) });
    const rotated = await runCli(['agent', 'rotate-key', 'deployer', '--data', stack.dataDir]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const newKey = rotated.stdout.trim();
    expect(newKey).toMatch(/^krl_agent_/);
    expect(newKey).not.toBe(stack.agentKey);
    await expect(token(stack.agentKey)).rejects.toThrow(/refused/);
    await expect(token(newKey)).resolves.toMatchObject({ token: expect.any(String) });
  });

  it('refuses to rotate the key of an unknown or revoked agent', async () => {
    const unknown = await runCli(['agent', 'rotate-key', 'nobody', '--data', stack.dataDir]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no agent named "nobody"');
    await runCli(['agent', 'create', 'leaver', '--org', 'acme', '--team', 'sre', '--data', stack.dataDir]);
    await runCli(['agent', 'revoke', 'leaver', '--data', stack.dataDir]);
    const revoked = await runCli(['agent', 'rotate-key', 'leaver', '--data', stack.dataDir]);
    expect(revoked.code).toBe(2);
    expect(revoked.stderr).toMatch(/agent "leaver" was revoked at .*; a revoked agent gets no new key/);
    expect(revoked.stdout).toBe('');
  });
});
