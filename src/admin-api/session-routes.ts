/**
 * `/v1/sessions` and `/v1/audit` (DESIGN §12): the central audit trail and
 * its sessions, read through the operations of src/control/sessions.ts,
 * which confine an org admin to its org and check every filter. Lists page
 * as the others do (`?limit=&continue=`, `org` for an all-orgs admin);
 * reads write no admin audit record.
 */
import type express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { AdminCaller } from '../control/caller.js';
import * as sessions from '../control/sessions.js';
import { ApiError } from '../issuer/api-error.js';
import type { Registry } from '../issuer/registry.js';
import { pageRequest } from './request.js';

export interface SessionRouteKit {
  registry: Registry;
  authenticate: (req: Request, res: Response, next: NextFunction) => Promise<void>;
  caller: (res: Response) => AdminCaller;
  send: (res: Response, status: number, body: unknown) => void;
  now: () => Date;
}

const SESSION_FILTERS = ['agent', 'cluster', 'since', 'until'];
const AUDIT_FILTERS = [...SESSION_FILTERS, 'verb', 'decision', 'session'];

export function addSessionRoutes(router: express.Router, kit: SessionRouteKit): void {
  const { authenticate, caller, send } = kit;
  router.get('/v1/sessions', authenticate, async (req, res) => {
    send(res, 200, await sessions.listSessions(kit.registry, caller(res), queryOf(req, SESSION_FILTERS), kit.now()));
  });
  router.get('/v1/sessions/:id', authenticate, async (req, res) => {
    const { limit, continue: next, org } = queryOf(req, []);
    if (org !== undefined) throw new ApiError(422, 'invalid', 'unknown query parameter "org": a session names its org; GET /v1/sessions/{id} takes limit, continue');
    send(res, 200, await sessions.showSession(kit.registry, caller(res), String(req.params.id), { limit, continue: next }, kit.now()));
  });
  router.get('/v1/audit', authenticate, async (req, res) => {
    send(res, 200, await sessions.queryAudit(kit.registry, caller(res), queryOf(req, AUDIT_FILTERS), kit.now()));
  });
}

function queryOf(req: Request, filters: string[]): sessions.AuditQuery {
  const { filters: given, ...page } = pageRequest(req, filters, sessions.MAX_AUDIT_PAGE_SIZE);
  return { ...page, ...given };
}
