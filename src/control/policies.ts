/**
 * Policy operations (DESIGN §13, STYLE 12), for the local CLI and the admin
 * API alike. A policy is of one agent or of one team (`ORG/TEAM`, every
 * agent of that org with that team); an agent's tokens carry its own merged
 * with its teams' (effectivePolicy, which the issuer's mint calls).
 *
 * The org check is here: another org's agent is "not found", as everywhere;
 * a team names its org, so another org's team is 403 (as a grant to another
 * org's group is). `set` replaces the subject's whole policy, and an empty
 * policy is the same as `clear`. Tokens already minted keep the policy they
 * carry until they expire (60 s); with `now`, the tokens of the agents it
 * applies to are cut at once: relays end their live streams and refuse
 * them, so the next request needs a new token, which carries the new policy.
 * The policy is written before the cut, so no token minted after the cut
 * can carry the old one.
 */
import { agentUser } from '../identity.js';
import { ForbiddenError, InvalidInputError, type Registry } from '../issuer/registry.js';
import type { Agent, PolicySubject } from '../issuer/store.js';
import { type DenyRule, formatDenyRule, isEmptyPolicy, mergePolicies, parseDenyRule, type Policy, PolicyError, validatePolicy } from '../policy/policy.js';
import { actorOf, type Caller, describeCaller, mayManage } from './caller.js';
import { parseGroup } from './grants.js';
import { getAgent } from './operations.js';

/** Exactly one of `agent` (a name) and `team` (`ORG/TEAM`). */
export interface PolicySubjectRequest {
  agent?: string | undefined;
  team?: string | undefined;
}

export interface PolicyState {
  subject: PolicySubject;
  org: string;
  /** Its own policy; empty when it has none. */
  policy: Policy;
  updatedAt?: Date;
  updatedBy?: string;
  /** An agent's: its own merged with its teams', what its tokens carry. */
  effective?: Policy;
  /** After a change made with `now`: the agents whose tokens were cut, and when. */
  tokensCut?: { at: Date; agents: string[] };
}

export interface PolicyChangeOptions {
  /** Cut the tokens of every agent the policy applies to, so the change holds from their next request. */
  now?: boolean | undefined;
}

/** The policy an agent's tokens carry: its own and each of its teams', every brake at its strictest. */
export async function effectivePolicy(registry: Registry, agent: Agent): Promise<Policy> {
  const stored = await registry.policies.policiesFor(agent.name, agent.teams.map((team) => `${agent.org}/${team}`));
  return mergePolicies(stored.map((s) => s.policy));
}

export async function getPolicy(registry: Registry, caller: Caller, request: PolicySubjectRequest): Promise<PolicyState> {
  return stateOf(registry, await subjectOf(registry, caller, request));
}

/** Replaces the subject's whole policy with `policy` (an empty one removes it). */
export async function setPolicy(registry: Registry, caller: Caller, request: PolicySubjectRequest, policy: Policy, options: PolicyChangeOptions = {}, at: Date = new Date()): Promise<PolicyState> {
  const target = await subjectOf(registry, caller, request);
  const checked = normalized(policy);
  if (isEmptyPolicy(checked)) return clearSubject(registry, target, options, at);
  if (target.agent?.revokedAt) throw new InvalidInputError(`agent "${target.agent.name}" was revoked at ${target.agent.revokedAt.toISOString()}: it gets no token a policy could apply to`);
  await registry.policies.setPolicy({ subject: target.subject, org: target.org, policy: checked, updatedAt: at, updatedBy: actorOf(caller) });
  return changed(registry, target, options, at);
}

/** Removes the subject's policy (none is no error); its teams' still apply to an agent. */
export async function clearPolicy(registry: Registry, caller: Caller, request: PolicySubjectRequest, options: PolicyChangeOptions = {}, at: Date = new Date()): Promise<PolicyState> {
  return clearSubject(registry, await subjectOf(registry, caller, request), options, at);
}

