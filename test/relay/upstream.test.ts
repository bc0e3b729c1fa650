import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { inClusterUpstream, tokenFileSource, upstreamFromKubeconfig, UpstreamConfigError } from '../../src/relay/upstream.js';

const dir = () => mkdtempSync(path.join(tmpdir(), 'kube-relay-upstream-'));

function kubeconfig(folder: string, user: Record<string, unknown>, cluster: Record<string, unknown> = { server: 'https://127.0.0.1:6443/prefix' }) {
  const file = path.join(folder, 'config');
  writeFileSync(
    file,
    stringify({
      clusters: [{ name: 'c', cluster }],
      users: [{ name: 'u', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }, { name: 'other', context: { cluster: 'c', user: 'missing' } }],
      'current-context': 'ctx',
    }),
  );
  return file;
}

describe('upstream credentials from a kubeconfig', () => {
  it('uses an inline token and the CA data, and keeps the server path prefix', () => {
    const up = upstreamFromKubeconfig(kubeconfig(dir(), { token: 'sa-token' }, { server: 'https://127.0.0.1:6443/prefix', 'certificate-authority-data': Buffer.from('CA PEM').toString('base64') }));
    expect(up.authorization()).toBe('Bearer sa-token');
    expect(up.tls).toEqual({ ca: 'CA PEM', rejectUnauthorized: true });
    expect(up.server.pathname).toBe('/prefix');
    expect(up.description).not.toContain('sa-token');
  });

  it('reads client certificate files relative to the kubeconfig and sends no Authorization', () => {
    const folder = dir();
    writeFileSync(path.join(folder, 'client.crt'), 'CERT');
    writeFileSync(path.join(folder, 'client.key'), 'KEY');
    writeFileSync(path.join(folder, 'ca.crt'), 'CA');
    const up = upstreamFromKubeconfig(kubeconfig(folder, { 'client-certificate': 'client.crt', 'client-key': 'client.key' }, { server: 'https://k:6443', 'certificate-authority': 'ca.crt' }));
    expect(up.authorization()).toBeUndefined();
    expect(up.tls).toEqual({ ca: 'CA', cert: 'CERT', key: 'KEY', rejectUnauthorized: true });
  });

  it.each([
    ['no credential at all', {}],
    ['an exec plugin', { exec: { command: 'aws' } }],
    ['a certificate without its key', { 'client-certificate-data': Buffer.from('C').toString('base64') }],
  ])('refuses a user with %s', (_name, user) => {
    expect(() => upstreamFromKubeconfig(kubeconfig(dir(), user))).toThrow(UpstreamConfigError);
  });

  it('names a missing context', () => {
    expect(() => upstreamFromKubeconfig(kubeconfig(dir(), { token: 't' }), 'nope')).toThrow(/no context "nope"/);
  });
});

describe('rotating token files', () => {
  it('re-reads the token file once a minute and keeps the last token if a read fails', () => {
    const folder = dir();
    const file = path.join(folder, 'token');
    writeFileSync(file, 'first\n');
    let now = 0;
    const token = tokenFileSource(file, () => now);
    expect(token()).toBe('first');
    writeFileSync(file, 'second\n');
    now = 59_000;
    expect(token()).toBe('first');
    now = 60_000;
    expect(token()).toBe('second');
    writeFileSync(file, '');
    now = 120_000;
    expect(token()).toBe('second');
  });

  it('uses the in-cluster ServiceAccount token and CA', () => {
    const folder = dir();
    writeFileSync(path.join(folder, 'token'), 'projected');
    writeFileSync(path.join(folder, 'ca.crt'), 'CLUSTER CA');
    const up = inClusterUpstream({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, folder);
    expect(up.server.href).toBe('https://10.96.0.1/');
    expect(up.authorization()).toBe('Bearer projected');
    expect(up.tls.ca).toBe('CLUSTER CA');
  });
});
