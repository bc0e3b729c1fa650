/**
 * Agent policy (DESIGN §13): brakes beyond RBAC that an agent, or a whole
 * team, carries into every cluster. The model, its CLI spelling, how an
 * agent's own policy and its teams' merge (the stricter wins, field by
 * field), and the `krl_policy` claim that carries it in the token, so the
 * relay and the hub enforce it with no lookup (STYLE 14: the verifier
 * parses the claim once into this type; one stage decides from it).
 */

/**
 * A verb and resource rule RBAC cannot express. Verbs are Kubernetes verbs
 * (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
 * `deletecollection`, or `*`); exec, attach and port-forward are `create`
 * on their subresource, as Kubernetes 1.35 authorizes them over WebSocket
 * too. Resources are spelt `name`, `name/subresource` or `name.group`
 * (`pods`, `pods/exec`, `deployments.apps`, `*`); a name without a group
 * matches it in any group. Namespaces, when given, confine the rule to them.
 */
export interface DenyRule {
  verbs: string[];
  resources: string[];
  namespaces?: string[];
}

export interface RateLimit {
  /** Requests a second, sustained. */
  perSecond: number;
  /** Requests at once after a quiet spell. */
  burst: number;
}

export interface Policy {
  /** Only reads: get, list, watch, discovery, and the reviews a client asks about itself. */
  readOnly?: boolean;
  /** Changes are sent with dryRun=All: validated and admitted, never persisted. Exec, attach and port-forward are refused. */
  dryRun?: boolean;
  deny?: DenyRule[];
  rate?: RateLimit;
  /** Long-running requests (watches, exec, logs -f…) at once, instead of the relay's per-agent default. */
  maxStreams?: number;
}

/** The claim's version: a verifier that meets a newer one refuses the token rather than ignore brakes it cannot read. */
export const POLICY_CLAIM_VERSION = 1;
export const POLICY_CLAIM = 'krl_policy';
/** Bytes of the claim's JSON; the whole token must stay under 8 KiB (MAX_TOKEN_BYTES), with room for the rest. */
export const MAX_POLICY_CLAIM_BYTES = 4 * 1024;
export const MAX_DENY_RULES = 64;
const MAX_RATE_PER_SECOND = 100_000;

export class PolicyError extends Error {}

const VERBS = new Set(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', '*']);
/** `*`, `name`, `name/sub`, `name.group`, `name.group/sub`, `* /sub` (no space): lower-case DNS-ish names as RBAC spells them. */
const RESOURCE = /^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?)(\/(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?))?$/;
const NAMESPACE = /^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;

function list(text: string, what: string, valid: (item: string) => boolean, spelling: string): string[] {
  const items = text.split(',').map((item) => item.trim());
  const bad = items.find((item) => item === '' || !valid(item));
  if (bad !== undefined) throw new PolicyError(`${what} "${bad.slice(0, 80)}" in a deny rule is not ${spelling}`);
  return [...new Set(items)];
}

/** `VERB[,VERB…]:RESOURCE[,…][@NAMESPACE,…]`, as `--deny` takes it and the claim carries it. */
export function parseDenyRule(text: string): DenyRule {
  const colon = text.indexOf(':');
  if (colon === -1) throw new PolicyError(`deny rule "${text.slice(0, 80)}" must read VERB[,VERB…]:RESOURCE[,…][@NAMESPACE,…], such as delete:pods@kube-system`);
  const at = text.indexOf('@', colon);
  const verbs = list(text.slice(0, colon), 'verb', (v) => VERBS.has(v), 'a Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection or *)');
  const resources = list(at === -1 ? text.slice(colon + 1) : text.slice(colon + 1, at), 'resource', (r) => RESOURCE.test(r), 'a resource as RBAC spells it (pods, pods/exec, deployments.apps or *)');
  const namespaces = at === -1 ? undefined : list(text.slice(at + 1), 'namespace', (n) => NAMESPACE.test(n), 'a namespace name or *');
  return { verbs, resources, ...(namespaces && !namespaces.includes('*') ? { namespaces } : {}) };
}

export function formatDenyRule(rule: DenyRule): string {
  return `${rule.verbs.join(',')}:${rule.resources.join(',')}${rule.namespaces ? `@${rule.namespaces.join(',')}` : ''}`;
}

/** `N/s` (or `N`), as `--rate` takes it. */
export function parseRate(text: string, burst: string | undefined): RateLimit {
  const match = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(text.trim());
  const perSecond = match ? Number(match[1]) : NaN;
  if (!(perSecond > 0 && perSecond <= MAX_RATE_PER_SECOND)) throw new PolicyError(`rate "${text.slice(0, 40)}" must be requests a second, such as 5/s (more than 0, at most ${MAX_RATE_PER_SECOND})`);
  const burstValue = burst === undefined ? Math.max(1, Math.ceil(perSecond)) : Number(burst);
  if (!Number.isInteger(burstValue) || burstValue < 1 || burstValue > MAX_RATE_PER_SECOND) throw new PolicyError(`burst "${String(burst).slice(0, 40)}" must be a whole number of requests, at least 1`);
  return { perSecond, burst: burstValue };
}

