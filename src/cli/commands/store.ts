/** `kube-relay store migrate`: an SQLite issuer's whole state into PostgreSQL (DESIGN §9, issue 15). */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { type CommandSpec, required, str, UsageError } from '../command.js';

export const storeCommands: CommandSpec[] = [
  {
    words: ['store', 'migrate'],
    summary: "Copy an SQLite issuer's state (agents, clusters, key hashes, signing keys, revocations) into an empty PostgreSQL store.",
    synopsis: '--from DATA_DIR --to postgres://USER:PASSWORD@HOST:PORT/DATABASE',
    description:
      "Nothing is re-keyed: API keys and connector keys keep working on the new store as long as every issuer replica uses the source's pepper (its DATA_DIR/pepper file, given with --pepper-file or as KUBE_RELAY_PEPPER). The target gets the current schema first and must hold no rows. Stop the SQLite issuer first, so that nothing changes during the copy.",
    flags: [
      { name: 'from', value: 'DATA_DIR', description: "The SQLite issuer's data directory (the one holding issuer.db)." },
      { name: 'to', value: 'URL', description: 'The PostgreSQL store (TLS through the URL: sslmode, sslrootcert).' },
      { name: 'pepper-file', value: 'F', description: "The SQLite issuer's pepper, if it ran with --pepper-file (else KUBE_RELAY_PEPPER, else DATA_DIR/pepper).", default: 'DATA_DIR/pepper' },
    ],
    examples: ['kube-relay store migrate --from ./.kube-relay --to "postgres://kube_relay:$PGPASSWORD@db.internal:5432/kube_relay?sslmode=verify-full"'],
    async run({ values }, io) {
      const from = path.resolve(required(values, 'from', "the SQLite issuer's data directory"));
      const to = required(values, 'to', 'the PostgreSQL store URL');
      const [{ checkPepper, loadOrCreatePepper }, { copyStore }, { migrate }, { isPostgresUrl, openEngine }, { redactStoreUrl }, { sqlStore }] = await Promise.all([
        import('../../issuer/secrets.js'),
        import('../../issuer/store/copy.js'),
        import('../../issuer/store/migrations.js'),
        import('../../issuer/store/open.js'),
        import('../../issuer/store/postgres-engine.js'),
        import('../../issuer/store/sql-store.js'),
      ]);
      if (!existsSync(path.join(from, 'issuer.db'))) throw new UsageError(`--from ${from} holds no issuer.db: give the data directory of the SQLite issuer`);
      if (!isPostgresUrl(to)) throw new UsageError(`--to "${redactStoreUrl(to)}" must be a postgres:// URL`);
      const pepperSource = sourcePepper(from, str(values, 'pepper-file'), io.env);
      const source = await openEngine({ dataDir: from });
      try {
        await migrate(source);
        const target = await openEngine({ dataDir: from, storeUrl: to });
        try {
          await migrate(target);
          const startedAt = Date.now();
          const pepper = loadOrCreatePepper(from, io.env, { pepperFile: pepperSource.file });
          await checkPepper(sqlStore(source), pepper);
          const copied = await copyStore(source, target);
          // Replicas started with another pepper then refuse to start, instead of refusing every key.
          await checkPepper(sqlStore(target), pepper);
          io.stderr(
            `copied ${Object.entries(copied).map(([table, rows]) => `${rows} ${table}`).join(', ')} to ${target.location} in ${Date.now() - startedAt} ms. ` +
              `Start every issuer replica with --store-url and the source's pepper: ${pepperSource.hint}.\n`,
          );
          return 0;
        } finally {
          await target.close();
        }
      } finally {
        await source.close();
      }
    },
  },
];

/** Where the source's pepper is; never made up here (a new pepper would match none of the source's keys). */
function sourcePepper(from: string, pepperFile: string | undefined, env: NodeJS.ProcessEnv): { file?: string; hint: string } {
  if (pepperFile !== undefined) return { file: pepperFile, hint: `--pepper-file ${pepperFile} (or KUBE_RELAY_PEPPER with its content)` };
  if (env.KUBE_RELAY_PEPPER) return { hint: 'the same KUBE_RELAY_PEPPER' };
  const file = path.join(from, 'pepper');
  if (!existsSync(file)) throw new UsageError(`${from} has no pepper file: give the pepper the SQLite issuer ran with (--pepper-file or KUBE_RELAY_PEPPER)`);
  return { file, hint: `--pepper-file ${file} (or KUBE_RELAY_PEPPER with its content)` };
}
