/**
 * `kube-relay sessions list|show` and `kube-relay audit` (DESIGN §12) on the local store and
 * through a real issuer's admin API, with the same output on both: the tables, the JSON, the
 * filters, an org admin confined to its org (another org's session is not found), and refusals
 * of a bad time or limit with the same sentence and exit status on both paths.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningIssuer, startIssuer } from '../../src/issuer/server.js';
import { createLogger } from '../../src/log.js';
import { auditRecord, ingestInto } from '../helpers/audit-records.js';
import { runCli } from '../helpers/cli.js';

/** Two hours ago: every session has ended. */
const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

const records = [
  auditRecord('deployer', 'prod', T0, { kubectlSession: 'k1', kubectlCommand: 'kubectl get', verb: 'list' }),
  auditRecord('deployer', 'prod', T0 + MINUTE, { kubectlSession: 'k2', kubectlCommand: 'kubectl exec', verb: 'exec', subresource: 'exec', name: 'web-0', container: 'app', command: ['sh', '-c', 'id'], status: 101, durationMs: 3_000 }),
  auditRecord('deployer', 'prod', T0 + 2 * MINUTE, { verb: 'delete', name: 'web-0', decision: 'denied-by-cluster', status: 403 }),
  auditRecord(null, 'prod', T0 + 3 * MINUTE, { resource: '', namespace: '', path: '/version', decision: 'denied-by-relay', status: 401 }),
];
const globexRecord = auditRecord('tester', 'lab', T0 + 30 * MINUTE, { verb: 'create', decision: 'error', status: 502 });

let issuer: RunningIssuer;
let data: string;
let remote: string[];
let acmeRemote: string[];

beforeAll(async () => {
  const work = await mkdtemp(path.join(tmpdir(), 'kube-relay-sessions-cli-'));
  data = path.join(work, 'data');
  for (const args of [
    ['admin', 'create', 'root', '--all-orgs', '--out', path.join(work, 'root.admin-key')],
    ['admin', 'create', 'acme-platform', '--org', 'acme', '--out', path.join(work, 'acme.admin-key')],
    ['cluster', 'create', 'prod', '--org', 'acme', '--out', path.join(work, 'prod.connector-key')],
    ['cluster', 'create', 'lab', '--org', 'globex', '--out', path.join(work, 'lab.connector-key')],
    ['agent', 'create', 'deployer', '--org', 'acme', '--team', 'sre', '--out', path.join(work, 'deployer.api-key')],
    ['agent', 'create', 'tester', '--org', 'globex', '--team', 'qa', '--out', path.join(work, 'tester.api-key')],
  ]) {
    const result = await runCli([...args, '--data', data]);
    expect(result.code, result.stderr).toBe(0);
  }
  await ingestInto(data, [
    { cluster: { name: 'prod', org: 'acme' }, records },
    { cluster: { name: 'lab', org: 'globex' }, records: [globexRecord] },
  ]);
  issuer = await startIssuer({ dataDir: data, listen: { host: '127.0.0.1', port: 0 }, keyRotationIntervalMs: 86_400_000, log: createLogger('error') });
  const trust = ['--issuer', issuer.url, '--issuer-ca-file', issuer.caFile!];
  remote = [...trust, '--admin-key-file', path.join(work, 'root.admin-key')];
  acmeRemote = [...trust, '--admin-key-file', path.join(work, 'acme.admin-key')];
});
afterAll(async () => {
  await issuer?.close();
});

const local = () => ['--data', data];

let ids: { deployer: string; tester: string } | undefined;

/** The id of each agent's one session, as `sessions list` shows it. */
async function sessionIds(): Promise<{ deployer: string; tester: string }> {
  if (ids) return ids;
  const listed = JSON.parse((await runCli(['sessions', 'list', '-o', 'json', ...local()])).stdout) as { items: { id: string; agent: string }[] };
  ids = { deployer: listed.items.find((s) => s.agent === 'deployer')!.id, tester: listed.items.find((s) => s.agent === 'tester')!.id };
  return ids;
}

/** The same arguments locally and through the all-orgs admin's API: the same result. */
async function sameOnBothPaths(args: string[]) {
  const here = await runCli([...args, ...local()]);
  const there = await runCli([...args, ...remote]);
  expect(here.code, here.stderr).toBe(0);
  expect(there).toEqual(here);
  return here;
}

