/** The PostgreSQL database the benchmarks measure (bench/audit-scale.ts, bench/central-audit.ts): yours, or a throwaway server. */
import path from 'node:path';
import pg from 'pg';
import { createDatabase, startPostgres } from '../../test/postgres/server.js';

/** A server setting, as SHOW gives it. */
export async function show(client: pg.Client, name: string): Promise<string> {
  return (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]!;
}

/**
 * The PostgreSQL database: on yours (on this machine), or on a throwaway server (durable unless `noSync`);
 * of a throwaway server also the postmaster's pid file (DATA/postmaster.pid), to find its processes.
 */
export async function postgresDatabase(noSync: boolean): Promise<{ url: string; version: string; postmasterPidFile?: string; close(): Promise<void> }> {
  const adminUrl = process.env.KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL;
  if (adminUrl) {
    const { hostname, username } = new URL(adminUrl);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) throw new Error('KUBE_RELAY_BENCH_POSTGRES_ADMIN_URL must name a server on this machine (127.0.0.1, localhost or [::1])');
    const server = { adminUrl, url: adminUrl, user: decodeURIComponent(username) };
    const name = `kube_relay_bench_${process.pid}_audit`;
    const url = await createDatabase(server, name);
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const version = (await show(client, 'server_version')).split(' ')[0]!;
    return {
      url,
      version,
      async close() {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await client.end();
      },
    };
  }
  const durable: Record<string, boolean> = noSync ? {} : { fsync: true, full_page_writes: true, synchronous_commit: true };
  const server = await startPostgres({ settings: durable });
  return { url: await server.createDatabase(), version: server.version, postmasterPidFile: path.join(server.dir, 'data', 'postmaster.pid'), close: () => server.stop() };
}
