/**
 * The policy stage (DESIGN §13): every rule decided from RequestInfo, each with a case that
 * fails when the rule is taken out; dryRun=All added to the target byte for byte; the rate's
 * token bucket and its Retry-After.
 */
import { describe, expect, it } from 'vitest';
import { parseRequestInfo } from '../../src/audit/request-info.js';
import type { AgentIdentity } from '../../src/identity.js';
import { parseDenyRule, type Policy } from '../../src/policy/policy.js';
import { applyPolicy, authorizedVerb, PolicyRateLimiter, withDryRun } from '../../src/request-stages/agent-policy.js';
import { RelayRefusal } from '../../src/request-stages/errors.js';

const agent = (policy?: Policy): AgentIdentity => ({ user: 'agent:bot', groups: ['acme/ai'], tokenId: 'j', issuedAt: 1, expiresAt: 61, ...(policy ? { policy } : {}) });

/** What the policy makes of `METHOD target`: `forward`, `dry-run <target>`, or the refusal's reason and rule. */
function decide(policy: Policy | undefined, method: string, target: string, upgrade = false): string {
  try {
    const outcome = applyPolicy(agent(policy), method, parseRequestInfo(method, target), target, upgrade);
    return outcome.dryRun ? `dry-run ${outcome.target}` : outcome.target === target ? 'forward' : `changed ${outcome.target}`;
  } catch (err) {
    if (!(err instanceof RelayRefusal)) throw err;
    expect(err.status).toBe(403);
    return `${err.reason} ${err.details.policyRule}`;
  }
}

describe('no policy', () => {
  it('forwards everything as it is (a token without the claim carries no brakes)', () => {
    expect(decide(undefined, 'DELETE', '/api/v1/namespaces/kube-system/pods/x')).toBe('forward');
    expect(decide({}, 'POST', '/api/v1/namespaces/default/pods/web/exec?command=sh', true)).toBe('forward');
  });
});

describe('read-only', () => {
  const readOnly = { readOnly: true };
  it.each([
    ['GET', '/api/v1/namespaces/default/pods'],
    ['GET', '/api/v1/namespaces/default/pods/web'],
    ['GET', '/api/v1/namespaces/default/pods?watch=1'],
    ['GET', '/api/v1/namespaces/default/pods/web/log?follow=true'],
    ['GET', '/api'],
    ['GET', '/apis/apps/v1'],
    ['GET', '/version'],
    ['GET', '/openapi/v3'],
    ['POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews'],
    ['POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews'],
    ['POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews'],
  ])('lets %s %s through', (method, target) => {
    expect(decide(readOnly, method, target)).toBe('forward');
  });

  it.each([
    ['DELETE', '/api/v1/namespaces/default/pods/web', false],
    ['POST', '/api/v1/namespaces/default/configmaps', false],
    ['PUT', '/api/v1/namespaces/default/configmaps/x', false],
    ['PATCH', '/apis/apps/v1/namespaces/default/deployments/web', false],
    ['DELETE', '/api/v1/namespaces/default/pods', false],
    // exec, attach and port-forward whatever the method: WebSocket exec is a GET
    ['GET', '/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true', true],
    ['POST', '/api/v1/namespaces/default/pods/web/exec?command=sh', true],
    ['GET', '/api/v1/namespaces/default/pods/web/attach', true],
    ['GET', '/api/v1/namespaces/default/pods/web/portforward', true],
    ['GET', '/api/v1/namespaces/default/pods/web/proxy/admin', false],
    ['GET', '/api/v1/namespaces/default/services/web/proxy/', false],
    // A review of someone else is not a read of oneself
    ['POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', false],
    ['POST', '/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews', false],
    ['POST', '/apis/example.com/v1/selfsubjectaccessreviews', false],
    // tokenrequests and evictions are POSTs that act
    ['POST', '/api/v1/namespaces/default/serviceaccounts/default/token', false],
    ['POST', '/api/v1/namespaces/default/pods/web/eviction', false],
    ['POST', '/logs', false],
  ])('refuses %s %s', (method, target, upgrade) => {
    expect(decide(readOnly, method, target, upgrade)).toBe('policy-read-only read-only');
  });
});

