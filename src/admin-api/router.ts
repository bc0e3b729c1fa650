/**
 * The admin API on the issuer's listener (DESIGN §10): JSON in and out,
 * `Authorization: Bearer krl_admin_…`, errors `{"error", "message"}`. Each
 * route is a thin adapter: it authenticates the caller, reads the request
 * and calls the control operation, which does the org check (STYLE 12).
 *
 * Lists page with `?limit=&continue=` (and `org` for an all-orgs admin).
 * Request bodies are JSON objects whose every field is known and of its
 * type (422 naming the field otherwise); whether a name is a DNS label is
 * the Registry's rule, the same on the local CLI's path. Every change is
 * written to the audit trail as a `kind: "admin"` record (docs/audit.md).
 * Grants have their routes in grant-routes.ts, agent and team policies
 * theirs in policy-routes.ts, sessions and the central audit trail theirs
 * in session-routes.ts.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { AdminCaller } from '../control/caller.js';
import { clusterStatus } from '../control/cluster-status.js';
import * as ops from '../control/operations.js';
import { ApiError } from '../issuer/api-error.js';
import { type AuthFailureBrakes, type FailureBudget, FailureLimiter } from '../issuer/failure-limiter.js';
import type { Registry } from '../issuer/registry.js';
import type { Admin, Agent } from '../issuer/store.js';
import { adminView, agentView, clusterView } from '../control/views.js';
import type { AdminAction, AdminAuditRecord } from '../audit/record.js';
import type { AuditSink } from '../audit/sink.js';
import type { MintedToken } from '../issuer/mint.js';
import type { Logger } from '../log.js';
import { discardRefusedBody } from '../request-body.js';
import { BODY_LIMIT, pageRequest, readBody, toApiError } from './request.js';
import { authenticateAdmin } from './authenticate.js';
import { addGrantRoutes } from './grant-routes.js';
import { addPolicyRoutes } from './policy-routes.js';
import { addSessionRoutes } from './session-routes.js';
import { DEFAULT_MAX_GRANT_DURATION_MS } from '../control/grants.js';

export interface AdminApiDeps {
  registry: Registry;
  /** Failed admin authentications, counted per address and key prefix (own budget, as /v1/token's). */
  brakes: AuthFailureBrakes;
  log: Logger;
  /** Mints an agent's 60-second token (the issuer's one minting path, shared with POST /v1/token). */
  mint?: ((agent: Agent, cluster: string) => Promise<MintedToken>) | undefined;
  /** Where changes are recorded (kind "admin"); none: not recorded (unit tests of the router alone). */
  audit?: AuditSink | undefined;
  now?: (() => Date) | undefined;
  /** The longest expiry of a grant (default 30 days; 0: no limit). */
  maxGrantDurationMs?: number | undefined;
  /** A grant of `cluster` was added or removed through this API. */
  onGrantsChanged?: ((cluster: string) => void) | undefined;
  /** Tokens one admin may mint for one agent: a burst, then one per refill (default 10, then 1 per 5 s). */
  mintBudget?: FailureBudget | undefined;
}

/**
 * A platform mints an agent's 60-second token about once a minute; 10 at once and then one every
 * 5 s (12 a minute) is far above that and keeps a leaked admin key from minting without end.
 */
export const MINT_BUDGET: FailureBudget = { burst: 10, refillMs: 5_000 };

