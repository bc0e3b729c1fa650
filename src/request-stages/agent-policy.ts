/**
 * Stage 3a, the agent's policy (DESIGN §13, STYLE 14): the brakes its token
 * carries (`krl_policy`, parsed by the verifier into identity.policy),
 * decided from the request's RequestInfo before anything is forwarded, in
 * the relay and in the hub alike. Refusals are 403 naming the rule (429
 * with Retry-After for the rate), audited as `denied-by-policy`; a dry-run
 * agent's changes go on with `dryRun=All` added to the query.
 *
 * Verbs are decided as kube-apiserver authorizes them: exec, attach and
 * port-forward are `create` on their subresource whatever the HTTP method,
 * as Kubernetes 1.35 authorizes the WebSocket (GET) form too
 * (KEP-4006), so a GET cannot pass for a read.
 */
import type { RequestInfo } from '../audit/request-info.js';
import type { AgentIdentity } from '../identity.js';
import { type DenyRule, formatDenyRule, type RateLimit } from '../policy/policy.js';
import { RelayRefusal } from './errors.js';

const READ_VERBS = new Set(['get', 'list', 'watch']);
/** The reviews a client asks about itself: POSTs that read (kubectl auth can-i, kubectl auth whoami). */
const SELF_REVIEWS = new Set(['selfsubjectaccessreviews', 'selfsubjectrulesreviews', 'selfsubjectreviews']);
/** Subresources that open a stream into a pod or a node: never a read, never dry-run. */
const STREAMING_SUBRESOURCES = new Set(['exec', 'attach', 'portforward', 'proxy']);
const MUTATING_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/** What the request becomes under the policy: forwarded as it is, or with `dryRun=All` in its target. */
export interface PolicyOutcome {
  /** The request target to forward (the client's, or with dryRun=All added). */
  target: string;
  dryRun: boolean;
}

/** The verb kube-apiserver authorizes the request with. */
export function authorizedVerb(info: RequestInfo, method: string): string {
  if (info.isResourceRequest && STREAMING_SUBRESOURCES.has(info.subresource) && info.subresource !== 'proxy') return 'create';
  if (info.isResourceRequest) return info.verb;
  return method === 'GET' || method === 'HEAD' ? 'get' : method.toLowerCase();
}

function refuse(reason: 'policy-read-only' | 'policy-dry-run' | 'policy-deny', rule: string, message: string, identity: AgentIdentity): never {
  throw new RelayRefusal(reason, message, identity, { policyRule: rule });
}

/** RBAC's resource match, with `name.group` for a group and no group meaning any. */
function resourceMatches(ruleResource: string, info: RequestInfo): boolean {
  const slash = ruleResource.indexOf('/');
  const nameAndGroup = slash === -1 ? ruleResource : ruleResource.slice(0, slash);
  const sub = slash === -1 ? undefined : ruleResource.slice(slash + 1);
  const dot = nameAndGroup.indexOf('.');
  const name = dot === -1 ? nameAndGroup : nameAndGroup.slice(0, dot);
  const group = dot === -1 ? undefined : nameAndGroup.slice(dot + 1);
  if (name !== '*' && name !== info.resource) return false;
  if (group !== undefined && group !== info.apiGroup) return false;
  // As RBAC: `*` alone is every resource and subresource; `pods` is not `pods/exec`; `pods/*` is every subresource of pods.
  if (sub === undefined) return name === '*' || info.subresource === '';
  return sub === '*' ? info.subresource !== '' : info.subresource === sub;
}

export function denyRuleMatches(rule: DenyRule, verb: string, info: RequestInfo): boolean {
  if (!info.isResourceRequest) return false;
  if (!rule.verbs.includes('*') && !rule.verbs.includes(verb)) return false;
  if (!rule.resources.some((resource) => resourceMatches(resource, info))) return false;
  return rule.namespaces === undefined || (info.namespace !== '' && rule.namespaces.includes(info.namespace));
}

function isSelfReview(info: RequestInfo, verb: string): boolean {
  return info.isResourceRequest && verb === 'create' && info.subresource === '' && SELF_REVIEWS.has(info.resource) && (info.apiGroup === 'authorization.k8s.io' || info.apiGroup === 'authentication.k8s.io');
}

