/**
 * Assembles a relay: key source, revocation feed, upstream, pipeline, audit
 * sink, API listener and admin listener. Ready (`/readyz`) only once the
 * issuer's keys are loaded, the API server has answered and the relay's
 * right to impersonate has been confirmed (self-check.ts).
 *
 * A tunnel-mode relay dials the hub for its tunnel. A direct-mode relay
 * given a connector key dials it too, for a control channel only: pushed
 * revocations apply at once, on top of the polling, and the hub knows the
 * relay is there. Its readiness does not wait for that channel: agents
 * reach a direct-mode relay at its own listener, whether the hub answers or not.
 */
import http from 'node:http';
import https from 'node:https';
import type { Registry } from 'prom-client';
import { boundPort, closeServer, listenOn, type Readiness, startAdminServer } from '../admin.js';
import type { IssuerAuditOptions } from '../audit/issuer-destination.js';
import { type AuditConfig, openAuditSink } from '../audit/sink.js';
import { closeApiListener, createApiListener, type ListenerLimits, listenerOptions, serveKubernetesApi } from '../http-listener.js';
import type { Logger } from '../log.js';
import { type HostPort, listenerUrl } from '../net.js';
import { caPaths } from '../tls/local-ca.js';
import { listenerTls } from '../tls/serving.js';
import type { ReconnectBackoff } from '../backoff.js';
import { TunnelConnector } from '../tunnel/connector.js';
import type { MuxStream } from '../tunnel/mux.js';
import { version } from '../version.js';
import { causeOf, DependencyLog } from './dependency-log.js';
import { Forwarder } from './forward.js';
import { type AdmissionLimits, InProcessLimits } from '../request-stages/admission-limits.js';
import { agentQuotas } from '../request-stages/agent-quotas.js';
import { LiveStreams } from './live-streams.js';
import { createRelayMetrics } from './metrics.js';
import { createPipeline, type Pipeline } from './pipeline.js';
import { checkImpersonationPermissions, MissingPermissionError } from './self-check.js';
import { type CentralGrantsConfig, missingGrantPermission, type RunningCentralGrants, startCentralGrants } from '../grants/central-grants.js';
import { RevocationList } from '../request-stages/revocations.js';
import { TokenVerifier } from '../request-stages/token-verifier.js';
import type { Upstream } from './upstream.js';

/** How often readiness re-checks the API server and, until loaded, the issuer keys. */
const READINESS_INTERVAL_MS = 10_000;
const PROBE_TIMEOUT_MS = 5_000;

/** How a relay reaches the hub: for its tunnel (tunnel mode) or its control channel (direct mode). */
export interface HubDial {
  hubUrl: string;
  connectorKey: string;
  hubCa?: string | Buffer | undefined;
  /** The file hubCa was read from (`--issuer-ca-file`), named when the hub's certificate is not trusted. */
  hubCaFile?: string | undefined;
  keepaliveMs?: number;
  backoff?: () => ReconnectBackoff;
}

