/**
 * The `kube-relay` command line (DESIGN §6). Thin: it parses flags (each with
 * an env twin `KUBE_RELAY_<FLAG>`), then calls into src/issuer, src/relay and
 * src/client. Misuse prints a sentence on stderr and exits 2; failures exit 1.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type AuditConfig, DEFAULT_AUDIT_BUFFER_RECORDS, WHEN_FULL, type WhenFull } from '../audit/sink.js';
import { buildKubeconfig } from '../client/kubeconfig.js';
import { execCredential, requestToken } from '../client/token.js';
import { InvalidInputError, Registry } from '../issuer/registry.js';
import { loadOrCreatePepper } from '../issuer/secrets.js';
import { startIssuer } from '../issuer/server.js';
import { SigningKeys } from '../issuer/signing-keys.js';
import { AlreadyExistsError, openSqliteStore } from '../issuer/store.js';
import { createLogger, isLogLevel, LOG_LEVELS, type LogLevel } from '../log.js';
import { parseHostPort } from '../net.js';
import { DEFAULT_MAX_STREAMS_PER_AGENT, startRelay } from '../relay/server.js';
import { inClusterUpstream, upstreamFromKubeconfig, UpstreamConfigError } from '../relay/upstream.js';
import { parseDuration } from './duration.js';

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const GLOBAL_OPTIONS: Options = {
  data: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const USAGE = `Usage: kube-relay <command> [flags]

Commands:
  issuer [--listen HOST:PORT] [--public-url URL] [--tls-cert F --tls-key F] [--tls-san NAME]... [--admin-listen HOST:PORT]
         [--hub-replicas N [--hub-replica-id ID]] [AUDIT]
  issuer rotate-keys
  agent create NAME --org ORG --team TEAM [--team TEAM]...
  agent list | agent revoke NAME
  cluster create NAME --org ORG
  cluster list | cluster revoke NAME
  token --issuer URL --cluster NAME [--ca-file F] [--api-key-file F] [--raw]
  kubeconfig --issuer URL --cluster NAME --server URL [--ca-file F] [--issuer-ca-file F] [--api-key-file F]
  relay --cluster NAME --issuer URL --mode tunnel --hub URL --connector-key-file F [--kubeconfig F [--context C]]
  relay --cluster NAME --issuer URL --mode direct --listen HOST:PORT [--kubeconfig F [--context C]]
        [--tls-cert F --tls-key F] [--tls-san NAME]... [--issuer-ca-file F] [--jwks-file F]
        [--admin-listen HOST:PORT] [--max-stream-duration DURATION] [--max-streams-per-agent N] [AUDIT]

AUDIT (the relay's records; the issuer's hub records the requests it refuses before a tunnel):
  [--audit-file F|- [--audit-file-max-size SIZE [--audit-file-max-backups N]]] (default: stdout, unless a webhook is set)
  [--audit-webhook-url URL [--audit-webhook-ca-file F] [--audit-webhook-token-file F]]
  [--audit-when-full block|fail] [--audit-buffer-records N]

Global flags: --data DIR (env KUBE_RELAY_DATA, default ./.kube-relay), --log-level debug|info|warn|error.
Every flag has an environment twin KUBE_RELAY_<FLAG>, for example KUBE_RELAY_ISSUER_CA_FILE.
`;

const defaultIo: Io = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`kube-relay: ${err.message}\nRun "kube-relay --help" for usage.\n`);
      return 2;
    }
    if (err instanceof InvalidInputError || err instanceof AlreadyExistsError || err instanceof UpstreamConfigError) {
      io.stderr(`kube-relay: ${err.message}\n`);
      return err instanceof UpstreamConfigError ? 1 : 2;
    }
    io.stderr(`kube-relay: ${(err as Error).message}\n`);
    return 1;
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError('a command is required');
  if (command === '--help' || command === '-h' || command === 'help') {
    io.stdout(USAGE);
    return 0;
  }
  switch (command) {
    case 'issuer':
      return rest[0] === 'rotate-keys' ? rotateKeys(rest.slice(1), io) : runIssuer(rest, io);
    case 'agent':
      return agentCommand(rest, io);
    case 'cluster':
      return clusterCommand(rest, io);
    case 'token':
      return tokenCommand(rest, io);
    case 'kubeconfig':
      return kubeconfigCommand(rest, io);
    case 'relay':
      return runRelay(rest, io);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Parses flags strictly, fills unset ones from `KUBE_RELAY_<FLAG>`, and returns positionals. */
