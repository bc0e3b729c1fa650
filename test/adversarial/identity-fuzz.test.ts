/**
 * Issue 7's invariant, fuzzed: whatever headers a client adds to a request
 * with a valid token, the API server sees exactly one identity, the
 * token's (the relay's credential, Impersonate-User, its groups, the two
 * extras) or nothing at all. 10 000 header sets straight to the relay and
 * 2 000 through the hub in CI; for the long run (a fifth of it through the hub):
 * KUBE_RELAY_FUZZ_RUNS=1000000 npx vitest run test/adversarial/identity-fuzz.test.ts
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExactlyAgentIdentity, sendRaw } from '../helpers/raw-http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const RUNS = Number(process.env.KUBE_RELAY_FUZZ_RUNS ?? 10_000);
const PATH = '/api/v1/namespaces/default/pods';

/** Names that make the relay refuse the request (a client choosing an identity, a second credential). */
const REFUSED_NAMES = [
  'Impersonate-User', 'Impersonate-Group', 'Impersonate-Uid', 'Impersonate-Extra-scopes', 'Impersonate-Extra-kube-relay.dev%2ftoken-id',
  'Impersonate-Extra-kube-relay.dev%2Frequest-id', 'Authorization', 'Impersonate_User', 'Impersonate_Group',
];
/** Names the relay must strip (identity-bearing or hop-by-hop) or pass untouched. */
const STRIPPED_OR_PASSED_NAMES = [
  'X-Remote-User', 'X-Remote-Group', 'X-Remote-Extra-Scopes', 'Forwarded', 'X-Forwarded-For', 'X-Forwarded-User', 'Proxy-Authorization',
  'Proxy-Connection', 'Connection', 'Keep-Alive', 'TE', 'Sec-WebSocket-Protocol', 'Kubectl-Command', 'Accept', 'User-Agent',
  'X_Remote_User', 'X-Real-IP', 'X_Forwarded_For',
];
const TRICKY_NAMES = [...REFUSED_NAMES, ...STRIPPED_OR_PASSED_NAMES];

const randomCase = (name: string) =>
  fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) => [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join(''));

/** Message framing is the HTTP client's business, not this property's (Node refuses e.g. a Trailer on a plain GET). */
const FRAMING = new Set(['host', 'content-length', 'transfer-encoding', 'trailer', 'expect', 'upgrade']);
const headerName = fc
  .oneof(
    { weight: 1, arbitrary: fc.constantFrom(...REFUSED_NAMES).chain(randomCase) },
    { weight: 12, arbitrary: fc.constantFrom(...STRIPPED_OR_PASSED_NAMES).chain(randomCase) },
    { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,15}$/) },
  )
  .filter((name) => !FRAMING.has(name.toLowerCase()));
const headerValue = fc.oneof(
  fc.constantFrom(...TRICKY_NAMES, 'agent:admin', 'system:masters', 'Bearer stolen', 'close', 'keep-alive', 'base64url.bearer.authorization.k8s.io.x'),
  fc.stringMatching(/^[!-~]([ -~]{0,30}[!-~])?$/),
);
const headerSets = fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 });

/** Through the hub the relay code is the same; fewer runs there check that the hub adds no way around it. */
const RUNS_BY_MODE = { direct: RUNS, tunnel: Math.ceil(RUNS / 5) } as const;

describe.each(['direct', 'tunnel'] as const)('the identity invariant (DESIGN §3.3), fuzzed, %s mode', (mode) => {
  const runs = RUNS_BY_MODE[mode];
  let stack: Stack;
  let token: string;
  let tokenMintedAt = 0;

  beforeAll(async () => {
    stack = await startStack({ mode });
  });

  afterAll(async () => {
    await stack?.close();
  });

  /**
   * One request on a raw TLS connection, header names, cases and duplicates
   * exactly as generated (Node 20's http client cannot send duplicates in
   * different cases). The status line is all the property needs: a generated
   * "Connection: keep-alive" may keep the server's side open.
   */
  let tlsSession: Buffer | undefined;
  async function send(extra: [string, string][]): Promise<number> {
    // A token lives 60 s and a long run takes an hour: past 30 s, a fresh one (as kubectl's exec plugin would).
    if (Date.now() - tokenMintedAt > 30_000) {
      token = await stack.token();
      tokenMintedAt = Date.now();
    }
    const url = new URL(stack.relay.url);
    const target = `${url.pathname.replace(/\/$/, '')}${PATH}`;
    const head = [`GET ${target} HTTP/1.1`, `Host: ${url.host}`, `Authorization: Bearer ${token}`, ...extra.map(([name, value]) => `${name}: ${value}`), 'Connection: close', '', ''].join('\r\n');
    const connection = { url: stack.relay.url, ca: stack.caPem, ...(tlsSession ? { session: tlsSession } : {}), onSession: (session: Buffer) => (tlsSession = session) };
    return (await sendRaw(connection, head, { headOnly: true })).status;
  }

  it(`holds for ${runs} random header sets: exactly the token's identity upstream, or no request at all`, async () => {
    const outcomes = { forwarded: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(headerSets, async (extra) => {
        const before = stack.fake.requests.length;
        const status = await send(extra);
        // Only this request's path: the relay's own readiness probe (GET /version) may land in between.
        const forwarded = stack.fake.requests.slice(before).filter((r) => r.url === PATH);
        if (status !== 200) {
          outcomes.refused++;
          expect([400, 401, 403]).toContain(status);
          expect(forwarded).toHaveLength(0);
          return;
        }
        outcomes.forwarded++;
        expect(forwarded).toHaveLength(1);
        expectExactlyAgentIdentity(forwarded[0]!, 'agent:deployer', ['acme/platform', 'acme/sre']);
      }),
      { numRuns: runs },
    );
    // Both sides of the property were exercised, not just one (a generator that only ever trips a refusal proves little).
    expect(outcomes.forwarded).toBeGreaterThan(runs / 10);
    expect(outcomes.refused).toBeGreaterThan(runs / 10);
  }, Math.max(600_000, runs * 20));
});
