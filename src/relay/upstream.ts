/**
 * Where the relay forwards to, and the relay's own credential there
 * (DESIGN §6): a kubeconfig (token, token file, or client certificate, inline
 * or as files; the cluster's CA), or the in-cluster ServiceAccount whose
 * projected token is re-read as the kubelet rotates it.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

export interface UpstreamTls {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
}

export interface Upstream {
  /** The API server's base URL; a path prefix, if any, is kept. */
  server: URL;
  tls: UpstreamTls;
  /** The relay's `Authorization` header value, or undefined when it authenticates by client certificate. */
  authorization(): string | undefined;
  /** For logs: where and how, never the credential itself. */
  description: string;
}

/** client-go re-reads token files once a minute (transport.NewCachedFileTokenSource); so do we. */
const TOKEN_FILE_REREAD_MS = 60_000;
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class UpstreamConfigError extends Error {}

/** Reads a bearer token file, re-reading it at most once per period; keeps the last good token on a failed read. */
export function tokenFileSource(file: string, now: () => number = Date.now): () => string {
  let token = readToken(file);
  let readAt = now();
  return () => {
    if (now() - readAt >= TOKEN_FILE_REREAD_MS) {
      readAt = now();
      try {
        token = readToken(file);
      } catch {
        // The kubelet replaces the file atomically; a failed read is transient. Keep the last token.
      }
    }
    return token;
  };
}

function readToken(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (token === '') throw new UpstreamConfigError(`token file ${file} is empty`);
  return token;
}

export function inClusterUpstream(env: NodeJS.ProcessEnv = process.env, dir: string = SERVICE_ACCOUNT_DIR): Upstream {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new UpstreamConfigError('KUBERNETES_SERVICE_HOST is not set: not running in a cluster; pass --kubeconfig');
  const tokenFile = path.join(dir, 'token');
  const token = tokenFileSource(tokenFile);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    server: new URL(`https://${hostPart}:${port}`),
    tls: { ca: readFileSync(path.join(dir, 'ca.crt'), 'utf8'), rejectUnauthorized: true },
    authorization: () => `Bearer ${token()}`,
    description: `in-cluster ServiceAccount at https://${hostPart}:${port}`,
  };
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
  clusters?: { name: string; cluster?: Record<string, unknown> }[];
  users?: { name: string; user?: Record<string, unknown> }[];
}

export function upstreamFromKubeconfig(file: string, contextName?: string): Upstream {
  let config: KubeconfigFile;
  try {
    config = parseYaml(readFileSync(file, 'utf8')) as KubeconfigFile;
  } catch (err) {
    throw new UpstreamConfigError(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
  }
  const base = path.dirname(path.resolve(file));
  const wanted = contextName ?? config['current-context'];
  if (!wanted) throw new UpstreamConfigError(`kubeconfig ${file} has no current-context; pass --context`);
  const context = config.contexts?.find((c) => c.name === wanted)?.context;
  if (!context) throw new UpstreamConfigError(`kubeconfig ${file} has no context "${wanted}"`);
  const cluster = config.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster) throw new UpstreamConfigError(`kubeconfig ${file}: context "${wanted}" names unknown cluster "${context.cluster}"`);
  const user = config.users?.find((u) => u.name === context.user)?.user ?? {};

  const server = stringField(cluster, 'server');
  if (!server) throw new UpstreamConfigError(`kubeconfig ${file}: cluster "${context.cluster}" has no server`);
  const serverUrl = new URL(server);
  const tls: UpstreamTls = { rejectUnauthorized: cluster['insecure-skip-tls-verify'] !== true };
  const ca = inlineOrFile(cluster, 'certificate-authority-data', 'certificate-authority', base);
  if (ca) tls.ca = ca;
  const cert = inlineOrFile(user, 'client-certificate-data', 'client-certificate', base);
  const key = inlineOrFile(user, 'client-key-data', 'client-key', base);
  if (Boolean(cert) !== Boolean(key)) throw new UpstreamConfigError(`kubeconfig ${file}: user "${context.user}" has a client certificate without its key, or a key without its certificate`);
  if (cert && key) Object.assign(tls, { cert, key });

  if (user.exec || user['auth-provider']) {
    throw new UpstreamConfigError(`kubeconfig ${file}: user "${context.user}" uses an exec or auth-provider plugin; the relay needs a token, token file or client certificate`);
  }
  const inlineToken = stringField(user, 'token');
  const tokenFile = stringField(user, 'tokenFile');
  let authorization: () => string | undefined;
  if (inlineToken) authorization = () => `Bearer ${inlineToken}`;
  else if (tokenFile) {
    const source = tokenFileSource(path.resolve(base, tokenFile));
    authorization = () => `Bearer ${source()}`;
  } else if (cert) authorization = () => undefined;
  else {
    throw new UpstreamConfigError(`kubeconfig ${file}: user "${context.user}" has no token, tokenFile or client certificate for the relay to authenticate with`);
  }
  const how = inlineToken ? 'token' : tokenFile ? 'token file' : 'client certificate';
  return { server: serverUrl, tls, authorization, description: `${serverUrl.origin} (kubeconfig context "${wanted}", ${how})` };
}

function stringField(record: Record<string, unknown>, field: string): string | undefined {
  const value = record[field];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function inlineOrFile(record: Record<string, unknown>, dataField: string, fileField: string, base: string): string | undefined {
  const data = stringField(record, dataField);
  if (data) return Buffer.from(data, 'base64').toString('utf8');
  const file = stringField(record, fileField);
  if (!file) return undefined;
  const resolved = path.resolve(base, file);
  if (!statSync(resolved, { throwIfNoEntry: false })) throw new UpstreamConfigError(`${fileField} ${resolved} does not exist`);
  return readFileSync(resolved, 'utf8');
}
