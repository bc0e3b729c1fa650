/**
 * `kube-relay kubeconfig` and `kube-relay token` check what they are given
 * (issue 13): https URLs only, a readable key file, and by default one token
 * minted before a kubeconfig is printed, so a mistake shows here, with the
 * issuer's reason, instead of later inside kubectl as "exec: … failed".
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadOrCreateCa } from '../../src/tls/local-ca.js';
import { runCli } from '../helpers/cli.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
let keyFile: string;
let otherCa: string;

beforeAll(async () => {
  stack = await startStack();
  const dir = mkdtempSync(path.join(tmpdir(), 'kube-relay-client-'));
  keyFile = path.join(dir, 'deployer.api-key');
  writeFileSync(keyFile, `${stack.agentKey}\n`, { mode: 0o600 });
  // A CA that did not sign the issuer's certificate: another data directory's.
  otherCa = loadOrCreateCa(path.join(dir, 'other')).certPath;
});

afterAll(async () => {
  await stack?.close();
});

const kubeconfigArgs = (overrides: Record<string, string | undefined> = {}) => {
  const flags: Record<string, string | undefined> = {
    issuer: stack.issuer.url,
    cluster: 'prod-eu',
    server: stack.relay.url,
    'ca-file': stack.caFile,
    'issuer-ca-file': stack.caFile,
    'api-key-file': keyFile,
    ...overrides,
  };
  return ['kubeconfig', ...Object.entries(flags).flatMap(([name, value]) => (value === undefined ? [] : [`--${name}`, value]))];
};

describe('kube-relay kubeconfig', () => {
  it('mints a token first and prints the kubeconfig when everything is right', async () => {
    const result = await runCli(kubeconfigArgs());
    expect(result.code, result.stderr).toBe(0);
    expect((parse(result.stdout) as { kind: string }).kind).toBe('Config');
  });

  it.each([
    ['--server that is not a URL', { server: 'not a url' }, '--server "not a url" is not a URL'],
    ['--issuer that is not a URL', { issuer: 'nope' }, '--issuer "nope" is not a URL'],
    ['--issuer over plain http', { issuer: 'http://127.0.0.1:8443' }, '--issuer "http://127.0.0.1:8443" must be an https:// URL'],
    ['--server over plain http', { server: 'http://127.0.0.1:9443' }, 'must be an https:// URL'],
    ['a missing API key file', { 'api-key-file': '/nonexistent/deployer.api-key' }, '--api-key-file /nonexistent/deployer.api-key cannot be read: ENOENT'],
    ['no API key to check with', { 'api-key-file': undefined }, 'no API key to check the settings with'],
  ])('exits 2 for %s', async (_name, overrides, message) => {
    const result = await runCli(kubeconfigArgs(overrides));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it.each([
    ['an unknown cluster', { cluster: 'nowhere' }, /the issuer refused a token for cluster "nowhere": .*nowhere/],
    ['an issuer that is not there', { issuer: 'https://127.0.0.1:1' }, /cannot reach the issuer at https:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/],
    ['an issuer CA that did not sign its certificate', () => ({ 'issuer-ca-file': otherCa }), /the CA given with --issuer-ca-file did not sign the issuer's certificate/],
    ['no issuer CA for a local-CA issuer', { 'issuer-ca-file': undefined }, /pass its CA with --issuer-ca-file/],
  ])("exits 1 with the issuer's reason for %s", async (_name, overrides, message) => {
    const result = await runCli(kubeconfigArgs(typeof overrides === 'function' ? overrides() : overrides));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
    expect(result.stderr).not.toContain(stack.agentKey);
  });

  it('a wrong API key is refused by the issuer (exit 1), never echoed', async () => {
    const wrong = path.join(path.dirname(keyFile), 'wrong.api-key');
    writeFileSync(wrong, 'krl_agent_not-a-real-key\n');
    const result = await runCli(kubeconfigArgs({ 'api-key-file': wrong }));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the issuer refused a token');
    expect(result.stderr).not.toContain('not-a-real-key');
  });

  it('--no-check prints a kubeconfig offline (the issuer need not answer)', async () => {
    const result = await runCli([...kubeconfigArgs({ issuer: 'https://127.0.0.1:1' }), '--no-check']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('https://127.0.0.1:1');
  });
});

describe('kube-relay token', () => {
  const token = (issuer: string, extra: string[] = []) => runCli(['token', '--issuer', issuer, '--cluster', 'prod-eu', '--api-key-file', keyFile, ...extra]);

  it.each([
    ['a URL without a scheme', '127.0.0.1:8443', 'is not a URL'],
    ['plain http', 'http://127.0.0.1:8443', 'must be an https:// URL'],
  ])('exits 2 for %s', async (_name, issuer, message) => {
    const result = await token(issuer);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
  });

  it('names --ca-file when the issuer certificate is not trusted', async () => {
    const result = await token(stack.issuer.url);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("the issuer's certificate is not signed by a system CA: pass its CA with --ca-file");
    const wrongCa = await token(stack.issuer.url, ['--ca-file', otherCa]);
    expect(wrongCa.stderr).toContain('the CA given with --ca-file did not sign');
  });

  it('prints an ExecCredential with the right trust', async () => {
    const result = await token(stack.issuer.url, ['--ca-file', stack.caFile]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ kind: 'ExecCredential', status: { token: expect.any(String) } });
  });
});
