/**
 * The store of a management command (DESIGN §6, §9): SQLite in `--data`,
 * the embedded default, or the PostgreSQL store of `--store-url`, opened
 * for one command and closed after it.
 */
import path from 'node:path';
import type { Registry } from '../issuer/registry.js';
import type { IssuerStore } from '../issuer/store.js';
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

/** The store's modules (and its engine's driver) are loaded here, by the commands that open one. */
export async function withStore<T>(values: Values, use: (store: IssuerStore) => T | Promise<T>): Promise<T> {
  const { openStore } = await import('../issuer/store.js');
  const store = await openStore(storeLocation(values));
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

export function withRegistry<T>(values: Values, io: Io, use: (registry: Registry) => T | Promise<T>): Promise<T> {
  return withStore(values, async (store) => {
    const [{ Registry }, { checkPepper, loadOrCreatePepper }] = await Promise.all([import('../issuer/registry.js'), import('../issuer/secrets.js')]);
    const location = storeLocation(values);
    const pepper = loadOrCreatePepper(location.dataDir, io.env, { pepperFile: str(values, 'pepper-file'), shared: location.storeUrl !== undefined });
    await checkPepper(store, pepper);
    return use(new Registry(store, pepper));
  });
}