function parse(args: string[], options: Options, io: Io, positionalCount: number): { values: Values; positionals: string[] } {
  const all = { ...GLOBAL_OPTIONS, ...options };
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: all, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] };
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^Unknown option/, 'unknown flag').split('. ')[0]!);
  }
  for (const [name, spec] of Object.entries(all)) {
    if (parsed.values[name] !== undefined || spec.type === 'boolean') continue;
    const fromEnv = io.env[`KUBE_RELAY_${name.toUpperCase().replace(/-/g, '_')}`];
    if (fromEnv === undefined || fromEnv === '') continue;
    parsed.values[name] = spec.multiple ? fromEnv.split(',').map((v) => v.trim()) : fromEnv;
  }
  logLevel(parsed.values);
  if (parsed.positionals.length > positionalCount) {
    throw new UsageError(`unexpected argument "${parsed.positionals[positionalCount]}"`);
  }
  return parsed;
}

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function required(values: Values, name: string, what: string): string {
  const value = str(values, name);
  if (value === undefined || value === '') throw new UsageError(`--${name} is required: ${what}`);
  return value;
}

function dataDir(values: Values): string {
  return path.resolve(str(values, 'data') ?? '.kube-relay');
}

function logLevel(values: Values): LogLevel {
  const level = str(values, 'log-level') ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

function readFileFlag(values: Values, name: string): string | undefined {
  const file = str(values, name);
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--${name} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Opens the data directory's store for one command and closes it afterwards. */
function withRegistry(values: Values, io: Io, use: (registry: Registry) => void): number {
  const dir = dataDir(values);
  const store = openSqliteStore(dir);
  try {
    use(new Registry(store, loadOrCreatePepper(dir, io.env)));
  } finally {
    store.close();
  }
  return 0;
}

function agentCommand(args: string[], io: Io): number {
  const [action, ...rest] = args;
  if (action === 'create') {
    const { values, positionals } = parse(rest, { org: { type: 'string' }, team: { type: 'string', multiple: true } }, io, 1);
    const name = positionals[0];
    if (!name) throw new UsageError('agent create needs a NAME');
    const org = required(values, 'org', 'the org the agent belongs to');
    const teams = (values.team as string[] | undefined) ?? [];
    if (teams.length === 0) throw new UsageError('--team is required: at least one team of the agent');
    return withRegistry(values, io, (registry) => {
      io.stdout(`${registry.createAgent(name, org, teams)}\n`);
      io.stderr(`agent "${name}" created (user agent:${name}, groups ${teams.map((t) => `${org}/${t}`).join(', ')}). The API key above is shown only once.\n`);
    });
  }
  if (action === 'list') {
    const { values } = parse(rest, {}, io, 0);
    return withRegistry(values, io, (registry) => {
      const rows = registry.listAgents().map((a) => [a.name, a.org, a.teams.join(','), status(a.revokedAt)]);
      io.stdout(table(['NAME', 'ORG', 'TEAMS', 'STATUS'], rows));
    });
  }
  if (action === 'revoke') {
    const { values, positionals } = parse(rest, {}, io, 1);
    if (!positionals[0]) throw new UsageError('agent revoke needs a NAME');
    const name = positionals[0];
    return withRegistry(values, io, (registry) => {
      registry.revokeAgent(name);
      io.stderr(`agent "${name}" revoked: no new tokens; relays refuse its current ones within 10 s.\n`);
    });
  }
  throw new UsageError('agent needs an action: create, list or revoke');
}

function clusterCommand(args: string[], io: Io): number {
  const [action, ...rest] = args;
  if (action === 'create') {
    const { values, positionals } = parse(rest, { org: { type: 'string' } }, io, 1);
    const name = positionals[0];
    if (!name) throw new UsageError('cluster create needs a NAME');
    const org = required(values, 'org', 'the org the cluster belongs to');
    return withRegistry(values, io, (registry) => {
      io.stdout(`${registry.createCluster(name, org)}\n`);
      io.stderr(`cluster "${name}" created for org "${org}". The connector key above is shown only once.\n`);
    });
  }
  if (action === 'list') {
    const { values } = parse(rest, {}, io, 0);
    return withRegistry(values, io, (registry) => {
      const rows = registry.listClusters().map((c) => [c.name, c.org, status(c.revokedAt)]);
      io.stdout(table(['NAME', 'ORG', 'STATUS'], rows));
    });
  }
  if (action === 'revoke') {
    const { values, positionals } = parse(rest, {}, io, 1);
    if (!positionals[0]) throw new UsageError('cluster revoke needs a NAME');
    const name = positionals[0];
    return withRegistry(values, io, (registry) => {
      registry.revokeCluster(name);
      io.stderr(`cluster "${name}" revoked.\n`);
    });
  }
  throw new UsageError('cluster needs an action: create, list or revoke');
}

async function rotateKeys(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {}, io, 0);
  const store = openSqliteStore(dataDir(values));
  try {
    const kid = await new SigningKeys(store).rotate();
    io.stderr(`new signing key ${kid} is current; the previous key stays in the JWKS until the next rotation.\n`);
  } finally {
    store.close();
  }
  return 0;
}

async function tokenCommand(args: string[], io: Io): Promise<number> {
  const { values } = parse(
    args,
    { issuer: { type: 'string' }, cluster: { type: 'string' }, 'ca-file': { type: 'string' }, 'api-key-file': { type: 'string' }, raw: { type: 'boolean' } },
    io,
    0,
  );
  const issuer = required(values, 'issuer', 'the issuer URL');
  const cluster = required(values, 'cluster', 'the cluster to get a token for');
  const apiKey = (readFileFlag(values, 'api-key-file') ?? io.env.KUBE_RELAY_API_KEY ?? '').trim();
  if (apiKey === '') throw new UsageError('no API key: set KUBE_RELAY_API_KEY or pass --api-key-file');
  const issued = await requestToken({ issuer, cluster, apiKey, issuerCa: readFileFlag(values, 'ca-file') });
  io.stdout(values.raw ? `${issued.token}\n` : `${JSON.stringify(execCredential(issued))}\n`);
  return 0;
}

function kubeconfigCommand(args: string[], io: Io): number {
  const { values } = parse(
    args,
    {
      issuer: { type: 'string' },
      cluster: { type: 'string' },
      server: { type: 'string' },
      'ca-file': { type: 'string' },
      'issuer-ca-file': { type: 'string' },
      'api-key-file': { type: 'string' },
    },
    io,
    0,
  );
  readFileFlag(values, 'ca-file');
  readFileFlag(values, 'issuer-ca-file');
  readFileFlag(values, 'api-key-file');
  io.stdout(
    buildKubeconfig({
      issuer: required(values, 'issuer', 'the issuer URL'),
      cluster: required(values, 'cluster', 'the cluster name'),
      server: required(values, 'server', 'the relay URL kubectl talks to'),
      caFile: str(values, 'ca-file'),
      issuerCaFile: str(values, 'issuer-ca-file'),
      apiKeyFile: str(values, 'api-key-file'),
    }),
  );
  return 0;
}

async function runIssuer(args: string[], io: Io): Promise<number> {
  const { values } = parse(
    args,
    {
      listen: { type: 'string' },
      'public-url': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-san': { type: 'string', multiple: true },
      'admin-listen': { type: 'string' },
      'key-rotation-interval': { type: 'string' },
      'hub-replicas': { type: 'string' },
      'hub-replica-id': { type: 'string' },
      ...AUDIT_FLAGS,
    },
    io,
    0,
  );
  const log = createLogger(logLevel(values), { component: 'issuer' });
  const issuer = await startIssuer({
    dataDir: dataDir(values),
    listen: hostPort(str(values, 'listen') ?? '127.0.0.1:8443', '--listen'),
    publicUrl: str(values, 'public-url'),
    tlsCertFile: str(values, 'tls-cert'),
    tlsKeyFile: str(values, 'tls-key'),
    tlsSans: (values['tls-san'] as string[] | undefined) ?? [],
    adminListen: optionalHostPort(str(values, 'admin-listen'), '--admin-listen'),
    keyRotationIntervalMs: duration(str(values, 'key-rotation-interval') ?? '24h', '--key-rotation-interval'),
    audit: auditConfig(values),
    hubReplica: {
      id: replicaId(str(values, 'hub-replica-id') ?? hostname()),
      count: positiveInteger(str(values, 'hub-replicas') ?? '1', '--hub-replicas'),
    },
    log,
  });
  io.stderr(`kube-relay issuer serving at ${issuer.url}${issuer.caFile ? ` (trust ${issuer.caFile})` : ''}\n`);
  await untilSignal();
  await issuer.close();
  return 0;
}

async function runRelay(args: string[], io: Io): Promise<number> {
  const { values } = parse(
    args,
    {
      cluster: { type: 'string' },
      issuer: { type: 'string' },
      mode: { type: 'string' },
      listen: { type: 'string' },
      hub: { type: 'string' },
      'connector-key-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-san': { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      'issuer-ca-file': { type: 'string' },
      'jwks-file': { type: 'string' },
      ...AUDIT_FLAGS,
      'admin-listen': { type: 'string' },
      'max-stream-duration': { type: 'string' },
      'max-streams-per-agent': { type: 'string' },
    },
    io,
    0,
  );
  const cluster = required(values, 'cluster', 'the name of the cluster this relay serves (the token audience)');
  const issuer = required(values, 'issuer', 'the issuer URL (the token issuer)');
  const mode = required(values, 'mode', 'direct or tunnel');
  if (mode !== 'direct' && mode !== 'tunnel') throw new UsageError(`--mode must be direct or tunnel, not "${mode}"`);
  const listen = mode === 'direct' ? hostPort(required(values, 'listen', 'HOST:PORT for the relay API listener'), '--listen') : undefined;
  const tunnel =
    mode === 'tunnel'
      ? {
          hubUrl: required(values, 'hub', 'the hub URL to dial out to (the issuer, https://…)'),
          connectorKey: (readFileFlag(values, 'connector-key-file') ?? '').trim() || failUsage('--connector-key-file is required: the file holding the cluster connector key (krl_cluster_…)'),
          hubCa: readFileFlag(values, 'issuer-ca-file'),
        }
      : undefined;
  const maxStreamsPerAgent = positiveInteger(str(values, 'max-streams-per-agent') ?? String(DEFAULT_MAX_STREAMS_PER_AGENT), '--max-streams-per-agent');
  const kubeconfig = str(values, 'kubeconfig');
  if (kubeconfig === undefined && str(values, 'context') !== undefined) throw new UsageError('--context needs --kubeconfig');
  if (kubeconfig === undefined && !io.env.KUBERNETES_SERVICE_HOST) {
    throw new UsageError('--kubeconfig is required outside a cluster (KUBERNETES_SERVICE_HOST is not set)');
  }
  const upstream = kubeconfig !== undefined ? upstreamFromKubeconfig(kubeconfig, str(values, 'context')) : inClusterUpstream(io.env);
  const log = createLogger(logLevel(values), { component: 'relay', cluster });
  const relay = await startRelay({
    mode,
    cluster,
    issuer,
    dataDir: dataDir(values),
    ...(listen ? { listen } : {}),
    ...(tunnel ? { tunnel } : {}),
    tlsCertFile: str(values, 'tls-cert'),
    tlsKeyFile: str(values, 'tls-key'),
    tlsSans: (values['tls-san'] as string[] | undefined) ?? [],
    issuerCa: readFileFlag(values, 'issuer-ca-file'),
    jwksFile: str(values, 'jwks-file'),
    upstream,
    audit: auditConfig(values),
    adminListen: optionalHostPort(str(values, 'admin-listen'), '--admin-listen'),
    maxStreamDurationMs: duration(str(values, 'max-stream-duration') ?? '4h', '--max-stream-duration'),
    maxStreamsPerAgent,
    // In tunnel mode the hub pushes revocations through the tunnel.
    pollRevocations: mode === 'direct' && str(values, 'jwks-file') === undefined,
    log,
  });
  io.stderr(`kube-relay relay for cluster "${cluster}" (${mode} mode): agents use ${relay.url}${relay.caFile ? ` (trust ${relay.caFile})` : ''}\n`);
  const failure = await Promise.race([untilSignal().then(() => undefined), relay.failed]);
  await relay.close();
  if (failure) {
    io.stderr(`kube-relay: ${failure.message}\n`);
    return 1;
  }
  return 0;
}

function failUsage(message: string): never {
  throw new UsageError(message);
}

function hostPort(value: string, flag: string) {
  try {
    return parseHostPort(value, flag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function optionalHostPort(value: string | undefined, flag: string) {
  return value === undefined ? undefined : hostPort(value, flag);
}

function duration(value: string, flag: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag} "${value}" is not a duration such as 90s, 30m or 4h (0 for no limit)`);
  return ms;
}

/** Where audit records go (DESIGN §5), for the relay and for the hub's own refusals. */
const AUDIT_FLAGS = {
  'audit-file': { type: 'string' },
  'audit-file-max-size': { type: 'string' },
  'audit-file-max-backups': { type: 'string' },
  'audit-webhook-url': { type: 'string' },
  'audit-webhook-ca-file': { type: 'string' },
  'audit-webhook-token-file': { type: 'string' },
  'audit-when-full': { type: 'string' },
  'audit-buffer-records': { type: 'string' },
} as const satisfies Options;

function auditConfig(values: Values): AuditConfig {
  const whenFull = str(values, 'audit-when-full') ?? 'block';
  if (!(WHEN_FULL as readonly string[]).includes(whenFull)) throw new UsageError(`--audit-when-full must be ${WHEN_FULL.join(' or ')}, not "${whenFull}"`);
  const maxSize = str(values, 'audit-file-max-size');
  const maxBackups = str(values, 'audit-file-max-backups');
  const file = str(values, 'audit-file');
  if ((maxSize !== undefined || maxBackups !== undefined) && (file === undefined || file === '-')) {
    throw new UsageError('--audit-file-max-size and --audit-file-max-backups rotate the file given with --audit-file');
  }
  if (maxSize === undefined && maxBackups !== undefined) throw new UsageError('--audit-file-max-backups needs --audit-file-max-size (rotation is by size)');
  const webhookUrl = str(values, 'audit-webhook-url');
  if (webhookUrl === undefined && (str(values, 'audit-webhook-ca-file') !== undefined || str(values, 'audit-webhook-token-file') !== undefined)) {
    throw new UsageError('--audit-webhook-ca-file and --audit-webhook-token-file need --audit-webhook-url');
  }
  if (webhookUrl !== undefined && !/^https?:\/\/[^/]/.test(webhookUrl)) throw new UsageError(`--audit-webhook-url "${webhookUrl}" is not an http(s) URL`);
  const tokenFile = str(values, 'audit-webhook-token-file');
  if (tokenFile !== undefined) readFileFlag(values, 'audit-webhook-token-file'); // unreadable now: say so now, not at the first batch
  return {
    file,
    fileMaxBytes: maxSize === undefined ? 0 : byteSize(maxSize, '--audit-file-max-size'),
    fileMaxBackups: maxBackups === undefined ? 5 : positiveInteger(maxBackups, '--audit-file-max-backups'),
    webhook: webhookUrl === undefined ? undefined : { url: webhookUrl, ca: readFileFlag(values, 'audit-webhook-ca-file'), tokenFile },
    whenFull: whenFull as WhenFull,
    bufferRecords: positiveInteger(str(values, 'audit-buffer-records') ?? String(DEFAULT_AUDIT_BUFFER_RECORDS), '--audit-buffer-records'),
  };
}

/** Sent in a response header: a host name's characters (the default is the host name, a pod's name in Kubernetes). */
function replicaId(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(value)) throw new UsageError(`--hub-replica-id "${value}" must be letters, digits, ".", "_" or "-" (a pod name, say)`);
  return value;
}

/** A size such as 100Mi (Ki, Mi and Gi are powers of 1024, as in Kubernetes quantities), or plain bytes. */
function byteSize(value: string, flag: string): number {
  const match = /^([1-9][0-9]{0,8})(Ki|Mi|Gi)?$/.exec(value);
  if (!match) throw new UsageError(`${flag} "${value}" is not a size such as 100Mi (a whole number, optionally with Ki, Mi or Gi)`);
  return Number(match[1]) * { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[match[2] ?? '']!;
}

function positiveInteger(value: string, flag: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new UsageError(`${flag} "${value}" is not a whole number of at least 1`);
  return Number(value);
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

function status(revokedAt: Date | undefined): string {
  return revokedAt ? `revoked ${revokedAt.toISOString()}` : 'active';
}

function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
