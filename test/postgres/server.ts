/**
 * A throwaway PostgreSQL server for the store tests: Debian's server
 * binaries (the `postgresql` package), a cluster made by initdb in a
 * temporary directory, listening on 127.0.0.1 only on a free port, with
 * durability switched off for speed, scram-sha-256 password authentication
 * everywhere (so URLs carry a password like a real one), stopped and
 * removed afterwards.
 *
 * PostgreSQL refuses to run as root. Run as root (as CI does), initdb and
 * pg_ctl run as the `postgres` system user the Debian package creates
 * (through runuser, or setpriv), and the directory is handed to that user.
 *
 * Nothing is left behind by a crashed run: stop() stops the server, an exit
 * handler stops it when the process exits without calling stop(), and a
 * detached watchdog holding a pipe from this process stops it when the
 * process dies in a way no handler sees (SIGKILL, a signal's default action).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chownSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../helpers/free-port.js';

const INSTALL = "install Debian's postgresql package (apt-get install -y postgresql) and run again";

export interface StartPostgresOptions {
  /** Directory holding initdb and pg_ctl. Default: env KUBE_RELAY_POSTGRES_BINDIR, else the newest /usr/lib/postgresql/<version>/bin. */
  binDir?: string;
  /** The test role (not a superuser; owns the database). Default kube_relay_test. */
  user?: string;
  /** The test role's password. Default: random, 24 URL-safe characters. */
  password?: string;
  /** The database the returned url names, owned by the test role. Default kube_relay_test. */
  database?: string;
  /** The system user that runs the server when this process is root. Default postgres. */
  osUser?: string;
  /** max_connections. Default 200. */
  maxConnections?: number;
  /** Further postgresql.conf settings, e.g. { log_statement: 'all' }. */
  settings?: Record<string, string | number | boolean>;
}

/** Where the server is and how to log in: plain data, so a vitest globalSetup can provide() it to test files. */
export interface PostgresCoordinates {
  /** postgres://<user>:<password>@127.0.0.1:<port>/<database>, as the test role. */
  url: string;
  /** The same server as the superuser (its own random password), for creating databases and inspecting the server. */
  adminUrl: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The server's version, e.g. "15.18". */
  version: string;
  /** The temporary directory: data/ (the cluster), postgres.log, the unix socket. */
  dir: string;
  logFile: string;
}

export interface PostgresServer extends PostgresCoordinates {
  /** Creates a fresh, empty database owned by the test role and returns its URL (as the test role). */
  createDatabase(name?: string): Promise<string>;
  /** pg_ctl stop -m fast, then removes the directory. Idempotent. */
  stop(): Promise<void>;
}

export interface PostgresBinaries {
  binDir: string;
  initdb: string;
  pgCtl: string;
  /** The major version the directory is named for, or what initdb --version says. */
  version: string;
}

export interface FindPostgresOptions {
  /** Look only here. Default: env KUBE_RELAY_POSTGRES_BINDIR, else the search below. */
  binDir?: string;
  /** Where Debian installs each server version (<root>/<version>/bin): the newest wins. Default /usr/lib/postgresql. */
  root?: string;
  /** Then ask `pg_config --bindir` (other layouts); false skips it. */
  pgConfig?: boolean;
}

