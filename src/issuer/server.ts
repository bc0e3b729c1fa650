/**
 * The issuer's HTTPS API (DESIGN §6): the token endpoint, the JWKS and OIDC
 * discovery documents relays verify against, and the revocation feed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Counter, Registry as MetricsRegistry, collectDefaultMetrics } from 'prom-client';
import { adminApiRouter } from '../admin-api/router.js';
import { relayApiRouter } from '../relay-api/routes.js';
import { consoleRouter } from '../console/console.js';
import { DEFAULT_MAX_GRANT_DURATION_MS } from '../control/grants.js';
import { boundPort, closeServer, listenOn, startAdminServer } from '../admin.js';
import { type AuditConfig, type AuditSink, type DestinationEvents, openAuditSink } from '../audit/sink.js';
import { DEFAULT_AUDIT_RETENTION_MS, startAuditRetention } from '../sessions/retention.js';
import { effectivePolicy } from '../control/policies.js';
import { PolicyError, validatePolicy } from '../policy/policy.js';
import { addProxyRunRoutes } from '../sessions/proxy-run-routes.js';
import { StoreAuditDestination } from '../sessions/store-destination.js';
import { agentUser, isDnsLabel } from '../identity.js';
import type { Logger } from '../log.js';
import { closeApiListener, createApiListener, type ListenerLimits, serveKubernetesApi } from '../http-listener.js';
import { type ApiRequest, type ApiResponse, isHttp2, resetStream } from '../http-messages.js';
import { type HostPort, listenerUrl } from '../net.js';
import { writeStatusToSocket } from '../request-stages/errors.js';
import { continueIfExpected, discardRefusedBody } from '../request-body.js';
import { listenerTls } from '../tls/serving.js';
import { TunnelHub } from '../hub/hub.js';
import { bearerToken } from './bearer.js';
import { ApiError } from './api-error.js';
import { AuthFailureBrakes } from './failure-limiter.js';
import { type MintedToken, mintAgentToken, tokenRefusal } from './mint.js';
import { Registry } from './registry.js';
import { checkPepper, loadOrCreatePepper } from './secrets.js';
import { KeyNotReadyError, PROPAGATION_MS, REFRESH_INTERVAL_MS, SigningKeys } from './signing-keys.js';
import { type Agent, openStore, StoreUnavailableError } from './store.js';

/** The largest `POST /v1/token` body: `{"cluster": "<a DNS label>"}` needs under 100 bytes. */
const TOKEN_REQUEST_BODY_LIMIT = 4 * 1024;
const TOKEN_REQUEST_BODY_MESSAGE = 'the body must be JSON {"cluster": "<cluster name>"} of at most 4 KiB';

/** How far back `GET /v1/revocations` looks, at most and by default: well past a token's 60 s life. */
const REVOCATION_WINDOW_MS = 10 * 60_000;

export interface IssuerDeps {
  registry: Registry;
  keys: SigningKeys;
  publicUrl: string;
  metrics: MetricsRegistry;
  log: Logger;
  now?: () => Date;
  /** Budgets for failed authentications (tests lower them). */
  brakes?: AuthFailureBrakes;
  /** Budgets for failed admin API authentications (tests lower them). */
  adminBrakes?: AuthFailureBrakes;
  /** Where admin API changes are recorded (kind "admin"); the hub's sink in startIssuer. */
  audit?: AuditSink | undefined;
  /** The longest expiry of a grant (default 30 days; 0: no limit). */
  maxGrantDurationMs?: number | undefined;
  /** A grant of `cluster` was added or removed through the admin API. */
  onGrantsChanged?: ((cluster: string) => void) | undefined;
  /** The web console's settings: the CA that issued the listener's certificate (for the helm command it fills in) and its idle timeout. */
  console?: { issuerCaPem?: string | undefined; idleTimeoutMs?: number | undefined } | undefined;
}

