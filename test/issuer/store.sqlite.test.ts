import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src/issuer/store/open.js';
import { describeAuditStoreContract } from './audit-store-contract.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('SQLite', async () => ({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-store-')) }));

describe('an issuer database made before migrations existed', () => {
  it('is taken as schema version 1 and migrated with its rows intact', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kube-relay-store-old-'));
    const db = new Database(path.join(dataDir, 'issuer.db'));
    db.exec(`CREATE TABLE agents (name TEXT PRIMARY KEY, org TEXT NOT NULL, teams TEXT NOT NULL, api_key_hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, revoked_at BIGINT);
      CREATE TABLE clusters (name TEXT PRIMARY KEY, org TEXT NOT NULL, connector_key_hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, revoked_at BIGINT);
      CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, private_jwk TEXT NOT NULL, public_jwk TEXT NOT NULL, created_at BIGINT NOT NULL);
      INSERT INTO agents VALUES ('deployer', 'acme', '["sre"]', 'h', 1000, NULL);
      INSERT INTO signing_keys VALUES ('old-kid', '{"d":"private"}', '{"x":"public"}', 1000);`);
    db.close();
    const store = await openStore({ dataDir });
    try {
      expect(await store.findAgentByKeyHash('h')).toMatchObject({ name: 'deployer', teams: ['sre'] });
      expect(await store.initSetting('x', 'y')).toBe('y');
      // Its signing key's public half stays published a while, so tokens it signed verify until they expire; the private half is gone from the store.
      expect(await store.publicSigningKeys(new Date(Date.now() - 60_000))).toMatchObject([{ kid: 'old-kid', publicJwk: '{"x":"public"}' }]);
      const raw = new Database(path.join(dataDir, 'issuer.db'));
      expect(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'signing_keys'").all()).toEqual([]);
      raw.close();
    } finally {
      await store.close();
    }
  });
});

describeAuditStoreContract('SQLite', async () => ({ dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-audit-store-')) }));
