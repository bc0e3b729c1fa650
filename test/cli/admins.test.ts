/**
 * `kube-relay admin …` on the local store (issue 16 item 1): the key is printed once (or written
 * 0600 with --out) and works with the admin API's authentication; rotate-key and revoke make the
 * old key refused; --org and --all-orgs are one or the other; no key reaches stderr.
 */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { authenticateAdmin } from '../../src/admin-api/authenticate.js';
import { AuthFailureBrakes } from '../../src/issuer/failure-limiter.js';
import { Registry } from '../../src/issuer/registry.js';
import { loadOrCreatePepper } from '../../src/issuer/secrets.js';
import { openStore } from '../../src/issuer/store.js';
import { runCli } from '../helpers/cli.js';

const fresh = () => mkdtempSync(path.join(tmpdir(), 'kube-relay-admins-'));

/** What the admin API would make of this key, read from the data directory's store. */
async function authenticate(dataDir: string, key: string) {
  const store = await openStore({ dataDir });
  try {
    const registry = new Registry(store, loadOrCreatePepper(dataDir, {}));
    return await authenticateAdmin({ registry, brakes: new AuthFailureBrakes() }, { address: '127.0.0.1', authorization: `Bearer ${key}` });
  } finally {
    await store.close();
  }
}

describe('kube-relay admin', () => {
  it('create --org prints a krl_admin_ key once, alone on its line, and the key authenticates as that org', async () => {
    const data = fresh();
    const created = await runCli(['admin', 'create', 'acme-platform', '--org', 'acme', '--data', data]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^krl_admin_[A-Za-z0-9_-]{43}\n$/);
    const key = created.stdout.trim();
    expect(created.stderr).toContain('admin "acme-platform" created for org "acme"');
    expect(created.stderr).not.toContain(key);
    expect(await authenticate(data, key)).toEqual({ ok: true, caller: { kind: 'admin', name: 'acme-platform', org: 'acme' } });
  });

  it('create --all-orgs --out FILE writes the key 0600 and nothing to stdout; list shows both kinds', async () => {
    const dir = fresh();
    const data = path.join(dir, 'data');
    const created = await runCli(['admin', 'create', 'ops', '--all-orgs', '--out', 'ops.admin-key', '--data', data], {}, dir);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toBe('');
    const file = path.join(dir, 'ops.admin-key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = readFileSync(file, 'utf8').trim();
    expect(await authenticate(data, key)).toEqual({ ok: true, caller: { kind: 'admin', name: 'ops' } });
    await runCli(['admin', 'create', 'acme-platform', '--org', 'acme', '--data', data]);
    const listed = await runCli(['admin', 'list', '--data', data]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.split('\n').map((l) => l.split(/\s{2,}/))).toEqual([
      ['NAME', 'ORG', 'STATUS'],
      ['acme-platform', 'acme', 'active'],
      ['ops', '(all orgs)', 'active'],
      [''],
    ]);
    expect(listed.stdout).not.toContain('krl_admin_');
  });

  it.each([
    ['neither --org nor --all-orgs', ['admin', 'create', 'x'], '--org ORG or --all-orgs is required'],
    ['both', ['admin', 'create', 'x', '--org', 'acme', '--all-orgs'], '--org and --all-orgs exclude each other'],
    ['a bad name', ['admin', 'create', 'Not_A_Label', '--org', 'acme'], 'admin name "Not_A_Label" is not a DNS label'],
    ['a bad org', ['admin', 'create', 'x', '--org', 'ACME'], 'org "ACME" is not a DNS label'],
  ])('create with %s is misuse (exit 2) and creates nothing', async (_case, args, message) => {
    const data = fresh();
    const result = await runCli([...args, '--data', data]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
    expect((await runCli(['admin', 'list', '--data', data])).stdout).toBe('NAME  ORG  STATUS\n');
  });

  it('rotate-key gives a new key and the old one is refused; revoke refuses the key; the name stays reserved', async () => {
    const data = fresh();
    const first = (await runCli(['admin', 'create', 'acme-platform', '--org', 'acme', '--data', data])).stdout.trim();
    const rotated = await runCli(['admin', 'rotate-key', 'acme-platform', '--data', data]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const second = rotated.stdout.trim();
    expect(second).toMatch(/^krl_admin_/);
    expect(second).not.toBe(first);
    expect(await authenticate(data, first)).toMatchObject({ ok: false, status: 401, error: 'invalid-admin-key' });
    expect(await authenticate(data, second)).toMatchObject({ ok: true });
    const revoked = await runCli(['admin', 'revoke', 'acme-platform', '--data', data]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await authenticate(data, second)).toMatchObject({ ok: false, status: 401, error: 'admin-revoked' });
    expect((await runCli(['admin', 'list', '--data', data])).stdout).toMatch(/acme-platform\s+acme\s+revoked \d{4}-/);
    const again = await runCli(['admin', 'create', 'acme-platform', '--org', 'acme', '--data', data]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/admin "acme-platform" was revoked at .*; names of revoked admins stay reserved/);
    const rotateRevoked = await runCli(['admin', 'rotate-key', 'acme-platform', '--data', data]);
    expect(rotateRevoked.code).toBe(2);
    expect(rotateRevoked.stderr).toContain('a revoked admin gets no new key');
    expect(rotateRevoked.stdout).toBe('');
  });

  it('revoke and rotate-key of an unknown admin say so', async () => {
    const data = fresh();
    for (const action of ['revoke', 'rotate-key']) {
      const result = await runCli(['admin', action, 'nobody', '--data', data]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('no admin named "nobody"; see kube-relay admin list');
    }
  });
});
