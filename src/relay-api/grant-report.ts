/**
 * A relay's report on its grants, checked before it is stored: relays are
 * trusted with their own cluster only, and a report is bounded in size and
 * in the length of every string it carries.
 */
import { isDnsLabel } from '../identity.js';
import { ApiError } from '../issuer/api-error.js';
import { GRANT_ID } from '../grants/grant.js';
import type { GrantStateReport } from '../issuer/store.js';

/** Thousands of grants per cluster, each a line of state: 4 MiB is far above that. */
export const BODY_LIMIT_FOR_REPORTS = 4 * 1024 * 1024;
const MAX_REASON_LENGTH = 500;
const MAX_ROLE_NAME_LENGTH = 253;

export interface GrantReport {
  grants: GrantStateReport[];
  grantableRoles: string[];
}

export function readGrantReport(body: unknown): GrantReport {
  const { grants, grantableRoles, ...rest } = (typeof body === 'object' && body !== null && !Array.isArray(body) ? body : invalid('the report must be a JSON object {"grants", "grantableRoles"}')) as Record<string, unknown>;
  if (Object.keys(rest).length > 0) invalid(`unknown field "${Object.keys(rest)[0]!.slice(0, 40)}": a report has grants and grantableRoles`);
  if (!Array.isArray(grants)) invalid('"grants" must be a list of {"id", "state", "reason"?}');
  if (!Array.isArray(grantableRoles) || grantableRoles.some((r) => typeof r !== 'string' || r.length === 0 || r.length > MAX_ROLE_NAME_LENGTH || !isRoleName(r))) {
    invalid('"grantableRoles" must be a list of ClusterRole names');
  }
  const states = grants.map((entry: unknown): GrantStateReport => {
    const { id, state, reason } = (entry ?? {}) as Record<string, unknown>;
    if (typeof id !== 'string' || !GRANT_ID.test(id)) invalid('every grant in the report needs the "id" the issuer gave it');
    if (state !== 'applied' && state !== 'failed') invalid('a grant\'s "state" is "applied" or "failed"');
    if (reason !== undefined && typeof reason !== 'string') invalid('a grant\'s "reason" is a sentence');
    return { id, state, ...(typeof reason === 'string' ? { reason: reason.slice(0, MAX_REASON_LENGTH) } : {}) };
  });
  return { grants: states, grantableRoles: grantableRoles as string[] };
}

/** A ClusterRole name as Kubernetes takes it (a path segment name: no "/", "%", or "." and ".." alone). */
function isRoleName(name: string): boolean {
  return !/[/%]/.test(name) && name !== '.' && name !== '..' && (isDnsLabel(name) || /^[a-z0-9][-a-z0-9.:]*$/.test(name));
}

function invalid(message: string): never {
  throw new ApiError(422, 'invalid', message);
}