export function createIssuerApp(deps: IssuerDeps): express.Express {
  const now = deps.now ?? (() => new Date());
  const tokensIssued = new Counter({
    name: 'kube_relay_tokens_issued_total',
    help: 'Agent tokens issued, by cluster.',
    labelNames: ['cluster'],
    registers: [deps.metrics],
  });
  const tokenRefusals = new Counter({
    name: 'kube_relay_token_refusals_total',
    help: 'Token requests refused by the issuer, by reason.',
    labelNames: ['reason'],
    registers: [deps.metrics],
  });

  /** The one minting path: the agent's own POST /v1/token and the admin API's POST /v1/agents/{name}/tokens. */
  const mint = async (agent: Agent, cluster: string): Promise<MintedToken> => {
    const [policy, cutAt] = await Promise.all([effectivePolicy(deps.registry, agent), deps.registry.policies.tokenCutAt(agentUser(agent.name))]);
    try {
      validatePolicy(policy);
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      throw new ApiError(409, 'policy-too-large', `agent "${agent.name}"'s policy and its teams' together cannot be carried in a token (${err.message}); simplify them`);
    }
    const minted = await mintAgentToken(deps.keys, deps.publicUrl, agent, cluster, issuedAfterCut(now(), cutAt), policy);
    tokensIssued.inc({ cluster });
    return minted;
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/.well-known/jwks.json', (_req, res) => {
    res.set('cache-control', 'public, max-age=60').json(deps.keys.jwks());
  });

  app.get('/.well-known/openid-configuration', (_req, res) => {
    res.json({
      issuer: deps.publicUrl,
      jwks_uri: `${deps.publicUrl}/.well-known/jwks.json`,
      token_endpoint: `${deps.publicUrl}/v1/token`,
      revocation_feed: `${deps.publicUrl}/v1/revocations`,
      id_token_signing_alg_values_supported: ['ES256'],
      subject_types_supported: ['public'],
      response_types_supported: ['id_token'],
      claims_supported: ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'groups'],
    });
  });

  const brakes = deps.brakes ?? new AuthFailureBrakes();
  /** Guessing is refused before the key is looked at or the body read. */
  const refuseGuessing = (req: Request, _res: Response, next: NextFunction) => {
    const waitMs = brakes.retryAfterMs(req.socket.remoteAddress ?? '', bearerToken(req.get('authorization')));
    if (waitMs === 0) return next();
    const seconds = Math.ceil(waitMs / 1000);
    next(new ApiError(429, 'too-many-failures', `too many failed token requests from this address or for this key; retry in ${seconds} s`, { 'retry-after': String(seconds) }));
  };
  const failedAuthentication = (req: Request, presentedKey: string | undefined, error: ApiError): ApiError => {
    const address = req.socket.remoteAddress ?? '';
    if (brakes.fail(address, presentedKey)) deps.log.warn('token requests with wrong API keys are being slowed down', { address, reason: error.code });
    return error;
  };

  /**
   * The API key is checked before any of the body is read or a 100 Continue
   * sent, so a wrong key costs the issuer no upload; a body declared larger
   * than the limit is refused unread too (express.json would read it all to
   * refuse it).
   */
  const authenticateAgent = async (req: Request, res: Response, next: NextFunction) => {
    const apiKey = bearerToken(req.get('authorization'));
    if (!apiKey) throw failedAuthentication(req, undefined, new ApiError(401, 'missing-api-key', 'send the agent API key as "Authorization: Bearer krl_agent_..."'));
    const agent = await deps.registry.agentForKey(apiKey);
    if (!agent) throw failedAuthentication(req, apiKey, new ApiError(401, 'invalid-api-key', 'the API key is not valid for any agent'));
    if (agent.revokedAt) throw new ApiError(403, 'agent-revoked', `agent "${agent.name}" has been revoked`);
    if (Number(req.get('content-length') ?? 0) > TOKEN_REQUEST_BODY_LIMIT) throw new ApiError(400, 'invalid-request', TOKEN_REQUEST_BODY_MESSAGE);
    res.locals.agent = agent;
    continueIfExpected(req, res);
    next();
  };

  app.post('/v1/token', refuseGuessing, authenticateAgent, express.json({ limit: TOKEN_REQUEST_BODY_LIMIT, type: () => true }), async (req, res) => {
    const agent = res.locals.agent as Agent;
    const clusterName = (req.body as { cluster?: unknown } | undefined)?.cluster;
    if (typeof clusterName !== 'string' || !isDnsLabel(clusterName)) {
      throw new ApiError(400, 'invalid-request', 'the body must be JSON {"cluster": "<cluster name>"}');
    }
    const cluster = await deps.registry.findCluster(clusterName);
    const refusal = tokenRefusal(agent, clusterName, cluster);
    if (refusal || !cluster) throw new ApiError(refusal!.status, refusal!.code, refusal!.message);
    const minted = await mint(agent, cluster.name);
    deps.log.info('token issued', { agent: agent.name, cluster: cluster.name, tokenId: minted.tokenId });
    res.set('cache-control', 'no-store').json({ token: minted.token, expiresAt: minted.expiresAt.toISOString() });
  });

  addProxyRunRoutes(app, { registry: deps.registry, authenticateAgent: [refuseGuessing, authenticateAgent, express.json({ limit: TOKEN_REQUEST_BODY_LIMIT, type: () => true })], now });

  app.get('/v1/revocations', async (req, res) => {
    const sinceParam = typeof req.query.since === 'string' ? new Date(req.query.since) : undefined;
    if (sinceParam && Number.isNaN(sinceParam.getTime())) {
      throw new ApiError(400, 'invalid-request', 'since must be an RFC 3339 time');
    }
    const generatedAt = now();
    // A revocation older than the window matters to nobody (every token issued before it has expired),
    // so `since` reaches back at most that far: the feed never lists every agent ever revoked.
    const oldest = generatedAt.getTime() - REVOCATION_WINDOW_MS;
    const since = new Date(Math.max(sinceParam?.getTime() ?? oldest, oldest));
    const items = (await deps.registry.revocationsSince(since)).map((r) => ({ user: r.subject, revokedAt: r.revokedAt.toISOString() }));
    res.set('cache-control', 'no-store').json({ generatedAt: generatedAt.toISOString(), items });
  });

  app.use(relayApiRouter({ registry: deps.registry, brakes, log: deps.log, now }));
  const adminBrakes = deps.adminBrakes ?? new AuthFailureBrakes();
  app.use(adminApiRouter({ registry: deps.registry, brakes: adminBrakes, log: deps.log, mint, audit: deps.audit, now, maxGrantDurationMs: deps.maxGrantDurationMs, onGrantsChanged: deps.onGrantsChanged }));
  app.use('/ui', consoleRouter({ registry: deps.registry, brakes: adminBrakes, log: deps.log, audit: deps.audit, now, publicUrl: deps.publicUrl, issuerCaPem: deps.console?.issuerCaPem, idleTimeoutMs: deps.console?.idleTimeoutMs, maxGrantDurationMs: deps.maxGrantDurationMs === undefined ? DEFAULT_MAX_GRANT_DURATION_MS : deps.maxGrantDurationMs || undefined, onGrantsChanged: deps.onGrantsChanged }));

  app.use((_req, _res, next) => next(new ApiError(404, 'not-found', 'no such endpoint')));

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    discardRefusedBody(req, res);
    const apiError =
      err instanceof ApiError
        ? err
        : err instanceof StoreUnavailableError
          ? new ApiError(503, 'store-unavailable', 'the issuer cannot reach its store right now; retry in a few seconds')
          : err instanceof KeyNotReadyError
            ? new ApiError(503, 'key-not-ready', err.message)
        : isBodyParseError(err)
          ? new ApiError(400, 'invalid-request', TOKEN_REQUEST_BODY_MESSAGE)
          : undefined;
    if (!apiError) {
      deps.log.error('issuer request failed', { error: (err as Error).message });
      res.status(500).json({ error: 'internal', message: 'the issuer failed; see its log' });
      return;
    }
    if (apiError.status === 401 || apiError.status === 403 || apiError.status === 429) tokenRefusals.inc({ reason: apiError.code });
    res.status(apiError.status).set(apiError.headers).json({ error: apiError.code, message: apiError.message });
  });

  return app;
}

