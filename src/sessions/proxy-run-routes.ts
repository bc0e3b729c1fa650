/**
 * One `kube-relay proxy` run is one session (DESIGN §12). The proxy opens
 * its run's session with the agent's API key when it starts, names it in a
 * `Kube-Relay-Session` header on every request it forwards (the relay
 * records it; the issuer files the record under the run only when the
 * session is that agent's, on that cluster), says it is alive every
 * PROXY_HEARTBEAT_MS, and ends the run when it stops:
 *
 *   POST   /v1/proxy-sessions                {"cluster"} → 201 {"id", "cluster", "startedAt"}
 *   POST   /v1/proxy-sessions/{id}/heartbeat → 204
 *   DELETE /v1/proxy-sessions/{id}           → 204 (the run has ended)
 *
 * Only the agent whose run it is can touch it; anyone else's id is 404.
 */
import type express from 'express';
import type { Request, RequestHandler, Response } from 'express';
import { isDnsLabel } from '../identity.js';
import { ApiError } from '../issuer/api-error.js';
import { tokenRefusal } from '../issuer/mint.js';
import type { Registry } from '../issuer/registry.js';
import type { Agent } from '../issuer/store.js';
import { newSessionId } from './assign.js';

/** How often a proxy says its run is alive (well inside PROXY_SILENCE_MS). */
export const PROXY_HEARTBEAT_MS = 30_000;

export interface ProxyRunDeps {
  registry: Registry;
  /** Authenticates the agent by its API key into res.locals.agent, and reads a small JSON body. */
  authenticateAgent: RequestHandler[];
  now: () => Date;
}

export function addProxyRunRoutes(app: express.Express, deps: ProxyRunDeps): void {
  const agentOf = (res: Response) => res.locals.agent as Agent;
  const touch = (end: boolean) => async (req: Request, res: Response) => {
    const id = String(req.params.id);
    if (!(await deps.registry.audit.touchProxySession(id, agentOf(res).name, deps.now(), end))) {
      throw new ApiError(404, 'not-found', `no open proxy session "${id.slice(0, 64)}" of agent "${agentOf(res).name}"`);
    }
    res.status(204).end();
  };

  app.post('/v1/proxy-sessions', ...deps.authenticateAgent, async (req, res) => {
    const agent = agentOf(res);
    const clusterName = (req.body as { cluster?: unknown } | undefined)?.cluster;
    if (typeof clusterName !== 'string' || !isDnsLabel(clusterName)) throw new ApiError(400, 'invalid-request', 'the body must be JSON {"cluster": "<cluster name>"}');
    const cluster = await deps.registry.findCluster(clusterName);
    const refusal = tokenRefusal(agent, clusterName, cluster);
    if (refusal || !cluster) throw new ApiError(refusal!.status, refusal!.code, refusal!.message);
    const startedAt = deps.now();
    const id = newSessionId('p');
    await deps.registry.audit.openProxySession({ id, org: cluster.org, cluster: cluster.name, agent: agent.name, at: startedAt });
    res.status(201).json({ id, cluster: cluster.name, startedAt: startedAt.toISOString() });
  });
  app.post('/v1/proxy-sessions/:id/heartbeat', ...deps.authenticateAgent, touch(false));
  app.delete('/v1/proxy-sessions/:id', ...deps.authenticateAgent, touch(true));
}
