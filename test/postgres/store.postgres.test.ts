import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { describeStoreContract } from '../issuer/store-contract.js';
import { createDatabase } from './server.js';

describeStoreContract('PostgreSQL', async () => ({
  dataDir: await mkdtemp(path.join(tmpdir(), 'kube-relay-store-pg-')),
  storeUrl: await createDatabase(inject('postgres')),
}));