export interface RelayConfig {
  cluster: string;
  issuer: string;
  dataDir: string;
  mode: 'direct' | 'tunnel';
  /** Direct mode: the HTTPS API listener. */
  listen?: HostPort;
  /** Tunnel mode: the hub to dial out to, with the cluster's connector key. */
  tunnel?: HubDial;
  /** Direct mode, optional: the hub to hold a control channel to, with the cluster's connector key. */
  controlChannel?: HubDial | undefined;
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  tlsSans?: string[];
  issuerCa?: string | Buffer | undefined;
  jwksFile?: string | undefined;
  upstream: Upstream;
  /** Where audit records go (default: stdout). */
  audit?: AuditConfig | undefined;
  /** Central audit (DESIGN §12), on whenever the relay has a connector key: timing and buffer (tests shorten them). */
  centralAudit?: Pick<IssuerAuditOptions, 'batchWaitMs' | 'backoff' | 'bufferRecords'> | undefined;
  adminListen?: HostPort | undefined;
  /** 0 = unlimited. */
  maxStreamDurationMs: number;
  /** Long-running requests one agent may hold at once (default 1 000). */
  maxStreamsPerAgent?: number;
  /** Requests one agent may have in flight at once, long-running ones included (default 2 000). */
  maxRequestsPerAgent?: number;
  /** The agents' rate buckets and quotas (default: this process's own; a worker's are its primary's, workers/limits-client.ts). */
  admissionLimits?: AdmissionLimits | undefined;
  /** The revoked agents (default: a list of its own; a worker's is fed by its primary). */
  revocations?: RevocationList | undefined;
  /**
   * A worker of a relay with several (workers/primary.ts): its primary holds the control channel and
   * runs the grant sync; this process only checks that it may manage bindings, and sends its own
   * records to the central audit.
   */
  worker?: boolean | undefined;
  /** Poll the issuer's revocation feed (direct mode; in tunnel mode the hub pushes revocations through the tunnel). */
  pollRevocations: boolean;
  /** How often it is polled (default 10 s, DESIGN §2; tests shorten it). */
  revocationPollIntervalMs?: number;
  /** Header and request deadlines of the API listener (tests shorten them). */
  limits?: ListenerLimits;
  /** How often readiness re-checks the API server and, until loaded, the issuer keys (default 10 s; tests shorten it). */
  readinessIntervalMs?: number;
  /** Central grants (DESIGN §11): reconcile the cluster's grants into RBAC; needs the connector key. */
  centralGrants?: Pick<CentralGrantsConfig, 'connectorKey' | 'leaseNamespace' | 'syncIntervalMs' | 'lease'> | undefined;
  log: Logger;
}

export interface RunningRelay {
  url: string;
  caFile?: string;
  adminPort?: number;
  pipeline: Pipeline;
  revocations: RevocationList;
  /** The relay's Prometheus registry (what /metrics serves). */
  metrics: Registry;
  /** What /readyz reports. */
  readiness(): Readiness;
  /** Settles only if the relay must stop: the hub refused its connector key, or a later self-check found a permission missing. */
  failed: Promise<Error>;
  /** With central grants: the Lease election and the grant sync. */
  centralGrants?: RunningCentralGrants;
  close(): Promise<void>;
}