/** Checks a policy as it would be stored; throws PolicyError naming what is wrong. */
export function validatePolicy(policy: Policy): Policy {
  if ((policy.deny?.length ?? 0) > MAX_DENY_RULES) throw new PolicyError(`a policy holds at most ${MAX_DENY_RULES} deny rules`);
  for (const rule of policy.deny ?? []) parseDenyRule(formatDenyRule(rule));
  if (policy.rate) parseRate(String(policy.rate.perSecond), String(policy.rate.burst));
  if (policy.maxStreams !== undefined && !(Number.isInteger(policy.maxStreams) && policy.maxStreams >= 0 && policy.maxStreams <= 1_000_000)) {
    throw new PolicyError('max-streams must be a whole number of long-running requests (0 for none at all)');
  }
  const bytes = Buffer.byteLength(JSON.stringify(policyClaim(policy)));
  if (bytes > MAX_POLICY_CLAIM_BYTES) throw new PolicyError(`the policy would take ${bytes} bytes of the token, more than its ${MAX_POLICY_CLAIM_BYTES}: use fewer or broader deny rules`);
  return policy;
}

export function isEmptyPolicy(policy: Policy): boolean {
  return !policy.readOnly && !policy.dryRun && (policy.deny?.length ?? 0) === 0 && policy.rate === undefined && policy.maxStreams === undefined;
}

/** An agent's own policy and its teams' as one: every brake any of them sets, each at its strictest. */
export function mergePolicies(policies: readonly Policy[]): Policy {
  const merged: Policy = {};
  const deny = new Map<string, DenyRule>();
  for (const policy of policies) {
    if (policy.readOnly) merged.readOnly = true;
    if (policy.dryRun) merged.dryRun = true;
    for (const rule of policy.deny ?? []) deny.set(formatDenyRule(rule), rule);
    if (policy.rate) {
      merged.rate = merged.rate
        ? { perSecond: Math.min(merged.rate.perSecond, policy.rate.perSecond), burst: Math.min(merged.rate.burst, policy.rate.burst) }
        : { ...policy.rate };
    }
    if (policy.maxStreams !== undefined) merged.maxStreams = Math.min(merged.maxStreams ?? Infinity, policy.maxStreams);
  }
  if (deny.size > 0) merged.deny = [...deny.values()];
  return merged;
}

/** The compact claim: `{"v":1,"ro":1,"dr":1,"deny":["delete:pods@kube-system"],"rate":[5,10],"ms":20}`. */
export interface PolicyClaim {
  v: number;
  ro?: 1;
  dr?: 1;
  deny?: string[];
  rate?: [number, number];
  ms?: number;
}

export function policyClaim(policy: Policy): PolicyClaim {
  return {
    v: POLICY_CLAIM_VERSION,
    ...(policy.readOnly ? { ro: 1 as const } : {}),
    ...(policy.dryRun ? { dr: 1 as const } : {}),
    ...(policy.deny?.length ? { deny: policy.deny.map(formatDenyRule) } : {}),
    ...(policy.rate ? { rate: [policy.rate.perSecond, policy.rate.burst] as [number, number] } : {}),
    ...(policy.maxStreams !== undefined ? { ms: policy.maxStreams } : {}),
  };
}

/** The claim as a relay reads it: anything it cannot read in full refuses the token (PolicyError), never a brake dropped. */
export function readPolicyClaim(claim: unknown): Policy {
  if (typeof claim !== 'object' || claim === null || Array.isArray(claim)) throw new PolicyError('the krl_policy claim is not an object');
  const { v, ro, dr, deny, rate, ms, ...rest } = claim as Record<string, unknown>;
  if (v !== POLICY_CLAIM_VERSION) throw new PolicyError(`the krl_policy claim is of version ${JSON.stringify(v)?.slice(0, 20)}; this relay knows version ${POLICY_CLAIM_VERSION}`);
  if (Object.keys(rest).length > 0) throw new PolicyError(`the krl_policy claim has a field this relay does not know ("${Object.keys(rest)[0]!.slice(0, 20)}")`);
  if ((ro !== undefined && ro !== 1) || (dr !== undefined && dr !== 1)) throw new PolicyError('the krl_policy claim\'s ro and dr must be 1 when present');
  if (deny !== undefined && (!Array.isArray(deny) || deny.length > MAX_DENY_RULES || deny.some((rule) => typeof rule !== 'string'))) throw new PolicyError('the krl_policy claim\'s deny must be a list of rules');
  if (rate !== undefined && (!Array.isArray(rate) || rate.length !== 2 || rate.some((n) => typeof n !== 'number'))) throw new PolicyError('the krl_policy claim\'s rate must be [perSecond, burst]');
  const policy: Policy = {
    ...(ro === 1 ? { readOnly: true } : {}),
    ...(dr === 1 ? { dryRun: true } : {}),
    ...(deny !== undefined && deny.length > 0 ? { deny: (deny as string[]).map(parseDenyRule) } : {}),
    ...(rate !== undefined ? { rate: parseRate(String((rate as number[])[0]), String((rate as number[])[1])) } : {}),
    ...(ms !== undefined ? { maxStreams: ms as number } : {}),
  };
  return validatePolicy(policy);
}