describe('sessions list', () => {
  it('prints one row per session, newest first, the same table and JSON on both paths', async () => {
    const { deployer, tester } = await sessionIds();
    const table = (await sameOnBothPaths(['sessions', 'list'])).stdout.split('\n');
    expect(table[0]).toMatch(/^ID\s+AGENT\s+CLUSTER\s+STARTED\s+ENDED\s+DURATION\s+REQUESTS\s+REFUSALS\s+COMMANDS$/);
    expect(table[1]).toMatch(new RegExp(`^${tester}\\s+tester\\s+lab\\s+${iso(T0 + 30 * MINUTE)}\\s+${iso(T0 + 30 * MINUTE + 20)}\\s+20ms\\s+1\\s+1\\s+0$`));
    expect(table[2]).toMatch(new RegExp(`^${deployer}\\s+deployer\\s+prod\\s+${iso(T0)}\\s+${iso(T0 + 2 * MINUTE + 20)}\\s+2m\\s+3\\s+1\\s+3$`));
    expect(table).toHaveLength(4);
    const json = JSON.parse((await sameOnBothPaths(['sessions', 'list', '-o', 'json'])).stdout) as { items: Record<string, unknown>[] };
    expect(Object.keys(json)).toEqual(['items']);
    expect(json.items[1]).toMatchObject({ id: deployer, agent: 'deployer', org: 'acme', cluster: 'prod', kind: 'activity', open: false, durationMs: 2 * MINUTE + 20, requests: 3, refusals: 1 });
  });

  it('filters, and --limit cuts the page', async () => {
    expect((await sameOnBothPaths(['sessions', 'list', '--agent', 'deployer', '-o', 'json'])).stdout).not.toContain('tester');
    expect(JSON.parse((await sameOnBothPaths(['sessions', 'list', '--org', 'globex', '-o', 'json'])).stdout).items).toHaveLength(1);
    expect(JSON.parse((await sameOnBothPaths(['sessions', 'list', '--since', '1h', '-o', 'json'])).stdout).items).toEqual([]);
    expect(JSON.parse((await sameOnBothPaths(['sessions', 'list', '--until', iso(T0 + MINUTE), '-o', 'json'])).stdout).items).toHaveLength(1);
    const cut = await sameOnBothPaths(['sessions', 'list', '--limit', '1']);
    expect(cut.stdout.split('\n')).toHaveLength(3);
    expect(cut.stderr).toBe('');
  });

  it("confines an org admin to its org's sessions", async () => {
    const acme = await runCli(['sessions', 'list', ...acmeRemote]);
    expect(acme.code, acme.stderr).toBe(0);
    expect(acme.stdout).toContain('deployer');
    expect(acme.stdout).not.toContain('tester');
  });
});

describe('sessions show', () => {
  it('prints the session, its commands and its requests in order, the same on both paths', async () => {
    const { deployer: id } = await sessionIds();
    const shown = await sameOnBothPaths(['sessions', 'show', id]);
    expect(shown.stdout).toBe(
      [
        `id:        ${id}`,
        'agent:     deployer',
        'org:       acme',
        'cluster:   prod',
        'kind:      activity',
        `started:   ${iso(T0)}`,
        `ended:     ${iso(T0 + 2 * MINUTE + 20)}`,
        'duration:  2m',
        'requests:  3',
        'refusals:  1',
        '',
        'Commands:',
        `  ${iso(T0)}  kubectl  kubectl get`,
        `  ${iso(T0 + MINUTE)}  kubectl  kubectl exec`,
        `  ${iso(T0 + MINUTE)}  exec     sh -c id      default/web-0  container app`,
        '',
        'Requests:',
        'TIME                      VERB    RESOURCE           NAME   STATUS  DECISION',
        `${iso(T0 + 20)}  list    default/pods       -      200     allowed`,
        `${iso(T0 + MINUTE + 3_000)}  exec    default/pods/exec  web-0  101     allowed`,
        `${iso(T0 + 2 * MINUTE + 20)}  delete  default/pods       web-0  403     denied-by-cluster`,
        '',
      ].join('\n'),
    );
    const json = JSON.parse((await sameOnBothPaths(['sessions', 'show', id, '-o', 'json'])).stdout) as { session: { id: string }; requests: Record<string, unknown>[] };
    expect(Object.keys(json)).toEqual(['session', 'requests']);
    expect(json.session.id).toBe(id);
    expect(json.requests).toEqual(records.slice(0, 3).map((r) => ({ ...r, org: 'acme', session: id })));
    expect(JSON.parse((await sameOnBothPaths(['sessions', 'show', id, '--limit', '2', '-o', 'json'])).stdout).requests).toHaveLength(2);
  });

  it("says another org's session is not found, as a missing one", async () => {
    const { tester } = await sessionIds();
    expect(await runCli(['sessions', 'show', tester, ...acmeRemote])).toEqual({ code: 2, stdout: '', stderr: `kube-relay: no session "${tester}"; see kube-relay sessions list\n` });
    const missing = await runCli(['sessions', 'show', 's-nothing', ...local()]);
    expect(missing).toEqual({ code: 2, stdout: '', stderr: 'kube-relay: no session "s-nothing"; see kube-relay sessions list\n' });
  });
});

