/** The local store of `--data` (DESIGN §6), opened for one management command and closed after it. */
import path from 'node:path';
import { Registry } from '../issuer/registry.js';
import { loadOrCreatePepper } from '../issuer/secrets.js';
import { type IssuerStore, openSqliteStore } from '../issuer/store.js';
import { type Io, str, type Values } from './command.js';

export function dataDir(values: Values): string {
  return path.resolve(str(values, 'data') ?? '.kube-relay');
}

export async function withStore<T>(values: Values, use: (store: IssuerStore) => T | Promise<T>): Promise<T> {
  const store = openSqliteStore(dataDir(values));
  try {
    return await use(store);
  } finally {
    store.close();
  }
}

export function withRegistry<T>(values: Values, io: Io, use: (registry: Registry) => T | Promise<T>): Promise<T> {
  return withStore(values, (store) => use(new Registry(store, loadOrCreatePepper(dataDir(values), io.env))));
}

export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export function status(revokedAt: Date | undefined): string {
  return revokedAt ? `revoked ${revokedAt.toISOString()}` : 'active';
}