export async function startRelay(config: RelayConfig): Promise<RunningRelay> {
  const { log } = config;
  const metrics = createRelayMetrics();
  const verifier = new TokenVerifier({ issuer: config.issuer, audience: config.cluster, jwksFile: config.jwksFile, issuerCa: config.issuerCa, log });
  const revocations = config.revocations ?? new RevocationList();
  const streams = new LiveStreams(config.maxStreamDurationMs);
  revocations.onRevoked(({ user }) => {
    const cut = streams.cutUser(user);
    log.info('agent revoked', { user, streamsCut: cut });
  });
  const stopPolling = config.pollRevocations ? revocations.startPolling(config.issuer, config.issuerCa, log, config.revocationPollIntervalMs) : () => undefined;
  const connectorKey = (config.tunnel ?? config.controlChannel)?.connectorKey;
  const central = connectorKey === undefined ? undefined : { ...config.centralAudit, issuer: config.issuer, connectorKey, issuerCa: config.issuerCa };
  const audit = await openAuditSink({ ...config.audit, issuer: central }, metrics.registry, log);
  const forwarder = new Forwarder(config.upstream);
  metrics.countUpstreamSessions(() => forwarder.upstreamHttp2Sessions);
  const pipeline = createPipeline({
    cluster: config.cluster,
    mode: config.mode,
    verifier,
    revocations,
    upstream: config.upstream,
    forwarder,
    audit,
    metrics,
    streams,
    limits: config.admissionLimits ?? new InProcessLimits(agentQuotas(config)),
    log,
  });

  let upstreamReachable = false;
  let mayImpersonate = false;
  let reportFatal: (err: Error) => void = () => undefined;
  const failed = new Promise<Error>((resolve) => (reportFatal = resolve));
  const readinessIntervalMs = config.readinessIntervalMs ?? READINESS_INTERVAL_MS;
  const every = `every ${readinessIntervalMs / 1000} s`;
  const upstreamLog = new DependencyLog(log, {
    failing: (cause) => `the Kubernetes API server at ${config.upstream.description} cannot be reached (${cause}); not ready; checking again ${every}`,
    recovered: (seconds) => `the Kubernetes API server answers, after ${seconds} s unreachable`,
    firstAnswer: 'API server reachable',
    fields: { upstream: config.upstream.description },
  });
  const jwksLog = new DependencyLog(log, {
    failing: (cause) => `the issuer's JWKS at ${verifier.jwksUrl} cannot be fetched (${cause}); tokens cannot be verified until it answers; retrying ${every}`,
    recovered: (seconds) => `the issuer's JWKS answered, after ${seconds} s unreachable; tokens can be verified`,
    fields: { issuer: config.issuer, jwks: verifier.jwksUrl },
  });
  const selfCheckLog = new DependencyLog(log, {
    failing: (cause) => `cannot check the relay's permissions yet (${cause}); not ready; checking again ${every}`,
    recovered: (seconds) => `the relay's permissions are confirmed, after ${seconds} s of trying`,
  });
  const checkReadiness = async () => {
    if (!verifier.ready) {
      try {
        await verifier.loadKeys();
      } catch (err) {
        jwksLog.failed(causeOf(err));
      }
    }
    if (verifier.ready) jwksLog.succeeded();
    const unreachable = await probeUpstream(config.upstream);
    upstreamReachable = unreachable === undefined;
    if (unreachable === undefined) upstreamLog.succeeded();
    else upstreamLog.failed(unreachable);
    if (upstreamReachable && !mayImpersonate) {
      try {
        await checkImpersonationPermissions(config.upstream);
        if (config.centralGrants) {
          const missing = await missingGrantPermission(config.upstream, config.centralGrants.leaseNamespace);
          if (missing) throw new MissingPermissionError(missing);
        }
        mayImpersonate = true;
        selfCheckLog.succeeded();
      } catch (err) {
        if (err instanceof MissingPermissionError) throw err;
        selfCheckLog.failed((err as Error).message);
      }
    }
  };
  // Before anything listens: a relay that may not impersonate must not start at all.
  try {
    await checkReadiness();
  } catch (err) {
    stopPolling();
    forwarder.close();
    await audit.close();
    throw err;
  }
  const readinessTimer = setInterval(() => {
    checkReadiness().catch((err: Error) => {
      log.error(err.message);
      reportFatal(err);
    });
  }, readinessIntervalMs);
  readinessTimer.unref();

  // Direct mode: our own HTTPS listener, HTTP/2 and HTTP/1.1. Tunnel mode: a plain HTTP/1.1 server that never
  // listens; the tunnel hands it each stream as a connection (TLS is the tunnel's), so the same pipeline serves both.
  const server = config.mode === 'direct' ? createApiListener(tlsFor(config), config.limits) : http.createServer(listenerOptions(config.limits));
  serveKubernetesApi(server, { request: pipeline.handleRequest, upgrade: pipeline.handleUpgrade }, { limits: config.limits, metrics: metrics.registry, log });
  /** What keeps the relay from serving, the tunnel aside. */
  const unmet = (): string[] => [
    ...(verifier.ready ? [] : ['issuer keys (JWKS)']),
    ...(upstreamReachable ? [] : ['the Kubernetes API server']),
    ...(upstreamReachable && !mayImpersonate ? ['the impersonation self-check'] : []),
    ...(audit.unavailable ? [`room in the audit trail (${audit.unavailable})`] : []),
  ];
  const dialHub = (dial: HubDial, channel: 'tunnel' | 'control') =>
    new TunnelConnector({
      hubUrl: dial.hubUrl,
      cluster: config.cluster,
      connectorKey: dial.connectorKey,
      channel,
      version: version(),
      hubCa: dial.hubCa,
      hubCaDescription: dial.hubCaFile ? `the CA file ${dial.hubCaFile} (--issuer-ca-file)` : undefined,
      keepaliveMs: dial.keepaliveMs,
      ...(dial.backoff ? { backoff: dial.backoff } : {}),
      ...(channel === 'tunnel' ? { onStream: (stream: MuxStream) => server.emit('connection', stream) } : {}),
      onRevocations: (entries) => revocations.apply(entries),
      onGrantsChanged: () => centralGrants?.sync.nudge(),
      onRefused: (reason) => reportFatal(new Error(`the hub refused this relay's connector key for cluster "${config.cluster}": ${reason}`)),
      readiness: () => {
        const waitingFor = unmet();
        return waitingFor.length === 0 ? { ready: true } : { ready: false, reason: `waiting for ${waitingFor.join(', ')}` };
      },
      log: channel === 'tunnel' ? log : log.child({ channel }),
      metrics: metrics.registry,
    });
  let connector: TunnelConnector | undefined;
  let url: string;
  if (config.mode === 'direct') {
    if (!config.listen) throw new Error('direct mode needs a listen address');
    await listenOn(server, config.listen);
    url = listenerUrl(config.listen.host, boundPort(server));
    if (config.controlChannel && !config.worker) connector = dialHub(config.controlChannel, 'control');
  } else {
    if (!config.tunnel) throw new Error('tunnel mode needs a hub and a connector key');
    connector = dialHub(config.tunnel, 'tunnel');
    url = `${config.tunnel.hubUrl.replace(/\/+$/, '')}/clusters/${config.cluster}`;
  }
  const centralGrants = config.centralGrants && !config.worker ? startCentralGrants({ ...config.centralGrants, cluster: config.cluster, issuer: config.issuer, issuerCa: config.issuerCa, upstream: config.upstream, log }) : undefined;
  connector?.start();

  const readiness = (): Readiness => {
    // Only a tunnel is on the agents' path; a control channel that is down leaves a direct relay serving.
    const tunnel = config.mode === 'tunnel' ? connector : undefined;
    const waitingFor = [...unmet(), ...(tunnel && !tunnel.connected ? [`the tunnel (${tunnel.state})`] : [])];
    return { ready: waitingFor.length === 0, waitingFor };
  };
  const admin = config.adminListen ? await startAdminServer(config.adminListen, metrics.registry, readiness) : undefined;

  log.info(config.mode === 'direct' ? 'relay listening' : 'relay dialling the hub', { url, cluster: config.cluster, mode: config.mode, upstream: config.upstream.description, admin: admin ? boundPort(admin) : undefined });
  return {
    url,
    ...(config.mode === 'direct' && caFileFor(config) ? { caFile: caFileFor(config)! } : {}),
    ...(admin ? { adminPort: boundPort(admin) } : {}),
    pipeline,
    revocations,
    metrics: metrics.registry,
    readiness,
    failed,
    ...(centralGrants ? { centralGrants } : {}),
    async close() {
      clearInterval(readinessTimer);
      await centralGrants?.stop();
      await connector?.stop();
      stopPolling();
      await Promise.all([closeApiListener(server), admin && closeServer(admin)]);
      forwarder.close();
      await audit.close();
    },
  };
}

function tlsFor(config: RelayConfig): { cert: string; key: string } {
  const tls = listenerTls({ ...config, listen: config.listen ?? { host: '' } });
  return { cert: tls.cert, key: tls.key };
}

function caFileFor(config: RelayConfig): string | undefined {
  return config.tlsCertFile ? undefined : caPaths(config.dataDir).cert;
}

/** Any HTTP answer from `/version` means the API server is reachable with our TLS settings; resolves to why not, or undefined. */
function probeUpstream(upstream: Upstream): Promise<string | undefined> {
  return new Promise((resolve) => {
    const url = new URL(`${upstream.server.pathname.replace(/\/+$/, '')}/version`, upstream.server);
    const authorization = upstream.authorization();
    const transport = url.protocol === 'https:' ? https : http;
    const req = transport.request(url, {
      method: 'GET',
      timeout: PROBE_TIMEOUT_MS,
      headers: authorization ? { authorization } : {},
      ...upstream.tls,
    });
    req.on('response', (res) => {
      res.resume();
      resolve(undefined);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => resolve(causeOf(err)));
    req.end();
  });
}