export function adminApiRouter(deps: AdminApiDeps): express.Router {
  const router = express.Router();

  const authenticate = async (req: Request, res: Response, next: NextFunction) => {
    const result = await authenticateAdmin(deps, { address: req.socket.remoteAddress ?? '', authorization: req.get('authorization') });
    if (!result.ok) throw new ApiError(result.status, result.error, result.message, result.headers);
    res.locals.caller = result.caller;
    next();
  };
  const caller = (res: Response) => res.locals.caller as AdminCaller;

  const now = deps.now ?? (() => new Date());
  /** Tokens minted, per admin and agent (counted as the failure brakes count failures). */
  const mintBudget = deps.mintBudget ?? MINT_BUDGET;
  const mintCounts = new FailureLimiter(mintBudget);
  const json = express.json({ limit: BODY_LIMIT, type: () => true });
  const audit = (req: Request, res: Response, action: AdminAction, object: AdminAuditRecord['object'], extra: { cluster?: string; tokenId?: string } = {}) => {
    const admin = caller(res);
    deps.audit?.admin({ time: now().toISOString(), kind: 'admin', admin: admin.name, adminOrg: admin.org ?? null, action, object, ...extra, sourceIp: req.socket.remoteAddress ?? null });
  };
  const send = (res: Response, status: number, body: unknown) => res.status(status).set('cache-control', 'no-store').json(body);

  // ---- agents ----
  router.get('/v1/agents', authenticate, async (req, res) => {
    const listed = await ops.listAgents(deps.registry, caller(res), pageRequest(req));
    send(res, 200, { items: listed.items.map(agentView), ...(listed.continue ? { continue: listed.continue } : {}) });
  });
  router.post('/v1/agents', authenticate, json, async (req, res) => {
    const input = readBody(req, 'POST /v1/agents', { name: 'string', org: 'string?', teams: 'strings' });
    const created = await ops.createAgent(deps.registry, caller(res), { name: input.name as string, org: input.org as string | undefined, teams: input.teams as string[] });
    audit(req, res, 'create', objectOf('agent', created.agent));
    send(res, 201, { ...agentView(created.agent), apiKey: created.apiKey });
  });
  router.get('/v1/agents/:name', authenticate, async (req, res) => {
    send(res, 200, agentView(await ops.getAgent(deps.registry, caller(res), param(req))));
  });
  router.delete('/v1/agents/:name', authenticate, async (req, res) => {
    const agent = await ops.revokeAgent(deps.registry, caller(res), param(req));
    audit(req, res, 'revoke', objectOf('agent', agent));
    send(res, 200, agentView(agent));
  });
  router.post('/v1/agents/:name/keys', authenticate, json, async (req, res) => {
    readBody(req, `POST /v1/agents/{name}/keys`, {}, true);
    const rotated = await ops.rotateAgentKey(deps.registry, caller(res), param(req));
    audit(req, res, 'rotate-key', objectOf('agent', rotated.agent));
    send(res, 200, { ...agentView(rotated.agent), apiKey: rotated.apiKey });
  });
  router.post('/v1/agents/:name/tokens', authenticate, json, async (req, res) => {
    const input = readBody(req, 'POST /v1/agents/{name}/tokens', { cluster: 'string' });
    if (!deps.mint) throw new ApiError(501, 'not-implemented', 'this issuer mints no tokens through the admin API');
    const budgetKey = `${caller(res).name}\u0000${param(req)}`;
    const waitMs = mintCounts.retryAfterMs(budgetKey);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new ApiError(429, 'too-many-tokens', `admin "${caller(res).name}" minted too many tokens for agent "${param(req)}" (${mintBudget.burst} at once, then one every ${mintBudget.refillMs / 1000} s; each lasts 60 s): retry in ${seconds} s`, { 'retry-after': String(seconds) });
    }
    const done = await ops.mintTokenForAgent(deps.registry, caller(res), { agent: param(req), cluster: input.cluster as string }, deps.mint);
    mintCounts.fail(budgetKey);
    audit(req, res, 'mint-token', objectOf('agent', done.agent), { cluster: done.cluster.name, tokenId: done.minted.tokenId });
    deps.log.info('token issued', { agent: done.agent.name, cluster: done.cluster.name, tokenId: done.minted.tokenId, admin: caller(res).name });
    send(res, 200, { token: done.minted.token, expiresAt: done.minted.expiresAt.toISOString() });
  });

  // ---- clusters ----
  router.get('/v1/clusters', authenticate, async (req, res) => {
    const listed = await ops.listClusters(deps.registry, caller(res), pageRequest(req));
    send(res, 200, { items: listed.items.map(clusterView), ...(listed.continue ? { continue: listed.continue } : {}) });
  });
  router.post('/v1/clusters', authenticate, json, async (req, res) => {
    const input = readBody(req, 'POST /v1/clusters', { name: 'string', org: 'string?' });
    const created = await ops.createCluster(deps.registry, caller(res), { name: input.name as string, org: input.org as string | undefined });
    audit(req, res, 'create', objectOf('cluster', created.cluster));
    send(res, 201, { ...clusterView(created.cluster), connectorKey: created.connectorKey });
  });
  router.get('/v1/clusters/:name/status', authenticate, async (req, res) => send(res, 200, await clusterStatus(deps.registry, caller(res), param(req))));
  router.get('/v1/clusters/:name', authenticate, async (req, res) => {
    send(res, 200, clusterView(await ops.getCluster(deps.registry, caller(res), param(req))));
  });
  router.delete('/v1/clusters/:name', authenticate, async (req, res) => {
    const cluster = await ops.revokeCluster(deps.registry, caller(res), param(req));
    audit(req, res, 'revoke', objectOf('cluster', cluster));
    send(res, 200, clusterView(cluster));
  });
  router.post('/v1/clusters/:name/keys', authenticate, json, async (req, res) => {
    readBody(req, `POST /v1/clusters/{name}/keys`, {}, true);
    const rotated = await ops.rotateClusterKey(deps.registry, caller(res), param(req));
    audit(req, res, 'rotate-key', objectOf('cluster', rotated.cluster));
    send(res, 200, { ...clusterView(rotated.cluster), connectorKey: rotated.connectorKey });
  });

  // ---- admins ----
  router.get('/v1/admins', authenticate, async (req, res) => {
    const listed = await ops.listAdmins(deps.registry, caller(res), pageRequest(req));
    send(res, 200, { items: listed.items.map(adminView), ...(listed.continue ? { continue: listed.continue } : {}) });
  });
  router.post('/v1/admins', authenticate, json, async (req, res) => {
    const input = readBody(req, 'POST /v1/admins', { name: 'string', org: 'string?', allOrgs: 'boolean?' });
    const created = await ops.createAdmin(deps.registry, caller(res), { name: input.name as string, org: input.org as string | undefined, allOrgs: input.allOrgs as boolean | undefined });
    audit(req, res, 'create', adminObject(created.admin));
    send(res, 201, { ...adminView(created.admin), adminKey: created.adminKey });
  });
  router.get('/v1/admins/:name', authenticate, async (req, res) => {
    send(res, 200, adminView(await ops.getAdmin(deps.registry, caller(res), param(req))));
  });
  router.delete('/v1/admins/:name', authenticate, async (req, res) => {
    const admin = await ops.revokeAdmin(deps.registry, caller(res), param(req));
    audit(req, res, 'revoke', adminObject(admin));
    send(res, 200, adminView(admin));
  });
  router.post('/v1/admins/:name/keys', authenticate, json, async (req, res) => {
    readBody(req, `POST /v1/admins/{name}/keys`, {}, true);
    const rotated = await ops.rotateAdminKey(deps.registry, caller(res), param(req));
    audit(req, res, 'rotate-key', adminObject(rotated.admin));
    send(res, 200, { ...adminView(rotated.admin), adminKey: rotated.adminKey });
  });

  // ---- grants, policies, sessions and audit, in their own files ----
  addGrantRoutes(router, { registry: deps.registry, authenticate, json, caller, audit, send, now, maxGrantDurationMs: deps.maxGrantDurationMs === undefined ? DEFAULT_MAX_GRANT_DURATION_MS : deps.maxGrantDurationMs || undefined, onGrantsChanged: deps.onGrantsChanged });
  addPolicyRoutes(router, { registry: deps.registry, authenticate, json, caller, audit, send, now });
  addSessionRoutes(router, { registry: deps.registry, authenticate, caller, send, now });

  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    const apiError = toApiError(err);
    if (!apiError) {
      deps.log.error('admin API request failed', { error: (err as Error).message });
      next(err);
      return;
    }
    discardRefusedBody(req, res);
    res.status(apiError.status).set({ 'cache-control': 'no-store', ...apiError.headers }).json({ error: apiError.code, message: apiError.message });
  });
  return router;
}

function param(req: Request): string {
  return String(req.params.name);
}

function objectOf(kind: 'agent' | 'cluster', object: { name: string; org: string }): AdminAuditRecord['object'] {
  return { kind, name: object.name, org: object.org };
}

function adminObject(admin: Admin): AdminAuditRecord['object'] {
  return { kind: 'admin', name: admin.name, org: admin.org ?? null };
}
