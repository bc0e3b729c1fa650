/** `kube-relay relay`: the enforcement point, in direct or tunnel mode (DESIGN §3, §4, §6). */
import { readFileSync } from 'node:fs';
import { isDnsLabel } from '../../identity.js';
import { createLogger } from '../../log.js';
import { DEFAULT_MAX_REQUESTS_PER_AGENT, DEFAULT_MAX_STREAMS_PER_AGENT } from '../../request-stages/agent-quotas.js';
import type { HubDial, RelayConfig } from '../../relay/server.js';
import { inClusterUpstream, upstreamFromKubeconfig } from '../../relay/upstream.js';
import { type CommandSpec, list, required, str, UsageError, type Values } from '../command.js';
import { AUDIT_FLAGS, auditConfig, CONNECTION_FLAGS, connectionLimits, duration, hostPort, httpsUrl, logLevel, optionalHostPort, positiveInteger, readFileFlag, untilSignal } from '../flag-values.js';
import { dataDir } from '../local-store.js';

const MAX_WORKERS = 64;

export const relayCommands: CommandSpec[] = [
  {
    words: ['relay'],
    summary: 'Verify agent tokens and forward their Kubernetes API requests with impersonation.',
    synopsis:
      '--cluster NAME --issuer URL (--mode direct --listen HOST:PORT [--connector-key-file F [--hub URL]] | --mode tunnel --hub URL --connector-key-file F) [--kubeconfig F [--context C]] [--admin-listen HOST:PORT] [AUDIT FLAGS]',
    description:
      'Direct mode serves agents at an HTTPS listener of its own; given a connector key it also holds a control channel to the hub, which carries no requests: revocations are pushed down it at once (on top of polling) and the issuer knows the relay is there. Tunnel mode dials out to the hub (the issuer) over a WebSocket and serves agents at https://HUB/clusters/NAME; it never listens for agents. Upstream: --kubeconfig, or in a pod its ServiceAccount. At start the relay checks that its own identity may impersonate, and refuses to start (exit 1) when it may not. Runs until SIGINT or SIGTERM.',
    flags: [
      { name: 'cluster', value: 'NAME', description: 'The cluster this relay serves: tokens must carry it as their audience.' },
      { name: 'issuer', value: 'URL', description: "The issuer URL, exactly the tokens' iss (what the issuer prints as its URL)." },
      { name: 'mode', value: 'direct|tunnel', description: 'Serve agents directly, or through a tunnel to the hub.' },
      { name: 'listen', value: 'HOST:PORT', description: 'Direct mode: the address agents connect to.' },
      {
        name: 'hub',
        value: 'URL',
        description: 'The hub to dial out to (the issuer, https://…): in tunnel mode for the tunnel (required); in direct mode with --connector-key-file for the control channel, where it defaults to --issuer.',
        default: 'direct mode: --issuer',
      },
      {
        name: 'connector-key-file',
        value: 'F',
        description: "The file holding the cluster's connector key (krl_cluster_…): required in tunnel mode; in direct mode optional, it opens a control channel to the hub.",
      },
      { name: 'tls-cert', value: 'F', description: 'Direct mode: serving certificate (PEM), with --tls-key.', default: 'from the local CA' },
      { name: 'tls-key', value: 'F', description: 'Private key of --tls-cert (PEM).' },
      { name: 'tls-san', value: 'NAME', multiple: true, description: 'Extra DNS name or IP for the local-CA certificate.' },
      { name: 'kubeconfig', value: 'F', description: "The relay's own credential for the API server.", default: 'in-cluster ServiceAccount' },
      { name: 'context', value: 'C', description: 'The kubeconfig context to use.', default: 'current-context' },
      { name: 'issuer-ca-file', value: 'F', description: 'Trust for the issuer and the hub (PEM).', default: 'system roots' },
      { name: 'jwks-file', value: 'F', description: 'Verify tokens against this JWKS file instead of fetching it (offline; no revocation polling).' },
      ...CONNECTION_FLAGS,
      ...AUDIT_FLAGS,
      { name: 'admin-listen', value: 'HOST:PORT', description: 'Serve /healthz, /readyz and /metrics here.', default: 'none' },
      { name: 'max-stream-duration', value: 'DURATION', description: 'Cut watches, logs -f, exec, attach and port-forward after this long (0: never).', default: '4h' },
      { name: 'max-streams-per-agent', value: 'N', description: 'Long-running requests one agent may hold through this relay at once; more get 429.', default: String(DEFAULT_MAX_STREAMS_PER_AGENT) },
      { name: 'max-requests-per-agent', value: 'N', description: 'Requests one agent may have in flight through this relay at once, long-running ones included; more get 429.', default: String(DEFAULT_MAX_REQUESTS_PER_AGENT) },
      {
        name: 'workers',
        value: 'N',
        description:
          'Direct mode: serve the API listener from N worker processes (node:cluster, 1 to 64), about one per core to use; a primary process holds the per-agent quotas and rate buckets, polls revocations and serves --admin-listen, so the limits and revocations hold for the relay as a whole, exactly. Each worker costs about 75 MiB RSS at start, the primary about 70; --max-connections and --max-connections-per-address count per worker; not with --audit-file-max-size. Tunnel mode: run more replicas instead.',
        default: '1 (one process)',
      },
      { name: 'central-grants', description: "Reconcile the cluster's grants (kube-relay grant add) into RoleBindings and ClusterRoleBindings; needs --connector-key-file and the rights of the chart's centralGrants.enabled." },
      { name: 'lease-namespace', value: 'NS', description: 'With --central-grants: the namespace of the Lease that picks the one relay replica that reconciles.', default: "the pod's namespace, else default" },
    ],
    examples: [
      'kube-relay relay --mode direct --cluster prod-eu --issuer https://127.0.0.1:8443 --issuer-ca-file .kube-relay/tls/ca.crt --listen 127.0.0.1:9443 --kubeconfig ~/.kube/config',
      'kube-relay relay --mode direct --cluster prod-eu --issuer https://127.0.0.1:8443 --issuer-ca-file .kube-relay/tls/ca.crt --listen 127.0.0.1:9443 --connector-key-file prod-eu.connector-key --kubeconfig ~/.kube/config',
      'kube-relay relay --mode tunnel --cluster prod-eu --issuer https://127.0.0.1:8443 --hub https://127.0.0.1:8443 --issuer-ca-file .kube-relay/tls/ca.crt --connector-key-file prod-eu.connector-key --kubeconfig ~/.kube/config',
    ],
    async run({ values }, io) {
      const cluster = required(values, 'cluster', 'the name of the cluster this relay serves (the token audience)');
      const issuer = httpsUrl(values, 'issuer', 'the issuer URL (the token issuer)');
      const mode = required(values, 'mode', 'direct or tunnel');
      if (mode !== 'direct' && mode !== 'tunnel') throw new UsageError(`--mode must be direct or tunnel, not "${mode}"`);
      const listen = mode === 'direct' ? hostPort(required(values, 'listen', 'HOST:PORT for the relay API listener'), '--listen') : undefined;
      const tunnel =
        mode === 'tunnel'
          ? {
              hubUrl: httpsUrl(values, 'hub', 'the hub URL to dial out to (the issuer)'),
              connectorKey:
                (readFileFlag(values, 'connector-key-file') ?? '').trim() ||
                failUsage('--connector-key-file is required: the file holding the cluster connector key (krl_cluster_…)'),
              hubCa: readFileFlag(values, 'issuer-ca-file'),
              hubCaFile: str(values, 'issuer-ca-file'),
            }
          : undefined;
      const controlChannel = mode === 'direct' ? directControlChannel(values, issuer) : undefined;
      const workers = workerCount(values, mode);
      const maxStreamsPerAgent = positiveInteger(str(values, 'max-streams-per-agent') ?? String(DEFAULT_MAX_STREAMS_PER_AGENT), '--max-streams-per-agent');
      const maxRequestsPerAgent = positiveInteger(str(values, 'max-requests-per-agent') ?? String(DEFAULT_MAX_REQUESTS_PER_AGENT), '--max-requests-per-agent');
      const kubeconfig = str(values, 'kubeconfig');
      if (kubeconfig === undefined && str(values, 'context') !== undefined) throw new UsageError('--context needs --kubeconfig');
      if (kubeconfig === undefined && !io.env.KUBERNETES_SERVICE_HOST) {
        throw new UsageError('--kubeconfig is required outside a cluster (KUBERNETES_SERVICE_HOST is not set)');
      }
      const options = {
        tlsCertFile: str(values, 'tls-cert'),
        tlsKeyFile: str(values, 'tls-key'),
        tlsSans: list(values, 'tls-san'),
        issuerCa: readFileFlag(values, 'issuer-ca-file'),
        jwksFile: str(values, 'jwks-file'),
        audit: auditConfig(values),
        limits: connectionLimits(values),
        adminListen: optionalHostPort(str(values, 'admin-listen'), '--admin-listen'),
        maxStreamDurationMs: duration(str(values, 'max-stream-duration') ?? '4h', '--max-stream-duration'),
        log: createLogger(logLevel(values), { component: 'relay', cluster }),
      };
      const centralGrants = values['central-grants'] === true ? centralGrantsOptions(values) : undefined;
      if (centralGrants === undefined && str(values, 'lease-namespace') !== undefined) throw new UsageError('--lease-namespace needs --central-grants');
      const upstream = kubeconfig !== undefined ? upstreamFromKubeconfig(kubeconfig, str(values, 'context')) : inClusterUpstream(io.env);
      const config: RelayConfig = {
        mode,
        cluster,
        issuer,
        dataDir: dataDir(values),
        ...(listen ? { listen } : {}),
        ...(tunnel ? { tunnel } : {}),
        ...(controlChannel ? { controlChannel } : {}),
        ...options,
        upstream,
        maxStreamsPerAgent,
        maxRequestsPerAgent,
        centralGrants,
        // In tunnel mode the hub pushes revocations through the tunnel.
        pollRevocations: mode === 'direct' && options.jwksFile === undefined,
      };
      if (workers > 1 && (await import('node:cluster')).default.isWorker) {
        const { runRelayWorker } = await import('../../relay/workers/worker.js');
        return runRelayWorker(config);
      }
      // Loaded here, not with the command list: a primary holds none of the relay's request path.
      const relay = workers > 1 ? await (await import('../../relay/workers/primary.js')).startRelayPrimary(config, workers) : await (await import('../../relay/server.js')).startRelay(config);
      const control = controlChannel ? `; control channel to ${controlChannel.hubUrl}` : '';
      io.stderr(`kube-relay relay for cluster "${cluster}" (${mode} mode${workers > 1 ? `, ${workers} workers` : ''}): agents use ${relay.url}${relay.caFile ? ` (trust ${relay.caFile})` : ''}${control}\n`);
      const failure = await Promise.race([untilSignal().then(() => undefined), relay.failed]);
      await relay.close();
      if (failure) {
        io.stderr(`kube-relay: ${failure.message}\n`);
        return 1;
      }
      return 0;
    },
  },
];