/** Finds initdb and pg_ctl; throws a sentence naming the package when they are not there. */
export function findPostgresBinaries(options: FindPostgresOptions = {}): PostgresBinaries {
  const binDir = options.binDir ?? process.env.KUBE_RELAY_POSTGRES_BINDIR;
  const root = options.root ?? '/usr/lib/postgresql';
  const candidates: string[] = [];
  if (binDir) {
    candidates.push(binDir);
  } else {
    const versions = existsSync(root) ? readdirSync(root).filter((name) => /^\d+(\.\d+)*$/.test(name)) : [];
    versions.sort((a, b) => compareVersions(b, a));
    candidates.push(...versions.map((version) => path.join(root, version, 'bin')));
    const configured = options.pgConfig === false ? undefined : pgConfigBindir();
    if (configured) candidates.push(configured);
  }
  for (const dir of candidates) {
    const initdb = path.join(dir, 'initdb');
    const pgCtl = path.join(dir, 'pg_ctl');
    if (isExecutable(initdb) && isExecutable(pgCtl)) {
      const fromPath = /\/postgresql\/(\d+(?:\.\d+)*)\/bin\/?$/.exec(dir)?.[1];
      return { binDir: dir, initdb, pgCtl, version: fromPath ?? initdbVersion(initdb) };
    }
  }
  if (binDir) {
    throw new Error(`KUBE_RELAY_POSTGRES_BINDIR (or binDir) is ${binDir}, which holds no executable initdb and pg_ctl: point it at PostgreSQL's server binaries, or unset it and ${INSTALL}`);
  }
  throw new Error(`the PostgreSQL tests need PostgreSQL's server binaries (initdb and pg_ctl under ${root}/<version>/bin), which are not on this machine: ${INSTALL}`);
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const binaries = findPostgresBinaries({ binDir: options.binDir });
  const user = options.user ?? 'kube_relay_test';
  const database = options.database ?? 'kube_relay_test';
  const password = options.password ?? randomBytes(18).toString('base64url');
  const adminUser = 'postgres';
  const adminPassword = randomBytes(18).toString('base64url');
  checkIdentifier(user, 'user');
  checkIdentifier(database, 'database');
  const runAs = asUser(options.osUser ?? 'postgres');

  const dir = mkdtempSync(path.join(tmpdir(), 'kube-relay-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const server: LiveServer = { pgCtl: binaries.pgCtl, data, dir, prefix: runAs.prefix, stopped: false };
  live.add(server);
  installExitHandler();
  try {
    const pwfile = path.join(dir, 'pwfile');
    writeFileSync(pwfile, `${adminPassword}\n`, { mode: 0o600 });
    if (runAs.ids) {
      chownSync(dir, runAs.ids.uid, runAs.ids.gid);
      chownSync(pwfile, runAs.ids.uid, runAs.ids.gid);
      // The directory sits in TMPDIR; the server's user must be able to reach it.
      await run(runAs.prefix, 'test', ['-w', dir, '-a', '-x', dir], dir).catch(() => {
        throw new Error(`the ${runAs.name} user cannot reach ${dir} (one of its parent directories is closed to it): set TMPDIR to a directory it can reach, such as /tmp`);
      });
    }
    await run(runAs.prefix, binaries.initdb, [
      '-D', data, '-U', adminUser, `--pwfile=${pwfile}`, '--auth=scram-sha-256',
      '--encoding=UTF8', '--no-locale', '--no-sync',
    ], dir);
    rmSync(pwfile);
    writeFileSync(
      path.join(data, 'postgresql.conf'),
      `${readFileSync(path.join(data, 'postgresql.conf'), 'utf8')}\n# kube-relay test harness: a throwaway server\n${settingsText({
        listen_addresses: '127.0.0.1',
        unix_socket_directories: dir,
        fsync: false,
        full_page_writes: false,
        synchronous_commit: false,
        max_connections: options.maxConnections ?? 200,
        password_encryption: 'scram-sha-256',
        logging_collector: false,
        ...options.settings,
      })}`,
    );

    startWatchdog(server);
    const port = await startOnFreePort(server, logFile, runAs.prefix);
    const host = '127.0.0.1';
    const adminUrl = urlFor(adminUser, adminPassword, host, port, 'postgres');
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    let version: string;
    try {
      // Identifiers were checked above; the password goes as a literal the server quotes itself.
      const literal = (await admin.query<{ quoted: string }>('SELECT quote_literal($1::text) AS quoted', [password])).rows[0]!.quoted;
      await admin.query(`CREATE ROLE ${quoteIdentifier(user)} LOGIN PASSWORD ${literal}`);
      await admin.query(`CREATE DATABASE ${quoteIdentifier(database)} OWNER ${quoteIdentifier(user)}`);
      version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version.split(' ')[0]!;
    } finally {
      await admin.end();
    }
    const coordinates: PostgresCoordinates = {
      url: urlFor(user, password, host, port, database),
      adminUrl,
      host,
      port,
      user,
      password,
      database,
      version,
      dir,
      logFile,
    };
    return {
      ...coordinates,
      createDatabase: (name) => createDatabase(coordinates, name),
      stop: () => stopServer(server),
    };
  } catch (err) {
    const log = existsSync(logFile) ? `\n${readFileSync(logFile, 'utf8').trim().split('\n').slice(-20).join('\n')}` : '';
    await stopServer(server);
    throw new Error(`the test PostgreSQL server did not start: ${(err as Error).message}${log}`);
  }
}

/**
 * Creates a fresh, empty database owned by the test role (through the superuser URL) and returns its
 * URL as the test role. Usable from a test file with the coordinates a globalSetup provided.
 */
export async function createDatabase(server: Pick<PostgresCoordinates, 'adminUrl' | 'url' | 'user'>, name = `test_${randomBytes(6).toString('hex')}`): Promise<string> {
  checkIdentifier(name, 'database');
  const admin = new pg.Client({ connectionString: server.adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${quoteIdentifier(name)} OWNER ${quoteIdentifier(server.user)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

interface LiveServer {
  pgCtl: string;
  data: string;
  dir: string;
  prefix: string[];
  stopped: boolean;
  watchdog?: ChildProcess;
}

const live = new Set<LiveServer>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  // Synchronous on purpose: nothing asynchronous runs in an 'exit' handler.
  process.on('exit', () => {
    for (const server of live) {
      server.watchdog?.kill('SIGKILL');
      try {
        execFileSync(...command(server.prefix, server.pgCtl, ['stop', '-D', server.data, '-m', 'immediate', '-w', '-t', '10']), { stdio: 'ignore', cwd: server.dir, env: cleanEnv() });
      } catch {
        // Not running (never started, or already gone).
      }
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

async function stopServer(server: LiveServer): Promise<void> {
  if (server.stopped) return;
  server.stopped = true;
  server.watchdog?.kill('SIGKILL');
  try {
    if (existsSync(path.join(server.data, 'postmaster.pid'))) {
      await run(server.prefix, server.pgCtl, ['stop', '-D', server.data, '-m', 'fast', '-w', '-t', '30'], server.dir);
    }
  } finally {
    rmSync(server.dir, { recursive: true, force: true });
    live.delete(server);
  }
}

/**
 * A detached process that stops the server and removes its directory when this process dies: it reads
 * a pipe from this process, and the kernel closes the pipe however this process ends.
 */
function startWatchdog(server: LiveServer): void {
  const [file, args] = command(server.prefix, server.pgCtl, ['stop', '-D', server.data, '-m', 'immediate', '-w', '-t', '10']);
  const script = `
    const { execFileSync } = require('node:child_process');
    const { rmSync } = require('node:fs');
    const [file, args, dir] = JSON.parse(process.argv[1]);
    process.stdin.resume();
    process.stdin.on('close', () => {
      try { execFileSync(file, args, { stdio: 'ignore', cwd: dir }); } catch {}
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });`;
  const watchdog = spawn(process.execPath, ['-e', script, JSON.stringify([file, args, server.dir])], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    cwd: server.dir,
    env: cleanEnv(),
  });
  watchdog.on('error', () => {});
  watchdog.unref();
  watchdog.stdin!.on('error', () => {});
  (watchdog.stdin as unknown as { unref(): void }).unref();
  server.watchdog = watchdog;
}

async function startOnFreePort(server: LiveServer, logFile: string, prefix: string[]): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      await run(prefix, server.pgCtl, ['start', '-D', server.data, '-l', logFile, '-w', '-t', '60', '-o', `-p ${port}`], server.dir);
      return port;
    } catch (err) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      // Another process took the port between our probe and the server's bind: try another.
      if (attempt < 5 && /could not bind|Address already in use|could not create any TCP\/IP sockets/.test(log)) continue;
      throw err;
    }
  }
}


/** How to run the server's programs: directly, or, as root, as the given system user. */
function asUser(name: string): { name: string; prefix: string[]; ids?: { uid: number; gid: number } } {
  if (process.getuid?.() !== 0) return { name: 'current', prefix: [] };
  let uid: number;
  let gid: number;
  try {
    uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    throw new Error(
      `this process runs as root and PostgreSQL refuses to run as root, so the harness runs it as the ${name} system user, which does not exist here: ${INSTALL} (it creates that user), or run the tests as a non-root user`,
    );
  }
  if (uid === 0) throw new Error(`the ${name} user is root, and PostgreSQL refuses to run as root: pick a non-root system user`);
  if (isExecutable('/usr/sbin/runuser') || isExecutable('/sbin/runuser')) {
    const runuser = isExecutable('/usr/sbin/runuser') ? '/usr/sbin/runuser' : '/sbin/runuser';
    return { name, prefix: [runuser, '-u', name, '--'], ids: { uid, gid } };
  }
  if (isExecutable('/usr/bin/setpriv')) {
    return { name, prefix: ['/usr/bin/setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--'], ids: { uid, gid } };
  }
  throw new Error(`this process runs as root and PostgreSQL refuses to run as root; switching to the ${name} user needs runuser or setpriv (Debian's util-linux package): install it, or run the tests as a non-root user`);
}

function command(prefix: string[], file: string, args: string[]): [string, string[]] {
  const full = [...prefix, file, ...args];
  return [full[0]!, full.slice(1)];
}

function run(prefix: string[], file: string, args: string[], cwd: string): Promise<string> {
  const [bin, argv] = command(prefix, file, args);
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { cwd, env: cleanEnv(), timeout: 120_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} ${args[0] ?? ''} failed (${err.message.split('\n')[0]}): ${`${stderr}${stdout}`.trim()}`));
      else resolve(stdout);
    });
  });
}

/** The environment without PG* variables (PGPORT, PGDATA, ... would change what the programs do) and with a C locale. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG') && !key.startsWith('LC_')) env[key] = value;
  env.LANG = 'C';
  return env;
}

function settingsText(settings: Record<string, string | number | boolean>): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key} = ${typeof value === 'string' ? `'${value.replaceAll("'", "''")}'` : typeof value === 'boolean' ? (value ? 'on' : 'off') : value}`)
    .join('\n') + '\n';
}

function urlFor(user: string, password: string, host: string, port: number, database: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
}

function checkIdentifier(name: string, what: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`${what} name ${JSON.stringify(name)} must be lower-case letters, digits and underscores (at most 63)`);
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function pgConfigBindir(): string | undefined {
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function initdbVersion(initdb: string): string {
  try {
    return /(\d+(?:\.\d+)*)/.exec(execFileSync(initdb, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}
