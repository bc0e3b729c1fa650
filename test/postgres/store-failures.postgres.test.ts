/** A PostgreSQL store that cannot be used says where (password redacted) and why (issue 15, bad input). */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { StoreUnavailableError } from '../../src/issuer/store/engine.js';
import { openStore } from '../../src/issuer/store/open.js';

const postgres = inject('postgres');
const dataDir = () => mkdtemp(path.join(tmpdir(), 'kube-relay-pg-fail-'));

describe('a PostgreSQL store that cannot be used', () => {
  it('with a wrong password: names the URL without the password and says why', async () => {
    const url = new URL(postgres.url);
    url.password = 'not-the-password-s3cret';
    const failure = await openStore({ dataDir: await dataDir(), storeUrl: url.toString() }).catch((err: Error) => err);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as Error).message).toContain(`postgres://${postgres.user}:redacted@127.0.0.1:${postgres.port}/`);
    expect((failure as Error).message).toMatch(/password authentication failed/);
    expect((failure as Error).message).not.toContain('not-the-password-s3cret');
  });

  it('that is not listening: names the URL and the refusal', async () => {
    const url = new URL(postgres.url);
    url.port = '1';
    const failure = await openStore({ dataDir: await dataDir(), storeUrl: url.toString() }).catch((err: Error) => err);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as Error).message).toMatch(/127\.0\.0\.1:1\/.*ECONNREFUSED/);
    expect((failure as Error).message).not.toContain(postgres.password);
  });
});