describe('dry-run', () => {
  const dryRun = { dryRun: true };
  it.each([
    ['POST', '/api/v1/namespaces/default/configmaps', '/api/v1/namespaces/default/configmaps?dryRun=All'],
    ['PATCH', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-client-side-apply&fieldValidation=Strict', '/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-client-side-apply&fieldValidation=Strict&dryRun=All'],
    ['DELETE', '/api/v1/namespaces/default/pods/web', '/api/v1/namespaces/default/pods/web?dryRun=All'],
    ['DELETE', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&dryRun=All'],
    ['PUT', '/api/v1/namespaces/default/configmaps/x?', '/api/v1/namespaces/default/configmaps/x?dryRun=All'],
    // A client's own dryRun=None stays (the API server refuses the pair with 400); ours is added regardless
    ['POST', '/api/v1/namespaces/default/configmaps?dryRun=None', '/api/v1/namespaces/default/configmaps?dryRun=None&dryRun=All'],
  ])('sends %s %s on as %s', (method, target, forwarded) => {
    expect(decide(dryRun, method, target)).toBe(`dry-run ${forwarded}`);
  });

  it('leaves reads alone, and a change that already asks for dryRun=All as it is', () => {
    expect(decide(dryRun, 'GET', '/api/v1/namespaces/default/pods')).toBe('forward');
    expect(decide(dryRun, 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews')).toBe('forward');
    expect(withDryRun('/api/v1/x?dryRun=All&a=b')).toBe('/api/v1/x?dryRun=All&a=b');
    expect(withDryRun('/api/v1/x?dryrun=All')).toBe('/api/v1/x?dryrun=All&dryRun=All');
  });

  it.each([
    ['GET', '/api/v1/namespaces/default/pods/web/exec?command=sh', true],
    ['POST', '/api/v1/namespaces/default/pods/web/exec?command=sh', true],
    ['POST', '/api/v1/namespaces/default/pods/web/attach', true],
    ['POST', '/api/v1/namespaces/default/pods/web/portforward', true],
    ['POST', '/api/v1/namespaces/default/pods/web/proxy/reset', false],
    ['POST', '/logs', false],
  ])('refuses %s %s, which cannot be dry-run', (method, target, upgrade) => {
    expect(decide(dryRun, method, target, upgrade)).toBe('policy-dry-run dry-run');
  });
});

describe('deny rules', () => {
  const deny = (...rules: string[]): Policy => ({ deny: rules.map(parseDenyRule) });
  it.each([
    ['delete:pods@kube-system', 'DELETE', '/api/v1/namespaces/kube-system/pods/coredns', 'policy-deny deny:delete:pods@kube-system'],
    ['delete:pods@kube-system', 'DELETE', '/api/v1/namespaces/default/pods/web', 'forward'],
    ['delete:pods@kube-system', 'GET', '/api/v1/namespaces/kube-system/pods/coredns', 'forward'],
    ['delete:pods@kube-system', 'DELETE', '/api/v1/namespaces/kube-system/pods', 'forward'],
    ['deletecollection:pods@kube-system', 'DELETE', '/api/v1/namespaces/kube-system/pods', 'policy-deny deny:deletecollection:pods@kube-system'],
    // exec is create on pods/exec, as a GET (WebSocket) too
    ['create:pods/exec', 'GET', '/api/v1/namespaces/default/pods/web/exec?command=sh', 'policy-deny deny:create:pods/exec'],
    ['create:pods/exec', 'POST', '/api/v1/namespaces/default/pods/web/exec?command=sh', 'policy-deny deny:create:pods/exec'],
    ['create:pods/exec', 'POST', '/api/v1/namespaces/default/pods', 'forward'],
    ['create:pods', 'POST', '/api/v1/namespaces/default/pods/web/exec', 'forward'],
    ['*:pods/*', 'GET', '/api/v1/namespaces/default/pods/web/log', 'policy-deny deny:*:pods/*'],
    ['*:pods/*', 'GET', '/api/v1/namespaces/default/pods/web', 'forward'],
    ['*:*', 'GET', '/api/v1/namespaces/default/pods/web/log', 'policy-deny deny:*:*'],
    ['*:*', 'GET', '/version', 'forward'],
    ['get,list:secrets', 'GET', '/api/v1/secrets', 'policy-deny deny:get,list:secrets'],
    ['delete:deployments.apps', 'DELETE', '/apis/apps/v1/namespaces/default/deployments/web', 'policy-deny deny:delete:deployments.apps'],
    ['delete:deployments.apps', 'DELETE', '/apis/extensions/v1beta1/namespaces/default/deployments/web', 'forward'],
    ['delete:deployments', 'DELETE', '/apis/extensions/v1beta1/namespaces/default/deployments/web', 'policy-deny deny:delete:deployments'],
    ['patch:*/scale', 'PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale', 'policy-deny deny:patch:*/scale'],
    ['delete:namespaces', 'DELETE', '/api/v1/namespaces/prod', 'policy-deny deny:delete:namespaces'],
    ['delete:pods@prod', 'DELETE', '/api/v1/namespaces/prod', 'forward'],
  ])('%s: %s %s → %s', (rule, method, target, outcome) => {
    expect(decide(deny(rule), method, target, target.includes('/exec'))).toBe(outcome);
  });

  it('refuses a denied request with a message naming the rule', () => {
    try {
      applyPolicy(agent(deny('delete:pods@kube-system')), 'DELETE', parseRequestInfo('DELETE', '/api/v1/namespaces/kube-system/pods/coredns'), '/api/v1/namespaces/kube-system/pods/coredns', false);
      expect.unreachable();
    } catch (err) {
      expect((err as RelayRefusal).clientMessage).toBe('kube-relay policy: the agent may not delete pods "coredns" in namespace "kube-system" (deny rule delete:pods@kube-system)');
    }
  });
});

describe('the verb a request is authorized with', () => {
  it('is create for exec, attach and port-forward whatever the method', () => {
    for (const sub of ['exec', 'attach', 'portforward']) {
      for (const method of ['GET', 'POST']) expect(authorizedVerb(parseRequestInfo(method, `/api/v1/namespaces/d/pods/p/${sub}`), method)).toBe('create');
    }
    expect(authorizedVerb(parseRequestInfo('GET', '/api/v1/namespaces/d/pods/p/log'), 'GET')).toBe('get');
    expect(authorizedVerb(parseRequestInfo('GET', '/api/v1/namespaces/d/pods?watch=true'), 'GET')).toBe('watch');
  });
});

describe('rate', () => {
  it('lets a burst through, then refuses with 429 and Retry-After until a token is back', () => {
    let now = 0;
    const limiter = new PolicyRateLimiter(() => now);
    const identity = agent({ rate: { perSecond: 2, burst: 3 } });
    for (let i = 0; i < 3; i++) limiter.take(identity);
    let refusal: RelayRefusal | undefined;
    try {
      limiter.take(identity);
    } catch (err) {
      refusal = err as RelayRefusal;
    }
    expect(refusal).toMatchObject({ status: 429, reason: 'policy-rate', details: { policyRule: 'rate', retryAfterSeconds: 1 } });
    now += 500;
    limiter.take(identity);
    expect(() => limiter.take(identity)).toThrow(RelayRefusal);
    // Another agent has a bucket of its own; an agent without a rate has none.
    limiter.take({ ...identity, user: 'agent:other' });
    for (let i = 0; i < 100; i++) limiter.take(agent());
  });

  it('holds 50 requests at 5/s with a burst of 5 to about 9 s', () => {
    let now = 0;
    const limiter = new PolicyRateLimiter(() => now);
    const identity = agent({ rate: { perSecond: 5, burst: 5 } });
    let served = 0;
    while (served < 50) {
      try {
        limiter.take(identity);
        served++;
      } catch {
        now += 10; // a client retrying every 10 ms
      }
    }
    expect(now).toBeGreaterThanOrEqual(8_990);
    expect(now).toBeLessThanOrEqual(9_010);
  });
});
