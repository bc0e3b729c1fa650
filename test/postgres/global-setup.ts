/**
 * Starts the one throwaway PostgreSQL server for the whole run and hands its coordinates to the
 * test files (inject('postgres')); each file can make a database of its own with createDatabase().
 */
import type { TestProject } from 'vitest/node';
import { type PostgresCoordinates, type PostgresServer, startPostgres } from './server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The throwaway server: url (the test role, its own database), adminUrl (superuser), and the rest. */
    postgres: PostgresCoordinates;
  }
}

let server: PostgresServer | undefined;

export default async function setup(project: TestProject) {
  const started = Date.now();
  server = await startPostgres();
  process.stderr.write(`postgres: PostgreSQL ${server.version} up on 127.0.0.1:${server.port} in ${((Date.now() - started) / 1000).toFixed(1)} s (${server.dir})\n`);
  const { createDatabase: _createDatabase, stop: _stop, ...coordinates } = server;
  project.provide('postgres', coordinates);
  return async () => {
    await server?.stop();
  };
}
