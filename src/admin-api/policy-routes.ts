/**
 * `/v1/agents/{name}/policy` and `/v1/teams/{org}/{team}/policy` (DESIGN
 * §13): read, replace and remove an agent's or a team's policy through the
 * policy operations, which do the org check. A subject without a policy of
 * its own reads as an empty one (200), so `GET` always says what applies,
 * and for an agent what its tokens carry (`effective`). Each change is an
 * admin audit record (`set-policy`, or `clear-policy` for DELETE and for a
 * PUT of an empty policy). With `now` (`"now": true` in a PUT, `?now=true`
 * on a DELETE), the tokens of the agents it applies to are cut at once.
 */
import type express from 'express';
import type { Request } from 'express';
import type { AdminAuditRecord } from '../audit/record.js';
import * as policies from '../control/policies.js';
import { policyView } from '../control/views.js';
import { ApiError } from '../issuer/api-error.js';
import { isEmptyPolicy, parseDenyRule, parseRate, type Policy, PolicyError, type RateLimit, validatePolicy } from '../policy/policy.js';
import type { GrantRouteKit } from './grant-routes.js';
import { type FieldRule, readBody } from './request.js';

export type PolicyRouteKit = Pick<GrantRouteKit, 'registry' | 'authenticate' | 'json' | 'caller' | 'audit' | 'send' | 'now'>;

/** The PUT body: the whole policy (absent fields set no brake), and `now`. */
const POLICY_BODY: Record<string, FieldRule> = { readOnly: 'boolean?', dryRun: 'boolean?', deny: 'strings?', rate: 'object?', maxStreams: 'number?', now: 'boolean?' };

const SUBJECTS: { route: string; endpoint: string; subject: (req: Request) => policies.PolicySubjectRequest }[] = [
  { route: '/v1/agents/:name/policy', endpoint: '/v1/agents/{name}/policy', subject: (req) => ({ agent: String(req.params.name) }) },
  { route: '/v1/teams/:org/:team/policy', endpoint: '/v1/teams/{org}/{team}/policy', subject: (req) => ({ team: `${String(req.params.org)}/${String(req.params.team)}` }) },
];

export function addPolicyRoutes(router: express.Router, kit: PolicyRouteKit): void {
  const { authenticate, json, caller, send } = kit;
  for (const { route, endpoint, subject } of SUBJECTS) {
    router.get(route, authenticate, async (req, res) => {
      send(res, 200, policyView(await policies.getPolicy(kit.registry, caller(res), subject(req))));
    });
    router.put(route, authenticate, json, async (req, res) => {
      const input = readBody(req, `PUT ${endpoint}`, POLICY_BODY);
      const state = await policies.setPolicy(kit.registry, caller(res), subject(req), policyOfBody(input), { now: input.now === true }, kit.now());
      kit.audit(req, res, isEmptyPolicy(state.policy) ? 'clear-policy' : 'set-policy', objectOf(state));
      send(res, 200, policyView(state));
    });
    router.delete(route, authenticate, async (req, res) => {
      const now = nowParameter(req, `DELETE ${endpoint}`);
      const state = await policies.clearPolicy(kit.registry, caller(res), subject(req), { now }, kit.now());
      kit.audit(req, res, 'clear-policy', objectOf(state));
      send(res, 200, policyView(state));
    });
  }
}

/** The Policy a PUT body describes; a field that does not read as a brake is 422 naming it. */
function policyOfBody(input: Record<string, unknown>): Policy {
  const deny = input.deny as string[] | undefined;
  const maxStreams = input.maxStreams as number | undefined;
  if (maxStreams !== undefined) field('maxStreams', () => validatePolicy({ maxStreams }));
  return {
    ...(input.readOnly === true ? { readOnly: true } : {}),
    ...(input.dryRun === true ? { dryRun: true } : {}),
    ...(deny?.length ? { deny: field('deny', () => deny.map(parseDenyRule)) } : {}),
    ...(input.rate !== undefined ? { rate: field('rate', () => rateOf(input.rate as Record<string, unknown>)) } : {}),
    ...(maxStreams !== undefined ? { maxStreams } : {}),
  };
}

/** `{"perSecond": N, "burst"?: M}`; burst defaults as --burst does (the rate, rounded up). */
function rateOf(rate: Record<string, unknown>): RateLimit {
  const { perSecond, burst, ...rest } = rate;
  if (Object.keys(rest).length > 0) throw new PolicyError(`unknown field "${Object.keys(rest)[0]!.slice(0, 40)}": a rate takes perSecond and burst`);
  if (typeof perSecond !== 'number' || (burst !== undefined && typeof burst !== 'number')) throw new PolicyError('a rate is {"perSecond": N, "burst": M}, both numbers (burst may be left out)');
  return parseRate(String(perSecond), burst === undefined ? undefined : String(burst));
}

function field<T>(name: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof PolicyError) throw new ApiError(422, 'invalid', `field "${name}": ${err.message}`);
    throw err;
  }
}

function nowParameter(req: Request, endpoint: string): boolean {
  const query = req.query as Record<string, unknown>;
  for (const name of Object.keys(query)) if (name !== 'now') throw new ApiError(422, 'invalid', `unknown query parameter "${name.slice(0, 40)}": ${endpoint} takes now`);
  if (query.now === undefined) return false;
  if (query.now !== 'true' && query.now !== 'false') throw new ApiError(422, 'invalid', `query parameter "now" must be true or false, given once`);
  return query.now === 'true';
}

function objectOf(state: policies.PolicyState): AdminAuditRecord['object'] {
  return { kind: state.subject.kind, name: state.subject.name, org: state.org };
}
