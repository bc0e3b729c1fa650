/**
 * The store of a management command (DESIGN §6, §9): SQLite in `--data`,
 * the embedded default, or the PostgreSQL store of `--store-url`, opened
 * for one command and closed after it.
 */
import path from 'node:path';
import { Registry } from '../issuer/registry.js';
import { checkPepper, loadOrCreatePepper } from '../issuer/secrets.js';
import { type IssuerStore, openStore } from '../issuer/store.js';
import { type FlagSpec, type Io, str, type Values } from './command.js';

export const STORE_FLAGS: FlagSpec[] = [
  { name: 'store-url', value: 'URL', description: 'A PostgreSQL store shared by several issuer replicas (postgres://USER:PASSWORD@HOST:PORT/DB; TLS with sslmode and sslrootcert).', default: 'SQLite in the data directory' },
  { name: 'pepper-file', value: 'F', description: 'The pepper keys are hashed with; with --store-url, every replica needs the same one (or KUBE_RELAY_PEPPER).', default: 'DATA/pepper' },
];

export function dataDir(values: Values): string {
  return path.resolve(str(values, 'data') ?? '.kube-relay');
}

export function storeLocation(values: Values) {
  return { dataDir: dataDir(values), storeUrl: str(values, 'store-url') };
}

export async function withStore<T>(values: Values, use: (store: IssuerStore) => T | Promise<T>): Promise<T> {
  const store = await openStore(storeLocation(values));
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

export function withRegistry<T>(values: Values, io: Io, use: (registry: Registry) => T | Promise<T>): Promise<T> {
  return withStore(values, async (store) => {
    const location = storeLocation(values);
    const pepper = loadOrCreatePepper(location.dataDir, io.env, { pepperFile: str(values, 'pepper-file'), shared: location.storeUrl !== undefined });
    await checkPepper(store, pepper);
    return use(new Registry(store, pepper));
  });
}
