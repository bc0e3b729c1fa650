/**
 * Policies reach the relay in the token (DESIGN §13): the issuer mints the agent's effective
 * policy (its own merged with its teams') into `krl_policy`, the relay enforces it with no
 * lookup, a change applies at the next token, `--now` cuts the tokens issued before it (a token
 * minted in the same second is dated after the cut, so it works), and a merged policy too large
 * for a token is refused with a sentence rather than cut short.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR } from '../../src/control/caller.js';
import { clearPolicy, setPolicy } from '../../src/control/policies.js';
import { requestToken } from '../../src/client/token.js';
import { parseDenyRule, POLICY_CLAIM } from '../../src/policy/policy.js';
import { request, until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ relay: { revocationPollIntervalMs: 200 } });
});
afterAll(async () => {
  await stack?.close();
});

const withRegistry = async <T>(use: (registry: Awaited<ReturnType<Stack['registry']>>['registry']) => Promise<T>): Promise<T> => {
  const { registry, close } = await stack.registry();
  try {
    return await use(registry);
  } finally {
    await close();
  }
};
const remove = (token: string, name: string) => request(`${stack.relay.url}/api/v1/namespaces/default/configmaps/${name}`, { method: 'DELETE', ca: stack.caPem, headers: { authorization: `Bearer ${token}` } });

describe('the policy in the token', () => {
  it('carries the agent’s own policy merged with its teams’, and the relay enforces it', async () => {
    await withRegistry(async (registry) => {
      await setPolicy(registry, OPERATOR, { agent: 'deployer' }, { deny: [parseDenyRule('delete:configmaps@default')] });
      await setPolicy(registry, OPERATOR, { team: 'acme/sre' }, { rate: { perSecond: 50, burst: 100 } });
    });
    const token = await stack.token();
    expect(decodeJwt(token)[POLICY_CLAIM]).toEqual({ v: 1, deny: ['delete:configmaps@default'], rate: [50, 100] });
    const refused = await remove(token, 'x');
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ message: expect.stringMatching(/deny rule delete:configmaps@default/) });
    await withRegistry(async (registry) => {
      await clearPolicy(registry, OPERATOR, { agent: 'deployer' });
      await clearPolicy(registry, OPERATOR, { team: 'acme/sre' });
    });
    const free = await stack.token();
    expect(decodeJwt(free)[POLICY_CLAIM]).toBeUndefined();
    expect((await remove(free, 'x')).status).toBe(200);
  });

  it('--now: tokens issued before the change stop working, one minted right after works', async () => {
    const before = await stack.token();
    expect((await remove(before, 'before')).status).toBe(200);
    await withRegistry((registry) => setPolicy(registry, OPERATOR, { agent: 'deployer' }, { readOnly: true }, { now: true }));
    const after = await stack.token();
    expect(decodeJwt(after)[POLICY_CLAIM]).toEqual({ v: 1, ro: 1 });
    await until(async () => (await remove(before, 'before')).status === 401, 5_000, 'the relay to refuse the token issued before the cut');
    const refused = await remove(before, 'before');
    expect(refused.json()).toMatchObject({ code: 401 });
    // The new token is not caught by the cut, though it may be of the same second: it is refused only by the policy it carries.
    const answer = await remove(after, 'after');
    expect(answer.status).toBe(403);
    expect(answer.json()).toMatchObject({ message: expect.stringMatching(/read-only/) });
    await withRegistry((registry) => clearPolicy(registry, OPERATOR, { agent: 'deployer' }));
  });

  it('a merged policy too large for a token is refused with a sentence, not cut short', async () => {
    const rules = (prefix: string) => Array.from({ length: 30 }, (_, i) => parseDenyRule(`get,list,watch:${prefix}${'r'.repeat(50)}${i}.example.com@${'n'.repeat(40)}${i}`));
    await withRegistry(async (registry) => {
      await setPolicy(registry, OPERATOR, { agent: 'deployer' }, { deny: rules('a') });
      await setPolicy(registry, OPERATOR, { team: 'acme/sre' }, { deny: rules('b') });
    });
    await expect(requestToken({ issuer: stack.issuer.url, cluster: 'prod-eu', apiKey: stack.agentKey, issuerCa: stack.caPem })).rejects.toThrow(/policy and its teams' together cannot be carried in a token/);
    await withRegistry(async (registry) => {
      await clearPolicy(registry, OPERATOR, { agent: 'deployer' });
      await clearPolicy(registry, OPERATOR, { team: 'acme/sre' });
    });
  });
});
