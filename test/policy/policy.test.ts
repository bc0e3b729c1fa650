/** The policy model (DESIGN §13): its CLI spelling, merging (the stricter wins) and the krl_policy claim. */
import { describe, expect, it } from 'vitest';
import { MAX_POLICY_CLAIM_BYTES, mergePolicies, parseDenyRule, parseRate, PolicyError, policyClaim, readPolicyClaim, validatePolicy } from '../../src/policy/policy.js';

describe('deny rules as --deny spells them', () => {
  it.each([
    ['delete:pods@kube-system', { verbs: ['delete'], resources: ['pods'], namespaces: ['kube-system'] }],
    ['create:pods/exec,pods/attach,pods/portforward', { verbs: ['create'], resources: ['pods/exec', 'pods/attach', 'pods/portforward'] }],
    ['delete,deletecollection:deployments.apps,*/scale@prod,staging', { verbs: ['delete', 'deletecollection'], resources: ['deployments.apps', '*/scale'], namespaces: ['prod', 'staging'] }],
    ['*:secrets', { verbs: ['*'], resources: ['secrets'] }],
    ['get:pods@*', { verbs: ['get'], resources: ['pods'] }],
  ])('%s', (text, rule) => {
    expect(parseDenyRule(text)).toEqual(rule);
  });

  it.each([
    ['delete', /must read VERB/],
    ['remove:pods', /verb "remove"/],
    ['DELETE:pods', /verb "DELETE"/],
    ['delete:Pods', /resource "Pods"/],
    ['delete:', /resource ""/],
    ['delete:pods@Kube_System', /namespace "Kube_System"/],
  ])('%s is refused with a sentence', (text, message) => {
    expect(() => parseDenyRule(text)).toThrow(PolicyError);
    expect(() => parseDenyRule(text)).toThrow(message);
  });
});

describe('rates', () => {
  it('takes N/s or N, with a burst defaulting to the rate', () => {
    expect(parseRate('5/s', undefined)).toEqual({ perSecond: 5, burst: 5 });
    expect(parseRate('0.5', '3')).toEqual({ perSecond: 0.5, burst: 3 });
    expect(() => parseRate('0/s', undefined)).toThrow(/more than 0/);
    expect(() => parseRate('fast', undefined)).toThrow(/requests a second/);
    expect(() => parseRate('5/s', '1.5')).toThrow(/burst/);
  });
});

describe('merging an agent’s policy with its teams’', () => {
  it('keeps every brake, each at its strictest', () => {
    const merged = mergePolicies([
      { readOnly: true, rate: { perSecond: 10, burst: 20 }, deny: [parseDenyRule('delete:pods')] },
      { dryRun: true, rate: { perSecond: 20, burst: 5 }, maxStreams: 10, deny: [parseDenyRule('delete:pods'), parseDenyRule('create:pods/exec')] },
      { maxStreams: 3 },
    ]);
    expect(merged).toEqual({ readOnly: true, dryRun: true, rate: { perSecond: 10, burst: 5 }, maxStreams: 3, deny: [parseDenyRule('delete:pods'), parseDenyRule('create:pods/exec')] });
    expect(mergePolicies([])).toEqual({});
  });
});

describe('the krl_policy claim', () => {
  const policy = { readOnly: true, dryRun: true, deny: [parseDenyRule('delete:pods@kube-system')], rate: { perSecond: 5, burst: 10 }, maxStreams: 20 };

  it('is compact and reads back as the policy it carries', () => {
    const claim = policyClaim(policy);
    expect(claim).toEqual({ v: 1, ro: 1, dr: 1, deny: ['delete:pods@kube-system'], rate: [5, 10], ms: 20 });
    expect(readPolicyClaim(JSON.parse(JSON.stringify(claim)))).toEqual(policy);
    expect(policyClaim({})).toEqual({ v: 1 });
    expect(readPolicyClaim({ v: 1 })).toEqual({});
  });

  it.each([
    ['a newer version', { v: 2, ro: 1 }, /version 2/],
    ['an unknown field', { v: 1, ro: 1, allowAll: true }, /does not know/],
    ['ro other than 1', { v: 1, ro: 0 }, /must be 1/],
    ['a deny rule that does not parse', { v: 1, deny: ['nope'] }, /must read VERB/],
    ['a rate of zero', { v: 1, rate: [0, 1] }, /more than 0/],
    ['a negative max-streams', { v: 1, ms: -1 }, /max-streams/],
    ['not an object', 'ro', /not an object/],
  ])('with %s is refused, never read in part', (_case, claim, message) => {
    expect(() => readPolicyClaim(claim)).toThrow(message);
  });

  it('a policy that would not fit in the token is refused', () => {
    const deny = Array.from({ length: 60 }, (_, i) => parseDenyRule(`get,list,watch,create,update,patch:${'r'.repeat(40)}${i}.example.com,${'s'.repeat(20)}${i}@${'n'.repeat(30)}${i}`));
    expect(() => validatePolicy({ deny })).toThrow(new RegExp(`more than its ${MAX_POLICY_CLAIM_BYTES}`));
  });
});
