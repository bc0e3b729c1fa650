/**
 * Who is calling the admin API (DESIGN §10): `Authorization: Bearer
 * krl_admin_…`, an admin key, and nothing else (an agent's API key or a
 * relay's connector key is refused as any wrong key is). Failed attempts
 * are counted in the same brakes as `/v1/token` (per source address and per
 * key prefix), and a caller past its budget is refused with 429 and
 * Retry-After before its key is looked at. Refusals never carry the key.
 */
import type { AdminCaller } from '../control/caller.js';
import { bearerToken } from '../issuer/bearer.js';
import type { AuthFailureBrakes } from '../issuer/failure-limiter.js';
import type { Registry } from '../issuer/registry.js';
import type { Logger } from '../log.js';

export interface AdminRefusal {
  status: 401 | 429;
  error: 'missing-admin-key' | 'invalid-admin-key' | 'admin-revoked' | 'too-many-failures';
  message: string;
  /** Response headers (Retry-After with a 429). */
  headers: Record<string, string>;
}

export type AdminAuthentication = { ok: true; caller: AdminCaller } | ({ ok: false } & AdminRefusal);

export interface AdminAuthDeps {
  registry: Registry;
  brakes: AuthFailureBrakes;
  log?: Logger | undefined;
}

export async function authenticateAdmin(deps: AdminAuthDeps, request: { address: string; authorization: string | undefined }): Promise<AdminAuthentication> {
  const presented = bearerToken(request.authorization);
  const waitMs = deps.brakes.retryAfterMs(request.address, presented);
  if (waitMs > 0) {
    const seconds = Math.ceil(waitMs / 1000);
    return refusal(429, 'too-many-failures', `too many failed admin requests from this address or for this key; retry in ${seconds} s`, { 'retry-after': String(seconds) });
  }
  const failed = (error: 'missing-admin-key' | 'invalid-admin-key' | 'admin-revoked', message: string): AdminAuthentication => {
    if (deps.brakes.fail(request.address, presented)) deps.log?.warn('admin requests with wrong admin keys are being slowed down', { address: request.address, reason: error });
    return refusal(401, error, message);
  };
  if (!presented) return failed('missing-admin-key', 'send an admin key as "Authorization: Bearer krl_admin_..." (kube-relay admin create makes one)');
  const admin = await deps.registry.adminForKey(presented);
  if (!admin) return failed('invalid-admin-key', 'the key is not a valid admin key (krl_admin_...); agent API keys and connector keys are not admin keys');
  if (admin.revokedAt) return failed('admin-revoked', `admin "${admin.name}" was revoked at ${admin.revokedAt.toISOString()}; ask an admin for a new admin key`);
  return { ok: true, caller: { kind: 'admin', name: admin.name, ...(admin.org === undefined ? {} : { org: admin.org }) } };
}

function refusal(status: AdminRefusal['status'], error: AdminRefusal['error'], message: string, headers: Record<string, string> = {}): AdminAuthentication {
  return { ok: false, status, error, message, headers };
}
