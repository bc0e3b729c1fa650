import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { describeAuditStoreContract } from '../issuer/audit-store-contract.js';
import { describeStoreContract } from '../issuer/store-contract.js';
import { createDatabase } from './server.js';

describeStoreContract('PostgreSQL', async () => ({
  dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-store-pg-')),
  storeUrl: await createDatabase(inject('postgres')),
}));

describeAuditStoreContract('PostgreSQL', async () => ({
  dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-audit-store-pg-')),
  storeUrl: await createDatabase(inject('postgres')),
}));