describe('audit', () => {
  it('prints the records oldest first, the same table and JSON on both paths', async () => {
    const { deployer, tester } = await sessionIds();
    const table = (await sameOnBothPaths(['audit'])).stdout.split('\n');
    expect(table[0]).toMatch(/^TIME\s+AGENT\s+CLUSTER\s+VERB\s+RESOURCE\s+NAME\s+STATUS\s+DECISION\s+SESSION$/);
    expect(table[2]).toMatch(new RegExp(`^${iso(T0 + MINUTE + 3_000)}\\s+deployer\\s+prod\\s+exec\\s+default/pods/exec\\s+web-0\\s+101\\s+allowed\\s+${deployer}$`));
    expect(table[4]).toMatch(new RegExp(`^${iso(T0 + 3 * MINUTE + 20)}\\s+-\\s+prod\\s+get\\s+/version\\s+-\\s+401\\s+denied-by-relay\\s+-$`));
    expect(table[5]).toMatch(new RegExp(`^${iso(T0 + 30 * MINUTE + 20)}\\s+tester\\s+lab\\s+create\\s+default/pods\\s+-\\s+502\\s+error\\s+${tester}$`));
    const json = JSON.parse((await sameOnBothPaths(['audit', '--cluster', 'prod', '-o', 'json'])).stdout) as { items: Record<string, unknown>[] };
    expect(json).toEqual({ items: records.map((r, i) => ({ ...r, org: 'acme', session: i < 3 ? deployer : null })) });
  });

  it('filters by verb, decision, session, agent and time', async () => {
    const { deployer } = await sessionIds();
    const requestIds = async (args: string[]) => (JSON.parse((await sameOnBothPaths(['audit', ...args, '-o', 'json'])).stdout) as { items: { requestId: string }[] }).items.map((r) => r.requestId);
    expect(await requestIds(['--verb', 'exec'])).toEqual([records[1]!.requestId]);
    expect(await requestIds(['--decision', 'denied-by-cluster', '--agent', 'deployer'])).toEqual([records[2]!.requestId]);
    expect(await requestIds(['--session', deployer, '--limit', '2'])).toEqual([records[0]!.requestId, records[1]!.requestId]);
    expect(await requestIds(['--since', iso(T0 + 10 * MINUTE), '--until', '1h'])).toEqual([globexRecord.requestId]);
  });

  it.each([
    [['audit', '--since', 'yesterday'], 'kube-relay: since: "yesterday" is neither an RFC 3339 time nor a duration such as 1h\n'],
    [['sessions', 'list', '--until', 'noon'], 'kube-relay: until: "noon" is neither an RFC 3339 time nor a duration such as 1h\n'],
    [['audit', '--decision', 'maybe'], 'kube-relay: decision: "maybe" is not one of allowed, denied-by-relay, denied-by-policy, denied-by-cluster, error\n'],
    [['audit', '--limit', '5000'], 'kube-relay: limit must be a whole number from 1 to 1000, not 5000\n'],
  ])('%j is refused with exit 2 and the same sentence on both paths', async (args, stderr) => {
    const here = await runCli([...args, ...local()]);
    expect(here).toEqual({ code: 2, stdout: '', stderr });
    expect(await runCli([...args, ...remote])).toEqual(here);
  });

  it('a --limit that is no number is misuse', async () => {
    expect(await runCli(['audit', '--limit', 'all', ...local()])).toEqual({ code: 2, stdout: '', stderr: 'kube-relay: --limit "all" is not a whole number of at least 1\nRun "kube-relay audit --help" for usage.\n' });
  });
});
