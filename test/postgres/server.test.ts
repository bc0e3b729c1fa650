/**
 * The harness itself: the throwaway server is real PostgreSQL, reachable only on 127.0.0.1, with
 * password authentication that refuses a wrong password, and databases of one's own per test file.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createDatabase, findPostgresBinaries } from './server.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const server = inject('postgres');
const clients: pg.Client[] = [];

async function client(connectionString: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end()));
});

function tcpConnect(host: string, port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('the throwaway PostgreSQL server', () => {
  it('is real PostgreSQL, reached as the test role with a password in the URL', async () => {
    const url = new URL(server.url);
    expect(url.protocol).toBe('postgres:');
    expect(url.hostname).toBe('127.0.0.1');
    expect(decodeURIComponent(url.password)).toBe(server.password);
    expect(server.password.length).toBeGreaterThanOrEqual(16);
    const c = await client(server.url);
    const { rows } = await c.query<{ version: string; user: string; db: string; superuser: string }>(
      "SELECT version() AS version, current_user AS user, current_database() AS db, current_setting('is_superuser') AS superuser",
    );
    expect(rows[0]!.version).toMatch(new RegExp(`^PostgreSQL ${server.version.replaceAll('.', '\\.')}\\b`));
    expect(rows[0]).toMatchObject({ user: server.user, db: server.database, superuser: 'off' });
  });

  it('listens on 127.0.0.1 only, with the throwaway settings', async () => {
    const admin = await client(server.adminUrl);
    const setting = async (name: string) => (await admin.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name])).rows[0]!.setting;
    expect(await setting('listen_addresses')).toBe('127.0.0.1');
    expect(await setting('unix_socket_directories')).toBe(server.dir);
    expect(await setting('fsync')).toBe('off');
    expect(await setting('full_page_writes')).toBe('off');
    expect(await setting('synchronous_commit')).toBe('off');
    expect(Number(await setting('max_connections'))).toBeGreaterThanOrEqual(200);
    expect(await setting('password_encryption')).toBe('scram-sha-256');

    expect(await tcpConnect('127.0.0.1', server.port)).toBe('connected');
    // Another loopback address, IPv6 loopback and every non-loopback address of this machine: nothing listens there.
    const others = ['127.0.0.2', '::1', ...Object.values(networkInterfaces()).flat().filter((a) => a && !a.internal).map((a) => a!.address)];
    for (const host of others) expect(await tcpConnect(host.includes('%') ? host.split('%')[0]! : host, server.port), host).not.toBe('connected');
  });

  it('runs as a non-root user', () => {
    const pid = Number(readFileSync(path.join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    expect(statSync(`/proc/${pid}`).uid).not.toBe(0);
  });

  it('refuses a wrong password, and an unknown role, with scram-sha-256', async () => {
    const wrong = new URL(server.url);
    wrong.password = `${server.password}x`;
    await expect(client(wrong.toString())).rejects.toMatchObject({ code: '28P01' });
    const noPassword = new URL(server.url);
    noPassword.password = '';
    await expect(client(noPassword.toString())).rejects.toThrow();
    const unknown = new URL(server.url);
    unknown.username = 'nobody';
    await expect(client(unknown.toString())).rejects.toMatchObject({ code: '28P01' });
    const admin = await client(server.adminUrl);
    const { rows } = await admin.query<{ rule: string }>("SELECT type || ' ' || auth_method AS rule FROM pg_hba_file_rules ORDER BY line_number");
    expect(rows.map((row) => row.rule.split(' ')[1])).toEqual(rows.map(() => 'scram-sha-256'));
  });

  it('makes a fresh database per caller, owned by the test role and isolated from the others', async () => {
    const first = await createDatabase(server);
    const second = await createDatabase(server, 'harness_second');
    expect(new URL(second).pathname).toBe('/harness_second');
    const a = await client(first);
    const b = await client(second);
    await a.query('CREATE TABLE only_here (id integer PRIMARY KEY)');
    await a.query('INSERT INTO only_here VALUES (1)');
    expect((await a.query('SELECT count(*)::int AS n FROM only_here')).rows[0]).toEqual({ n: 1 });
    await expect(b.query('SELECT 1 FROM only_here')).rejects.toMatchObject({ code: '42P01' });
    await expect(createDatabase(server, 'Bad-Name; DROP')).rejects.toThrow(/lower-case letters/);
  });

  it('was found where Debian puts it, and a machine without the binaries gets a sentence naming the package', () => {
    if (!process.env.KUBE_RELAY_POSTGRES_BINDIR) expect(findPostgresBinaries().binDir).toMatch(/^\/usr\/lib\/postgresql\/\d+\/bin$/);
    const empty = path.join(server.dir, 'no-postgresql-here');
    expect(() => findPostgresBinaries({ root: empty, pgConfig: false })).toThrow(
      `the PostgreSQL tests need PostgreSQL's server binaries (initdb and pg_ctl under ${empty}/<version>/bin), which are not on this machine: install Debian's postgresql package (apt-get install -y postgresql) and run again`,
    );
    expect(() => findPostgresBinaries({ binDir: empty })).toThrow(/holds no executable initdb and pg_ctl.*apt-get install -y postgresql/);
  });

  it('does not outlive a test process that is killed with SIGKILL', async () => {
    const scratch = mkdtempSync(path.join(tmpdir(), 'kube-relay-pg-crash-'));
    try {
      const script = path.join(scratch, 'crash.mts');
      writeFileSync(
        script,
        `import { startPostgres } from ${JSON.stringify(pathToFileURL(path.join(HERE, 'server.ts')).href)};
        const s = await startPostgres();
        const pid = Number((await import('node:fs')).readFileSync(s.dir + '/data/postmaster.pid', 'utf8').split('\\n')[0]);
        process.stdout.write(JSON.stringify({ dir: s.dir, pid }) + '\\n');
        setInterval(() => {}, 1000);`,
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: path.join(HERE, '../..'), stdio: ['ignore', 'pipe', 'inherit'] });
      const started = await new Promise<{ dir: string; pid: number }>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { dir: string; pid: number });
        });
        child.once('exit', (code) => reject(new Error(`the child exited (${code}) before starting PostgreSQL`)));
      });
      expect(alive(started.pid)).toBe(true);
      child.kill('SIGKILL');
      const deadline = Date.now() + 20_000;
      while ((alive(started.pid) || existsSync(started.dir)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(alive(started.pid), 'the postmaster outlived its test process').toBe(false);
      expect(existsSync(started.dir), 'the data directory outlived its test process').toBe(false);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
