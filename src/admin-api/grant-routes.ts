/**
 * `/v1/grants` (DESIGN §11): create, list (filters `cluster`, `agent`,
 * `group`) and remove grants through the grant operations, which do the org
 * and grant checks; each change is an admin audit record. And
 * `/v1/clusters/{name}/roles`: the roles a grant on that cluster may name.
 */
import type express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { AdminAuditRecord, AdminAction } from '../audit/record.js';
import type { AdminCaller } from '../control/caller.js';
import * as grants from '../control/grants.js';
import { grantView } from '../control/views.js';
import { parseDuration } from '../duration.js';
import type { Grant } from '../grants/grant.js';
import { ApiError } from '../issuer/api-error.js';
import type { Registry } from '../issuer/registry.js';
import { pageRequest, readBody } from './request.js';

export interface GrantRouteKit {
  registry: Registry;
  authenticate: (req: Request, res: Response, next: NextFunction) => Promise<void>;
  json: express.RequestHandler;
  caller: (res: Response) => AdminCaller;
  audit: (req: Request, res: Response, action: AdminAction, object: AdminAuditRecord['object']) => void;
  send: (res: Response, status: number, body: unknown) => void;
  now: () => Date;
  /** The longest expiry a grant may have; undefined: no limit. */
  maxGrantDurationMs: number | undefined;
  /** A grant of `cluster` was added or removed (the hub tells the cluster's relays). */
  onGrantsChanged?: ((cluster: string) => void) | undefined;
}

export function addGrantRoutes(router: express.Router, kit: GrantRouteKit): void {
  const { authenticate, json, caller, send } = kit;
  router.get('/v1/grants', authenticate, async (req, res) => {
    const page = pageRequest(req, ['cluster', 'agent', 'group']);
    const listed = await grants.listGrants(kit.registry, caller(res), { ...page, ...page.filters });
    const now = kit.now();
    send(res, 200, { items: listed.items.map((g) => grantView(g, now)), ...(listed.continue ? { continue: listed.continue } : {}) });
  });
  router.post('/v1/grants', authenticate, json, async (req, res) => {
    const input = readBody(req, 'POST /v1/grants', { cluster: 'string', agent: 'string?', group: 'string?', role: 'string', namespace: 'string?', expires: 'string?', confirmClusterAdmin: 'boolean?' });
    const expires = input.expires as string | undefined;
    const expiresInMs = expires === undefined ? undefined : parseDuration(expires);
    if (expires !== undefined && (expiresInMs === undefined || expiresInMs === 0)) throw new ApiError(422, 'invalid', `field "expires" must be a duration such as 30m, 8h or 7d, not ${JSON.stringify(expires).slice(0, 40)}`);
    const grant = await grants.createGrant(
      kit.registry,
      caller(res),
      {
        cluster: input.cluster as string,
        agent: input.agent as string | undefined,
        group: input.group as string | undefined,
        role: input.role as string,
        namespace: input.namespace as string | undefined,
        expiresInMs,
        confirmClusterAdmin: input.confirmClusterAdmin as boolean | undefined,
      },
      { maxDurationMs: kit.maxGrantDurationMs, now: kit.now },
    );
    kit.audit(req, res, 'create', grantObject(grant));
    kit.onGrantsChanged?.(grant.cluster);
    send(res, 201, grantView(grant, kit.now()));
  });
  router.get('/v1/clusters/:name/roles', authenticate, async (req, res) => {
    send(res, 200, await grants.listRoles(kit.registry, caller(res), String(req.params.name)));
  });
  router.get('/v1/grants/:id', authenticate, async (req, res) => {
    send(res, 200, grantView(await grants.getGrant(kit.registry, caller(res), String(req.params.id)), kit.now()));
  });
  router.delete('/v1/grants/:id', authenticate, async (req, res) => {
    const removed = await grants.removeGrant(kit.registry, caller(res), String(req.params.id));
    kit.audit(req, res, 'remove', grantObject(removed));
    kit.onGrantsChanged?.(removed.cluster);
    send(res, 200, grantView(removed, kit.now()));
  });
}

function grantObject(grant: Grant): AdminAuditRecord['object'] {
  return { kind: 'grant', name: grant.id, org: grant.org };
}
