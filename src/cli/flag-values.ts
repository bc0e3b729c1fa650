/** Turning flag values into typed options, each failure a UsageError naming the flag. */
import { readFileSync } from 'node:fs';
import { type AuditConfig, DEFAULT_AUDIT_BUFFER_RECORDS, WHEN_FULL, type WhenFull } from '../audit/sink.js';
import type { ListenerLimits } from '../http-listener.js';
import type { LogLevel } from '../log.js';
import { parseHostPort } from '../net.js';
import { type FlagSpec, str, UsageError, type Values } from './command.js';
import { parseDuration } from '../duration.js';

/** Checked already by parseCommandArgs. */
export function logLevel(values: Values): LogLevel {
  return (str(values, 'log-level') ?? 'info') as LogLevel;
}

export function readFileFlag(values: Values, name: string): string | undefined {
  const file = str(values, name);
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--${name} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** An agent's API key, from the file of --api-key-file or the environment variable its default names. */
export const API_KEY_FILE: FlagSpec = { name: 'api-key-file', value: 'F', description: 'File holding the agent API key (krl_agent_…).', default: 'env KUBE_RELAY_API_KEY' };

/** The key of --api-key-file, else KUBE_RELAY_API_KEY; undefined when neither gives one. */
export function apiKey(values: Values, env: NodeJS.ProcessEnv): string | undefined {
  return keyFrom(values, 'api-key-file', env.KUBE_RELAY_API_KEY);
}

/** The key of --admin-key-file, else KUBE_RELAY_ADMIN_KEY; undefined when neither gives one. */
export function adminKey(values: Values, env: NodeJS.ProcessEnv): string | undefined {
  return keyFrom(values, 'admin-key-file', env.KUBE_RELAY_ADMIN_KEY);
}

function keyFrom(values: Values, flag: string, fromEnv: string | undefined): string | undefined {
  const key = (readFileFlag(values, flag) ?? fromEnv ?? '').trim();
  return key === '' ? undefined : key;
}

/** An https URL, as every kube-relay endpoint is (DESIGN §3.1). */
export function httpsUrl(values: Values, name: string, what: string): string {
  const value = str(values, name);
  if (value === undefined || value === '') throw new UsageError(`--${name} is required: ${what}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--${name} "${value}" is not a URL: give ${what} as https://HOST[:PORT]`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`--${name} "${value}" must be an https:// URL (kube-relay serves only HTTPS): ${what}`);
  return value;
}

export function hostPort(value: string, flag: string) {
  try {
    return parseHostPort(value, flag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function optionalHostPort(value: string | undefined, flag: string) {
  return value === undefined ? undefined : hostPort(value, flag);
}

export function duration(value: string, flag: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag} "${value}" is not a duration such as 90s, 30m or 4h (0 for no limit)`);
  return ms;
}

export function positiveInteger(value: string, flag: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new UsageError(`${flag} "${value}" is not a whole number of at least 1`);
  return Number(value);
}

/** A size such as 100Mi (Ki, Mi and Gi are powers of 1024, as in Kubernetes quantities), or plain bytes. */
function byteSize(value: string, flag: string): number {
  const match = /^([1-9][0-9]{0,8})(Ki|Mi|Gi)?$/.exec(value);
  if (!match) throw new UsageError(`${flag} "${value}" is not a size such as 100Mi (a whole number, optionally with Ki, Mi or Gi)`);
  return Number(match[1]) * { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[match[2] ?? '']!;
}

/** Where audit records go (DESIGN §5), for the relay and for the hub's own refusals. */
export const AUDIT_FLAGS: FlagSpec[] = [
  { name: 'audit-file', value: 'F|-', description: 'Write audit records as JSON lines to file F, or - for stdout.', default: 'stdout, unless a webhook is set' },
  { name: 'audit-file-max-size', value: 'SIZE', description: 'Rotate the audit file when it reaches SIZE (e.g. 100Mi).' },
  { name: 'audit-file-max-backups', value: 'N', description: 'Rotated audit files to keep.', default: '5' },
  { name: 'audit-webhook-url', value: 'URL', description: 'Also POST audit records, batched as JSON arrays, to this http(s) URL.' },
  { name: 'audit-webhook-ca-file', value: 'F', description: 'Trust for the webhook (PEM).' },
  { name: 'audit-webhook-token-file', value: 'F', description: 'Bearer token for the webhook, re-read as it changes.' },
  { name: 'audit-when-full', value: 'block|fail', description: 'When a sink cannot keep up: hold new requests until there is room, or refuse them with 503.', default: 'block' },
  { name: 'audit-buffer-records', value: 'N', description: 'Undelivered records each sink holds before it counts as full.', default: String(DEFAULT_AUDIT_BUFFER_RECORDS) },
];

export function auditConfig(values: Values): AuditConfig {
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

export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/** Caps on client connections (issue 14), for the relay's and the issuer's API listeners. */
export const CONNECTION_FLAGS: FlagSpec[] = [
  { name: 'max-connections', value: 'N', description: 'Client connections the API listener holds at once; more are closed on arrival.', default: '(open-file limit - 256) / 2' },
  { name: 'max-connections-per-address', value: 'N', description: 'Client connections one source address may hold at once.', default: 'max-connections / 4' },
];

export function connectionLimits(values: Values): ListenerLimits | undefined {
  const max = str(values, 'max-connections');
  const perAddress = str(values, 'max-connections-per-address');
  if (max === undefined && perAddress === undefined) return undefined;
  return {
    connections: {
      ...(max !== undefined ? { maxConnections: positiveInteger(max, '--max-connections') } : {}),
      ...(perAddress !== undefined ? { maxConnectionsPerAddress: positiveInteger(perAddress, '--max-connections-per-address') } : {}),
    },
  };
}
