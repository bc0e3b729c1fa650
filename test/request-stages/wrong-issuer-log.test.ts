/**
 * Issue 13: a token signed by the issuer's key but naming the issuer by
 * another URL (`https://localhost:8443` against the relay's
 * `--issuer https://127.0.0.1:8443`) is refused as wrong-issuer, and
 * kubectl only says "You must be logged in to the server". The verifier
 * logs both URLs at warn, once a minute per received issuer, never the token.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { RelayRefusal } from '../../src/request-stages/errors.js';
import { TokenVerifier } from '../../src/request-stages/token-verifier.js';
import { CLUSTER, createTestSigner } from '../helpers/tokens.js';

const EXPECTED = 'https://127.0.0.1:8443';
const signer = await createTestSigner();

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

function verifierWithLog() {
  const lines: LogLine[] = [];
  const clock = { now: 1_800_000_000_000 };
  const verifier = new TokenVerifier({
    issuer: EXPECTED,
    audience: CLUSTER,
    jwksFile: signer.jwksFile,
    now: () => clock.now,
    log: createLogger('info', {}, (line) => lines.push(JSON.parse(line) as LogLine)),
  });
  const tokenFrom = (iss: unknown) => signer.sign({ ...signer.claims(Math.floor(clock.now / 1000)), iss } as Record<string, unknown>);
  return { verifier, lines, clock, tokenFrom };
}

async function refusalOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RelayRefusal);
    return (err as RelayRefusal).reason;
  }
  throw new Error('expected the token to be refused');
}

describe('a token from another issuer', () => {
  it('is logged at warn with the expected and the received issuer, once a minute per received issuer, with a count of the ones not logged', async () => {
    const { verifier, lines, clock, tokenFrom } = verifierWithLog();
    const tokens: string[] = [];
    for (let i = 0; i < 5; i++) {
      const token = await tokenFrom('https://localhost:8443');
      tokens.push(token);
      expect(await refusalOf(verifier.verify(token))).toBe('wrong-issuer');
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'warn',
      msg: 'refused a token issued by https://localhost:8443: tokens must be issued by https://127.0.0.1:8443 (the issuer URL must match exactly)',
      expectedIssuer: EXPECTED,
      receivedIssuer: 'https://localhost:8443',
    });

    // Another received issuer is its own line at once.
    expect(await refusalOf(verifier.verify(await tokenFrom('https://issuer.internal')))).toBe('wrong-issuer');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ receivedIssuer: 'https://issuer.internal' });

    clock.now += 59_000;
    expect(await refusalOf(verifier.verify(await tokenFrom('https://localhost:8443')))).toBe('wrong-issuer');
    expect(lines).toHaveLength(2);
    clock.now += 1_000;
    expect(await refusalOf(verifier.verify(await tokenFrom('https://localhost:8443')))).toBe('wrong-issuer');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ level: 'warn', receivedIssuer: 'https://localhost:8443', notLogged: 5 });

    const logged = JSON.stringify(lines);
    for (const token of tokens) expect(logged).not.toContain(token.split('.')[2]);
  });

  it('bounds a long iss in the log', async () => {
    const { verifier, lines, tokenFrom } = verifierWithLog();
    const long = `https://${'a'.repeat(5_000)}.example`;
    expect(await refusalOf(verifier.verify(await tokenFrom(long)))).toBe('wrong-issuer');
    expect(lines).toHaveLength(1);
    expect(JSON.stringify(lines[0]).length).toBeLessThan(1_000);
    expect(lines[0]!.receivedIssuer).toMatch(/^https:\/\/a+…$/);
  });

  it('is not logged for the other refusals, nor when the issuer matches', async () => {
    const { verifier, lines, tokenFrom } = verifierWithLog();
    await expect(verifier.verify(await tokenFrom(EXPECTED))).resolves.toMatchObject({ user: 'agent:deployer' });
    expect(await refusalOf(verifier.verify(await signer.sign({ ...signer.claims(1_800_000_000), iss: EXPECTED, aud: 'other-cluster' })))).toBe('wrong-audience');
    expect(lines).toEqual([]);
  });
});
