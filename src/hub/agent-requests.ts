/**
 * Agents' requests for a tunnelled cluster, at `/clusters/<name>/…` (DESIGN
 * §4): the hub verifies the token (`aud` = that cluster) and the rest of
 * its admission before anything enters a tunnel, strips the prefix, and
 * hands the request to one of the cluster's relays, which runs its ordinary
 * pipeline on it. A request refused here is recorded in the hub's own audit
 * trail, since no relay saw it.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, type Registry as MetricsRegistry } from 'prom-client';
import { type AuditedRequest, auditedRequest, auditRecord } from '../audit/record.js';
import type { AuditSink } from '../audit/sink.js';
import type { Registry } from '../issuer/registry.js';
import { type ApiRequest, type ApiResponse, isHttp2 } from '../http-messages.js';
import type { Logger } from '../log.js';
import { continueIfExpected, discardRefusedBody } from '../request-body.js';
import { writeStatus, writeStatusToSocket } from '../request-stages/errors.js';
import { type ProxyTarget, proxyRequest, proxyUpgrade } from '../request-stages/kubernetes-proxy.js';
import { checkRequestTarget } from '../request-stages/request-target.js';
import { validatedUpgrade } from '../request-stages/strip-headers.js';
import type { MuxSession } from '../tunnel/mux.js';
import { type AgentAdmission, ClosingTracker, HubRefusal, type Refusal, refusal } from './admission.js';
import type { RelayTunnels } from './relay-tunnels.js';

/** Kubernetes API paths that arrived without the /clusters/<name> prefix. */
const UNPREFIXED_KUBERNETES_PATH = /^\/(api|apis|version|openapi|healthz|livez|readyz)(\/|\?|$)/;
const UNPREFIXED_MESSAGE =
  'this is the kube-relay hub: Kubernetes API requests go to /clusters/<cluster>/... (kubectl proxy drops that prefix unless run with --append-server-path)';
const CLUSTER_PATH = /^\/clusters\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\/.*)?$/;

interface ClusterRoute {
  cluster: string;
  /** The request target as the relay sees it: the path after /clusters/<name>, and the query. */
  rest: string;
}

export interface AgentRequestsOptions {
  registry: Registry;
  tunnels: RelayTunnels;
  admission: AgentAdmission;
  metrics: MetricsRegistry;
  /** Records of the requests the hub refuses: they never reach a relay's audit trail. */
  audit: AuditSink;
  log: Logger;
}

export class AgentRequests {
  private readonly refusals: Counter;

  constructor(private readonly options: AgentRequestsOptions) {
    this.refusals = new Counter({
      name: 'kube_relay_hub_refusals_total',
      help: 'Requests for tunnelled clusters the hub refused before they entered a tunnel, by HTTP code.',
      labelNames: ['code'],
      registers: [options.metrics],
    });
  }

  /** True when the request is for a /clusters/ path (or a Kubernetes path missing it) and has been handled. */
  handleRequest(req: ApiRequest, res: ApiResponse): boolean {
    const route = routeOf(req);
    if (!route) {
      if (!UNPREFIXED_KUBERNETES_PATH.test(req.url ?? '')) return false;
      discardRefusedBody(req, res);
      writeStatus(res, 404, UNPREFIXED_MESSAGE);
      return true;
    }
    const closes = new ClosingTracker(res);
    this.admit(req, route, closes, false).then(
      (session) => {
        if (closes.hasClosed) return; // the client left while it was admitted: nothing enters the tunnel
        continueIfExpected(req, res);
        req.url = route.rest;
        proxyRequest(tunnelTarget(keptAliveAgent(session, req)), req, res, {
          onError: (err) => {
            this.options.log.warn('tunnelled request failed', { cluster: route.cluster, error: err.message });
            writeStatus(res, 502, `the tunnel to cluster "${route.cluster}" broke off`);
          },
        });
      },
      (err: unknown) => {
        const { code, message, headers } = this.refuse(req, route, err);
        discardRefusedBody(req, res);
        writeStatus(res, code, message, headers);
      },
    );
    return true;
  }

  /** True when the upgrade is for a /clusters/ path (or a Kubernetes path missing it) and has been handled. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const route = routeOf(req);
    if (!route) {
      if (!UNPREFIXED_KUBERNETES_PATH.test(req.url ?? '')) return false;
      writeStatusToSocket(socket, 404, UNPREFIXED_MESSAGE);
      return true;
    }
    socket.on('error', () => socket.destroy());
    const closes = new ClosingTracker(socket);
    Promise.resolve()
      .then(() => {
        validatedUpgrade(req.rawHeaders); // h2c and friends never enter a tunnel
        return this.admit(req, route, closes, true);
      })
      .then(
        (session) => {
          if (closes.hasClosed) return;
          req.url = route.rest;
          proxyUpgrade(tunnelTarget(oneStreamAgent(session, req)), req, socket, head, {
            onError: () => {
              // Before any answer (the tunnel closed since it was chosen), a Status; after the 101, only the cut.
              if ((socket as Duplex & { bytesWritten?: number }).bytesWritten) socket.destroy();
              else writeStatusToSocket(socket, 502, `the tunnel to cluster "${route.cluster}" broke off`);
            },
          });
        },
        (err: unknown) => {
          const { code, message } = this.refuse(req, route, err);
          writeStatusToSocket(socket, code, message);
        },
      );
    return true;
  }

  /**
   * The target must be one the relay can forward unchanged, the token for
   * this cluster, and the agent within its quota, before anything enters its
   * tunnel; the agent's slot is held until `closes` closes.
   */
  private async admit(req: ApiRequest, { cluster, rest }: ClusterRoute, closes: ClosingTracker, upgrade: boolean): Promise<MuxSession> {
    const { admission, tunnels, registry } = this.options;
    checkRequestTarget(rest);
    const identity = await admission.identify(req, cluster);
    admission.applyPolicy(identity, req.method ?? 'GET', rest, upgrade);
    // Only now, so that a caller without a valid token learns nothing of which clusters exist. A
    // connected relay proves the cluster exists: the store is asked only without one.
    if (!tunnels.hasRelay(cluster) && !(await registry.findCluster(cluster))) throw new HubRefusal(404, 'unknown-cluster', `no cluster named "${cluster}"`, identity);
    const session = tunnels.choose(cluster, identity);
    admission.holdSlot(identity, closes);
    return session;
  }

