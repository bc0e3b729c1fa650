/**
 * The issuer's API for relays (DESIGN §11, §12): what a cluster's relay needs to
 * reconcile its grants, where it reports what became of them, and where it
 * sends its audit records. A relay
 * authenticates with its cluster's connector key (`Authorization: Bearer
 * krl_cluster_…`), which names the cluster: a relay only ever reads and
 * reports on its own cluster. Failed keys meet the same brakes as every key.
 *
 *   GET  /v1/relay/grants         {"cluster", "generatedAt", "grants": [{"id", "role", "namespace"?, "subject", "expiresAt"?}]}
 *   POST /v1/relay/grants/status  {"grants": [{"id", "state": "applied"|"failed", "reason"?}], "grantableRoles": [name…]}
 *   POST /v1/audit                [record…] → {"stored", "duplicates"} (DESIGN §12; GET /v1/audit is the admin API's)
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { subjectOf } from '../control/grants.js';
import { grantState } from '../grants/grant.js';
import { ApiError } from '../issuer/api-error.js';
import { bearerToken } from '../issuer/bearer.js';
import type { AuthFailureBrakes } from '../issuer/failure-limiter.js';
import type { Registry } from '../issuer/registry.js';
import type { Cluster } from '../issuer/store.js';
import type { Logger } from '../log.js';
import { AUDIT_BATCH_BODY_LIMIT, CentralRecordError, readAuditBatch } from '../sessions/central-records.js';
import { BODY_LIMIT_FOR_REPORTS, readGrantReport } from './grant-report.js';

export interface RelayApiDeps {
  registry: Registry;
  brakes: AuthFailureBrakes;
  log: Logger;
  now?: () => Date;
}

/** The grant of a cluster as its relay needs it: the binding's role, place and subject. */
export interface RelayGrant {
  id: string;
  role: string;
  namespace?: string;
  subject: { kind: 'User' | 'Group'; name: string };
  expiresAt?: string;
}

export function relayApiRouter(deps: RelayApiDeps): express.Router {
  const router = express.Router();
  const now = deps.now ?? (() => new Date());

  const authenticate = async (req: Request, res: Response, next: NextFunction) => {
    const address = req.socket.remoteAddress ?? '';
    const presented = bearerToken(req.get('authorization'));
    const waitMs = deps.brakes.retryAfterMs(address, presented);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new ApiError(429, 'too-many-failures', `too many failed relay requests from this address or for this key; retry in ${seconds} s`, { 'retry-after': String(seconds) });
    }
    const cluster = presented ? await deps.registry.clusterForKey(presented) : undefined;
    if (!cluster || cluster.revokedAt) {
      if (deps.brakes.fail(address, presented)) deps.log.warn('relay requests with wrong connector keys are being slowed down', { address });
      throw new ApiError(401, 'invalid-connector-key', 'send the cluster\'s connector key as "Authorization: Bearer krl_cluster_..." (unknown or revoked keys are refused)');
    }
    res.locals.cluster = cluster;
    next();
  };
  const clusterOf = (res: Response) => res.locals.cluster as Cluster;

  router.get('/v1/relay/grants', authenticate, async (_req, res) => {
    const cluster = clusterOf(res);
    const generatedAt = now();
    const grants: RelayGrant[] = [];
    for (const grant of await deps.registry.grants.listGrants({ cluster: cluster.name })) {
      if (grantState(grant, generatedAt) === 'expired') continue;
      grants.push({
        id: grant.id,
        role: grant.role,
        ...(grant.namespace ? { namespace: grant.namespace } : {}),
        subject: subjectOf(grant.grantee),
        ...(grant.expiresAt ? { expiresAt: grant.expiresAt.toISOString() } : {}),
      });
    }
    res.set('cache-control', 'no-store').json({ cluster: cluster.name, generatedAt: generatedAt.toISOString(), grants });
  });

  router.post('/v1/relay/grants/status', authenticate, express.json({ limit: BODY_LIMIT_FOR_REPORTS, type: () => true }), async (req, res) => {
    const cluster = clusterOf(res);
    const report = readGrantReport(req.body);
    const at = now();
    await deps.registry.grants.reportGrantStates(cluster.name, report.grants, at);
    await deps.registry.grants.setGrantableRoles(cluster.name, report.grantableRoles, at);
    res.status(204).end();
  });

  // Central audit (DESIGN §12): the relay's completed requests, in batches; each (cluster, requestId) is stored once.
  const parseAuditBatch = express.json({ limit: AUDIT_BATCH_BODY_LIMIT, type: () => true });
  // A 413 tells the relay to split the batch (webhook-destination.ts); the issuer's default answer for a body it cannot read is about tokens.
  const auditBatchBody = (req: Request, res: Response, next: NextFunction) =>
    parseAuditBatch(req, res, (err?: unknown) => {
      const type = (err as { type?: string } | undefined)?.type;
      if (type === 'entity.too.large') return next(new ApiError(413, 'too-large', `a batch of audit records is at most ${AUDIT_BATCH_BODY_LIMIT / 1024 / 1024} MiB; send smaller batches`));
      if (type !== undefined) return next(new ApiError(400, 'invalid-request', 'the body must be a JSON array of audit records'));
      next(err);
    });
  router.post('/v1/audit', authenticate, auditBatchBody, async (req, res) => {
    const cluster = clusterOf(res);
    let records;
    try {
      records = readAuditBatch(req.body, cluster.name);
    } catch (err) {
      if (err instanceof CentralRecordError) throw new ApiError(err.status, err.status === 403 ? 'forbidden' : 'invalid-request', err.message);
      throw err;
    }
    const outcome = await deps.registry.audit.ingestAudit(cluster, records);
    res.json(outcome);
  });

  return router;
}