/** The hub's records into the central audit, once the store is open (records come only after that). */
function hubRecordsToStore(registry: () => Registry | undefined, events: DestinationEvents, log: Logger): StoreAuditDestination {
  return new StoreAuditDestination(
    {
      orgOf: async (cluster) => (await registry()?.findCluster(cluster))?.org,
      ingest: (cluster, records) => registry()!.audit.ingestAudit(cluster, records),
      log,
    },
    events,
  );
}

/**
 * Relays refuse an agent's tokens issued at or before its last cut (`policy set --now`), in
 * whole seconds (`iat`): a token minted in the second of a cut would be refused for its whole
 * life, so it is dated the next second (within the 5 s skew every verifier allows).
 */
function issuedAfterCut(at: Date, cutAt: Date | undefined): Date {
  if (!cutAt || Math.floor(at.getTime() / 1000) * 1000 > cutAt.getTime()) return at;
  return new Date((Math.floor(cutAt.getTime() / 1000) + 1) * 1000);
}

function isBodyParseError(err: unknown): boolean {
  const type = (err as { type?: string } | undefined)?.type;
  return type === 'entity.parse.failed' || type === 'entity.too.large' || type === 'encoding.unsupported';
}

const HUB_DRAIN_MS = 10_000;

export interface IssuerConfig {
  dataDir: string;
  listen: HostPort;
  publicUrl?: string | undefined;
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  tlsSans?: string[];
  adminListen?: HostPort | undefined;
  keyRotationIntervalMs: number;
  log: Logger;
  /** On close, how long tunnelled requests in flight may take to finish (default 10 s). */
  drainMs?: number;
  /** Tunnel ping interval (default 30 s, DESIGN §4); tests shorten it. */
  tunnelKeepaliveMs?: number;
  /** How long a relay may read nothing while the hub holds bytes for it before its tunnel is closed (default 30 s; tests shorten it). */
  tunnelStallTimeoutMs?: number;
  /** Header and request deadlines of the listener (tests shorten them). */
  limits?: ListenerLimits;
  /** Streams one tunnel carries at once (tests lower it). */
  tunnelMaxStreams?: number;
  /** Requests one agent may have in flight through the hub at once (default 2 000, as each relay). */
  maxRequestsPerAgent?: number | undefined;
  /** The longest expiry of a grant made through the admin API (default 30 days; 0: no limit). */
  maxGrantDurationMs?: number | undefined;
  /** Where the hub records the requests it refuses (default: stdout; the central audit in the store too). */
  audit?: AuditConfig | undefined;
  /** How long the central audit keeps records and sessions (default 30 days). */
  auditRetentionMs?: number | undefined;
  /** `--console-idle-timeout`: a web console session ends after this long without activity (default 30 min). */
  consoleIdleTimeoutMs?: number | undefined;
  /** This hub's replica id and the number of replicas behind the public URL (DESIGN §9; default: one, named after the host). */
  hubReplica?: { id: string; count: number } | undefined;
  /** How often the store's record of the relay connections this hub holds is refreshed (default 10 s; tests shorten it). */
  relayHeartbeatMs?: number | undefined;
  /** postgres://… for a store shared by several replicas; undefined: SQLite in the data directory. */
  storeUrl?: string | undefined;
  /** The pepper, from a file (required with a shared store unless KUBE_RELAY_PEPPER is set). */
  pepperFile?: string | undefined;
}