  /**
   * A request that never reaches a relay leaves no record in a relay's audit
   * trail: the hub writes it to its own, in the same shape (the path as the
   * relay would have seen it), and logs why (never the token: the path
   * without the query).
   */
  private refuse(req: ApiRequest, route: ClusterRoute, err: unknown): Refusal {
    const refused = refusal(err);
    this.refusals.inc({ code: String(refused.code) });
    if (refused.reason === 'internal-error') this.options.log.error('the hub failed to handle a request', { cluster: route.cluster, error: (err as Error).message });
    else this.options.log.info('request refused at the hub', { cluster: route.cluster, status: refused.code, reason: refused.message, method: req.method, path: (req.url ?? '').split('?')[0], sourceIp: req.socket.remoteAddress });
    const request: AuditedRequest = {
      ...auditedRequest(req, route.cluster, 'tunnel', route.rest, randomUUID()),
      identity: refused.identity,
      status: refused.code,
      decision: refused.code >= 500 ? 'error' : refused.policyRule !== undefined ? 'denied-by-policy' : 'denied-by-relay',
      reason: refused.reason,
      policyRule: refused.policyRule,
    };
    this.options.audit.writeIfRoom(auditRecord(request, Date.now()));
    return refused;
  }
}

function routeOf(req: ApiRequest): ClusterRoute | undefined {
  const url = req.url ?? '';
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  const match = CLUSTER_PATH.exec(path);
  if (!match) return undefined;
  return { cluster: match[1]!, rest: `${match[3] ?? '/'}${queryStart === -1 ? '' : url.slice(queryStart)}` };
}

/**
 * Into the tunnel, always HTTP/1.1 (the relay serves its streams with an
 * http.Server): the relay at its end sees the client's Host (HTTP/2's
 * :authority) and request target.
 */
function tunnelTarget(agent: http.Agent): ProxyTarget {
  return { protocol: 'http:', hostname: 'tunnel', port: 80, agent, host: 'client' };
}

/**
 * The agent of a client connection (an HTTP/1.1 socket, an HTTP/2 session)
 * into one tunnel: its plain requests reuse the tunnel streams its earlier
 * ones have finished with, as a keep-alive connection would, instead of
 * opening a stream (and, at the relay, a connection of its http.Server)
 * each. A stream only ever carries one client connection's requests, so
 * the address the relay audits stays the client's. The streams close with
 * the client connection; the relay never closes an idle one by a timer (a
 * mux stream has none), so a reused stream is not one the relay is closing.
 */
function keptAliveAgent(session: MuxSession, req: ApiRequest): http.Agent {
  const connection = isHttp2(req) ? req.stream.session : req.socket;
  if (!connection) return oneStreamAgent(session, req);
  let agents = agentsOfConnection.get(connection);
  if (!agents) {
    const created = (agents = new Map());
    agentsOfConnection.set(connection, created);
    connection.once('close', () => {
      for (const agent of created.values()) agent.destroy();
      created.clear();
    });
  }
  let agent = agents.get(session);
  if (!agent) agents.set(session, (agent = streamAgent(session, req, true)));
  return agent;
}

const agentsOfConnection = new WeakMap<object, Map<MuxSession, http.Agent>>();

/** An upgrade's: the stream becomes the upgraded connection, never to be reused. */
function oneStreamAgent(session: MuxSession, req: ApiRequest): http.Agent {
  return streamAgent(session, req, false);
}

/**
 * An agent that opens tunnel streams, carrying the client's address for
 * the relay's audit. A tunnel that closed since it was chosen fails the
 * request (the forwarder's onError answers 502) through the callback form
 * of createConnection, not with a throw.
 */
function streamAgent(session: MuxSession, req: ApiRequest, keepAlive: boolean): http.Agent {
  const agent = new http.Agent({ keepAlive });
  const remote = { remoteAddress: req.socket.remoteAddress, remotePort: req.socket.remotePort };
  (agent as unknown as { createConnection: (options: unknown, done: (err: Error | null, stream?: Duplex) => void) => undefined }).createConnection = (_options, done) => {
    let stream: Duplex;
    try {
      stream = session.open(remote);
    } catch (err) {
      done(err as Error);
      return undefined;
    }
    done(null, stream);
    return undefined;
  };
  return agent;
}