/** A policy of one agent or one team, whose org the caller manages; input errors as InvalidInputError. */
export function policySubject(request: PolicySubjectRequest): PolicySubject {
  if (request.agent !== undefined && request.team !== undefined) throw new InvalidInputError('a policy is of one agent or one team (ORG/TEAM), not both');
  if (request.agent !== undefined) return { kind: 'agent', name: request.agent };
  if (request.team !== undefined) return { kind: 'team', name: parseGroup(request.team, 'team').group };
  throw new InvalidInputError('a policy needs a subject: an agent, or a team ORG/TEAM');
}

interface Target {
  subject: PolicySubject;
  org: string;
  /** The agent, when the subject is one. */
  agent?: Agent;
}

async function subjectOf(registry: Registry, caller: Caller, request: PolicySubjectRequest): Promise<Target> {
  const subject = policySubject(request);
  if (subject.kind === 'agent') {
    const agent = await getAgent(registry, caller, subject.name);
    return { subject, org: agent.org, agent };
  }
  const org = subject.name.split('/')[0]!;
  if (!mayManage(caller, org)) throw new ForbiddenError(`team "${subject.name}" is of org "${org}": ${describeCaller(caller)} manages the policies of its own org's agents and teams only`);
  return { subject, org };
}

async function clearSubject(registry: Registry, target: Target, options: PolicyChangeOptions, at: Date): Promise<PolicyState> {
  await registry.policies.deletePolicy(target.subject);
  return changed(registry, target, options, at);
}

async function changed(registry: Registry, target: Target, options: PolicyChangeOptions, at: Date): Promise<PolicyState> {
  if (!options.now) return stateOf(registry, target);
  const agents = await agentsUnder(registry, target);
  await registry.policies.cutTokens(agents.map(agentUser), at);
  return { ...(await stateOf(registry, target)), tokensCut: { at, agents } };
}

/** The live agents a subject's policy applies to: the agent, or every agent of the team's org with that team. */
async function agentsUnder(registry: Registry, target: Target): Promise<string[]> {
  if (target.agent) return target.agent.revokedAt ? [] : [target.agent.name];
  const team = target.subject.name.slice(target.org.length + 1);
  const agents = await registry.listAgents({ org: target.org });
  return agents.filter((agent) => !agent.revokedAt && agent.teams.includes(team)).map((agent) => agent.name);
}

async function stateOf(registry: Registry, target: Target): Promise<PolicyState> {
  const stored = await registry.policies.findPolicy(target.subject);
  return {
    subject: target.subject,
    org: target.org,
    policy: stored?.policy ?? {},
    ...(stored ? { updatedAt: stored.updatedAt, updatedBy: stored.updatedBy } : {}),
    ...(target.agent ? { effective: await effectivePolicy(registry, target.agent) } : {}),
  };
}

/** The policy as it is stored: checked (PolicyError's sentence as InvalidInputError), with only the brakes it sets. */
function normalized(policy: Policy): Policy {
  try {
    validatePolicy(policy);
  } catch (err) {
    if (err instanceof PolicyError) throw new InvalidInputError(err.message);
    throw err;
  }
  return {
    ...(policy.readOnly ? { readOnly: true } : {}),
    ...(policy.dryRun ? { dryRun: true } : {}),
    ...(policy.deny?.length ? { deny: canonicalRules(policy.deny) } : {}),
    ...(policy.rate ? { rate: { perSecond: policy.rate.perSecond, burst: policy.rate.burst } } : {}),
    ...(policy.maxStreams !== undefined ? { maxStreams: policy.maxStreams } : {}),
  };
}

/** Each rule as --deny would read it back (verbs and resources once each, `@*` dropped), each rule once. */
function canonicalRules(rules: readonly DenyRule[]): DenyRule[] {
  const canonical = rules.map((rule) => parseDenyRule(formatDenyRule(rule)));
  return [...new Map(canonical.map((rule) => [formatDenyRule(rule), rule])).values()];
}