export interface RunningIssuer {
  url: string;
  /** The port it listens on (the one chosen for --listen HOST:0). */
  port: number;
  caFile?: string;
  adminPort?: number;
  close(): Promise<void>;
}

export async function startIssuer(config: IssuerConfig): Promise<RunningIssuer> {
  const metrics = new MetricsRegistry();
  collectDefaultMetrics({ register: metrics, prefix: 'kube_relay_issuer_' });
  // First: a bad audit path fails the issuer before anything else is opened.
  let registryForAudit: Registry | undefined;
  const audit = await openAuditSink({ ...config.audit, store: (events) => hubRecordsToStore(() => registryForAudit, events, config.log) }, metrics, config.log);
  const shared = config.storeUrl !== undefined && config.storeUrl !== '';
  const pepper = loadOrCreatePepper(config.dataDir, process.env, { pepperFile: config.pepperFile, shared });
  const store = await openStore({ dataDir: config.dataDir, storeUrl: config.storeUrl });
  const stopStore = async () => {
    await audit.close();
    await store.close();
  };
  const registry = new Registry(store, pepper);
  registryForAudit = registry;
  // Replicas sharing a store wait for their new keys to reach each other before signing with them.
  const keys = new SigningKeys(store, config.dataDir, shared ? PROPAGATION_MS : 0);
  try {
    await checkPepper(store, pepper);
    if (await keys.rotateIfDue(config.keyRotationIntervalMs)) config.log.info('signing key rotated', { signer: keys.signer });
    await keys.refresh();
  } catch (err) {
    await stopStore();
    throw err;
  }
  const storeHealth = watchStore(keys, config, config.log);
  const stopRetention = startAuditRetention(registry.audit, config.auditRetentionMs ?? DEFAULT_AUDIT_RETENTION_MS, config.log);

  const tls = listenerTls(config);
  const server = createApiListener(tls, config.limits);
  await listenOn(server, config.listen);
  const publicUrl = (config.publicUrl ?? listenerUrl(config.listen.host, boundPort(server))).replace(/\/+$/, '');
  // Called only for requests, which come once the listener below is up and the hub exists.
  const console = { issuerCaPem: tls.caFile ? readFileSync(tls.caFile, 'utf8').replace(/\r\n/g, '\n') : undefined, idleTimeoutMs: config.consoleIdleTimeoutMs };
  const app = createIssuerApp({ registry, keys, publicUrl, metrics, log: config.log, audit, maxGrantDurationMs: config.maxGrantDurationMs, onGrantsChanged: (cluster) => hub.notifyGrantsChanged(cluster), console });
  const hub = new TunnelHub({ registry, publicUrl, jwks: () => keys.jwks(), metrics, audit, log: config.log, keepaliveMs: config.tunnelKeepaliveMs, stallTimeoutMs: config.tunnelStallTimeoutMs, maxStreamsPerTunnel: config.tunnelMaxStreams, maxRequestsPerAgent: config.maxRequestsPerAgent, replica: config.hubReplica, relayHeartbeatMs: config.relayHeartbeatMs });
  serveKubernetesApi(server, {
    request: (req: ApiRequest, res: ApiResponse) => {
      if (hub.handleRequest(req, res)) return;
      // express (the admin API, the console, the token endpoint) works on Node's HTTP/1.1 objects only: it
      // re-parents each request onto IncomingMessage's prototype, which breaks (and throws on) an HTTP/2 one.
      // HTTP_1_1_REQUIRED (RFC 9113 §7) makes a browser or curl send it again over HTTP/1.1; kubectl only
      // asks for /clusters/ paths, which the hub serves over both.
      if (isHttp2(req)) return resetStream(req.stream, http2.constants.NGHTTP2_HTTP_1_1_REQUIRED);
      app(req, res as ServerResponse); // an HTTP/1.1 request's answer is a ServerResponse
    },
    upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!hub.handleUpgrade(req, socket, head)) writeStatusToSocket(socket, 404, 'no such endpoint');
    },
  }, { limits: config.limits, metrics, log: config.log });
  const readiness = () => {
    const waitingFor = [...(keys.ready ? [] : ['a signing key every replica has seen']), ...(storeHealth.failure ? [`the store (${storeHealth.failure})`] : [])];
    return { ready: waitingFor.length === 0, waitingFor };
  };
  const admin = config.adminListen ? await startAdminServer(config.adminListen, metrics, readiness) : undefined;
  config.log.info('issuer listening', { url: publicUrl, caFile: tls.caFile, admin: admin ? boundPort(admin) : undefined });

  return {
    url: publicUrl,
    port: boundPort(server),
    ...(tls.caFile ? { caFile: tls.caFile } : {}),
    ...(admin ? { adminPort: boundPort(admin) } : {}),
    async close() {
      storeHealth.stop();
      stopRetention();
      // Stop taking connections, let tunnelled requests in flight finish, then cut what is left.
      await closeApiListener(server, () => hub.close(config.drainMs ?? HUB_DRAIN_MS));
      if (admin) await closeServer(admin);
      await stopStore();
    },
  };
}

/**
 * Every few seconds: refresh the keys (this replica's heartbeat, and every live replica's public
 * keys for the JWKS), and rotate when due. A store that stops answering makes the issuer not
 * ready, said once, and ready again when it answers; tunnels it holds keep forwarding meanwhile.
 */
function watchStore(keys: SigningKeys, config: IssuerConfig, log: Logger): { failure: string | undefined; stop(): void } {
  const health: { failure: string | undefined; stop(): void } = { failure: undefined, stop: () => clearInterval(timer) };
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      if (await keys.rotateIfDue(config.keyRotationIntervalMs)) log.info('signing key rotated', { signer: keys.signer });
      await keys.refresh();
      if (health.failure) log.info('the store answers again', { store: config.storeUrl ? 'postgres' : 'sqlite' });
      health.failure = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (!health.failure) log.warn('the store cannot be read; token requests get 503 and this issuer is not ready until it answers', { error: message });
      health.failure = message;
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), REFRESH_INTERVAL_MS);
  timer.unref();
  return health;
}