/** The connector key (the relay reads its cluster's grants with it) and the Lease's namespace. */
function centralGrantsOptions(values: Values): { connectorKey: string; leaseNamespace: string } {
  const connectorKey = (readFileFlag(values, 'connector-key-file') ?? '').trim();
  if (connectorKey === '') throw new UsageError("--central-grants needs --connector-key-file: the relay reads its cluster's grants from the issuer with the connector key");
  const leaseNamespace = str(values, 'lease-namespace') ?? podNamespace() ?? 'default';
  if (!isDnsLabel(leaseNamespace)) throw new UsageError(`--lease-namespace "${leaseNamespace}" is not a namespace name`);
  return { connectorKey, leaseNamespace };
}

/** The namespace of the pod's ServiceAccount, as client-go's in-cluster config finds it. */
function podNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Direct mode: a control channel to the hub (default: the issuer) when a connector key is given; none without one. */
function directControlChannel(values: Values, issuer: string): HubDial | undefined {
  const keyFile = str(values, 'connector-key-file');
  if (keyFile === undefined) {
    if (str(values, 'hub') !== undefined) throw new UsageError('--hub in direct mode is for the control channel: it needs --connector-key-file');
    return undefined;
  }
  return {
    hubUrl: str(values, 'hub') === undefined ? issuer : httpsUrl(values, 'hub', 'the hub URL to dial out to (the issuer)'),
    connectorKey: (readFileFlag(values, 'connector-key-file') ?? '').trim() || failUsage(`--connector-key-file ${keyFile} is empty: it must hold the cluster connector key (krl_cluster_…)`),
    hubCa: readFileFlag(values, 'issuer-ca-file'),
    hubCaFile: str(values, 'issuer-ca-file'),
  };
}

/** --workers: 1 (one process, no cluster) to 64; direct mode only. */
function workerCount(values: Values, mode: 'direct' | 'tunnel'): number {
  const text = str(values, 'workers');
  if (text === undefined) return 1;
  if (!/^[0-9]{1,3}$/.test(text) || Number(text) < 1 || Number(text) > MAX_WORKERS) throw new UsageError(`--workers "${text}" must be a whole number from 1 to ${MAX_WORKERS}`);
  const workers = Number(text);
  if (workers > 1 && mode === 'tunnel') {
    throw new UsageError('--workers is for direct mode: a tunnel-mode relay serves through one WebSocket to the hub, so run more relay replicas instead (each dials its own tunnel)');
  }
  if (workers > 1 && str(values, 'audit-file-max-size') !== undefined) {
    throw new UsageError('--audit-file-max-size cannot be used with --workers: several workers append to the one audit file, and rotating it under each other would lose records; rotate it outside the relay (logrotate with copytruncate) or run one worker');
  }
  return workers;
}

function failUsage(message: string): never {
  throw new UsageError(message);
}