function isRead(info: RequestInfo, verb: string): boolean {
  if (info.isResourceRequest && STREAMING_SUBRESOURCES.has(info.subresource)) return false;
  return READ_VERBS.has(verb) || isSelfReview(info, verb);
}

/** `target` with `dryRun=All` added at the end, the rest byte for byte; kept as it is when the client already asked for exactly that. */
export function withDryRun(target: string): string {
  const queryStart = target.indexOf('?');
  if (queryStart === -1) return `${target}?dryRun=All`;
  const query = target.slice(queryStart + 1);
  if (query.split('&').includes('dryRun=All')) return target;
  return `${target}${query === '' ? '' : '&'}dryRun=All`;
}

/**
 * The policy's decision on a request it does not rate-limit: refuses with a
 * RelayRefusal naming the rule, or says how the request goes on.
 */
export function applyPolicy(identity: AgentIdentity, method: string, info: RequestInfo, target: string, upgrade: boolean): PolicyOutcome {
  const policy = identity.policy;
  if (!policy) return { target, dryRun: false };
  const verb = authorizedVerb(info, method);
  for (const rule of policy.deny ?? []) {
    if (denyRuleMatches(rule, verb, info)) {
      const text = formatDenyRule(rule);
      refuse('policy-deny', `deny:${text}`, `kube-relay policy: the agent may not ${verb} ${describe(info)} (deny rule ${text})`, identity);
    }
  }
  const read = !upgrade && isRead(info, verb);
  if (policy.readOnly && !read) refuse('policy-read-only', 'read-only', `kube-relay policy: the agent is read-only; it may not ${verb} ${describe(info)}`, identity);
  if (policy.dryRun && !read) {
    if (upgrade || !info.isResourceRequest || !MUTATING_VERBS.has(verb) || STREAMING_SUBRESOURCES.has(info.subresource)) {
      refuse('policy-dry-run', 'dry-run', `kube-relay policy: the agent runs in dry-run mode; ${verb} ${describe(info)} cannot be dry-run, so it is refused`, identity);
    }
    return { target: withDryRun(target), dryRun: true };
  }
  return { target, dryRun: false };
}

function describe(info: RequestInfo): string {
  if (!info.isResourceRequest) return info.path.slice(0, 200);
  const resource = `${info.resource}${info.subresource ? `/${info.subresource}` : ''}${info.apiGroup ? `.${info.apiGroup}` : ''}`;
  return `${resource}${info.name ? ` "${info.name}"` : ''}${info.namespace ? ` in namespace "${info.namespace}"` : ''}`.slice(0, 300);
}

/** Buckets kept at most; past it, the oldest untouched one goes (a full bucket costs nothing to forget). */
const MAX_BUCKETS = 100_000;

/**
 * `rate`: a token bucket per agent in this process (each relay replica, and
 * the hub, keeps its own). A request that finds the bucket empty is refused
 * with 429 and the seconds until a token is back, which client-go waits out
 * and retries (its default retry honours Retry-After on 429).
 */
export class PolicyRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes a token for `identity`, or throws the 429. */
  take(identity: AgentIdentity): void {
    const rate = identity.policy?.rate;
    if (!rate) return;
    const wait = this.waitMs(identity.user, rate);
    if (wait === 0) return;
    const seconds = Math.max(1, Math.ceil(wait / 1000));
    throw new RelayRefusal('policy-rate', `kube-relay policy: the agent may make ${rate.perSecond} requests a second (burst ${rate.burst}); retry in ${seconds} s`, identity, {
      policyRule: 'rate',
      retryAfterSeconds: seconds,
    });
  }

  private waitMs(user: string, rate: RateLimit): number {
    const now = this.now();
    const bucket = this.buckets.get(user) ?? { tokens: rate.burst, at: now };
    this.buckets.delete(user); // re-inserted last: the Map keeps the least recently used first
    bucket.tokens = Math.min(rate.burst, bucket.tokens + ((now - bucket.at) / 1000) * rate.perSecond);
    bucket.at = now;
    let wait = 0;
    if (bucket.tokens >= 1) bucket.tokens -= 1;
    else wait = ((1 - bucket.tokens) / rate.perSecond) * 1000;
    this.buckets.set(user, bucket);
    if (this.buckets.size > MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    return wait;
  }
}

