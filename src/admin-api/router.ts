/**
 * The admin API on the issuer's listener (DESIGN §10): JSON in and out,
 * `Authorization: Bearer krl_admin_…`, errors `{"error", "message"}`. Each
 * route is a thin adapter: it authenticates the caller, reads the request
 * and calls the control operation, which does the org check (STYLE 12).
 *
 * Mounted so far: `GET /v1/agents` (cursor paging: `?limit=&continue=`, and
 * `org` for an all-orgs admin). The other endpoints of §10 follow.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { AdminCaller } from '../control/caller.js';
import * as ops from '../control/operations.js';
import type { AuthFailureBrakes } from '../issuer/failure-limiter.js';
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError, type Registry } from '../issuer/registry.js';
import { type Agent, AlreadyExistsError, StoreUnavailableError } from '../issuer/store.js';
import type { Logger } from '../log.js';
import { authenticateAdmin } from './authenticate.js';

/** Items per page when the caller does not say. */
export const DEFAULT_PAGE_SIZE = 100;

export interface AdminApiDeps {
  registry: Registry;
  /** Failed admin authentications, counted per address and key prefix (own budget, as /v1/token's). */
  brakes: AuthFailureBrakes;
  log: Logger;
}

export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function adminApiRouter(deps: AdminApiDeps): express.Router {
  const router = express.Router();

  const authenticate = async (req: Request, res: Response, next: NextFunction) => {
    const result = await authenticateAdmin(deps, { address: req.socket.remoteAddress ?? '', authorization: req.get('authorization') });
    if (!result.ok) throw new AdminApiError(result.status, result.error, result.message, result.headers);
    res.locals.caller = result.caller;
    next();
  };
  const caller = (res: Response) => res.locals.caller as AdminCaller;

  router.get('/v1/agents', authenticate, async (req, res) => {
    const page = pageRequest(req);
    const listed = await ops.listAgents(deps.registry, caller(res), page);
    res.set('cache-control', 'no-store').json({ items: listed.items.map(agentJson), ...(listed.continue ? { continue: listed.continue } : {}) });
  });

  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const apiError = toApiError(err);
    if (!apiError) {
      deps.log.error('admin API request failed', { error: (err as Error).message });
      next(err);
      return;
    }
    res.status(apiError.status).set({ 'cache-control': 'no-store', ...apiError.headers }).json({ error: apiError.code, message: apiError.message });
  });
  return router;
}

const PAGE_PARAMETERS = ['limit', 'continue', 'org'];

/** `?limit=&continue=&org=`, each at most once; anything else is refused, naming it. */
function pageRequest(req: Request): ops.PageRequest {
  const query = req.query as Record<string, unknown>;
  for (const name of Object.keys(query)) {
    if (!PAGE_PARAMETERS.includes(name)) throw new AdminApiError(422, 'invalid', `unknown query parameter "${name}": a list takes ${PAGE_PARAMETERS.join(', ')}`);
    if (typeof query[name] !== 'string') throw new AdminApiError(422, 'invalid', `query parameter "${name}" must be given once`);
  }
  const limitText = query.limit as string | undefined;
  if (limitText !== undefined && !/^\d{1,6}$/.test(limitText)) throw new AdminApiError(422, 'invalid', `limit must be a whole number from 1 to ${ops.MAX_PAGE_SIZE}, not "${limitText.slice(0, 20)}"`);
  return {
    limit: limitText === undefined ? DEFAULT_PAGE_SIZE : Number(limitText),
    continue: query.continue as string | undefined,
    org: query.org as string | undefined,
  };
}

function agentJson(agent: Agent) {
  return {
    name: agent.name,
    org: agent.org,
    teams: agent.teams,
    createdAt: agent.createdAt.toISOString(),
    ...(agent.revokedAt ? { revokedAt: agent.revokedAt.toISOString() } : {}),
  };
}

function toApiError(err: unknown): AdminApiError | undefined {
  if (err instanceof AdminApiError) return err;
  if (err instanceof NotFoundError) return new AdminApiError(404, 'not-found', err.message);
  if (err instanceof ForbiddenError) return new AdminApiError(403, 'forbidden', err.message);
  if (err instanceof ConflictError) return new AdminApiError(409, 'conflict', err.message);
  if (err instanceof AlreadyExistsError) return new AdminApiError(409, 'already-exists', err.message);
  if (err instanceof InvalidInputError) return new AdminApiError(422, 'invalid', err.message);
  if (err instanceof StoreUnavailableError) return new AdminApiError(503, 'store-unavailable', 'the issuer cannot reach its store right now; retry in a few seconds');
  return undefined;
}
