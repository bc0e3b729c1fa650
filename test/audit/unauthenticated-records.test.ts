/**
 * The per-address limit on records of requests without a verified identity
 * (issue 14), on a frozen clock: what it holds back is counted into
 * summaries, its map of addresses stays bounded, and a record of an
 * authenticated request always passes.
 */
import { describe, expect, it } from 'vitest';
import { truncated, truncatedList } from '../../src/audit/bounded-fields.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { DEFAULT_UNAUTHENTICATED_RECORD_LIMITS, UnauthenticatedRecordLimiter } from '../../src/audit/unauthenticated-records.js';

function refusal(sourceIp: string, user: string | null = null, reason = 'missing-token'): AuditRecord {
  return { time: new Date(clock).toISOString(), requestId: 'r', stage: 'ResponseComplete', cluster: 'prod-eu', mode: 'direct', user, groups: [], tokenId: null, sourceIp, userAgent: null, method: 'GET', path: '/api', query: '', verb: 'get', namespace: '', resource: '', subresource: '', name: '', status: 401, decision: 'denied-by-relay', durationMs: 0, bytesIn: 0, bytesOut: 0, reason };
}

let clock = Date.parse('2026-12-01T10:00:00Z');
const limits = { ...DEFAULT_UNAUTHENTICATED_RECORD_LIMITS, perAddressBurst: 3, perAddressPerSecond: 1, overallBurst: 5, overallPerSecond: 2, trackedAddresses: 2 };

describe('UnauthenticatedRecordLimiter', () => {
  it('writes an address’s burst, then one per refill, and summarises the rest with their reasons and times', () => {
    const limiter = new UnauthenticatedRecordLimiter(limits, () => clock);
    const admitted = Array.from({ length: 10 }, (_, i) => limiter.admit(refusal('10.0.0.1', null, i % 2 ? 'missing-token' : 'malformed-token')));
    expect(admitted.filter(Boolean)).toHaveLength(3);
    clock += 1_000;
    expect(limiter.admit(refusal('10.0.0.1'))).toBe(true);
    expect(limiter.admit(refusal('10.0.0.1'))).toBe(false);
    expect(limiter.takeSummaries()).toEqual([
      expect.objectContaining({ kind: 'summary', reason: 'unauthenticated-refusals', sourceIp: '10.0.0.1', cluster: 'prod-eu', mode: 'direct', count: 8, reasons: { 'malformed-token': 3, 'missing-token': 5 } }),
    ]);
    expect(limiter.takeSummaries()).toEqual([]);
  });

  it('never holds back a record of an authenticated request', () => {
    const limiter = new UnauthenticatedRecordLimiter(limits, () => clock);
    for (let i = 0; i < 100; i++) expect(limiter.admit(refusal('10.0.0.2', 'agent:deployer', 'impersonation-forbidden'))).toBe(true);
    expect(limiter.takeSummaries()).toEqual([]);
  });

  it('tracks a bounded number of addresses: the rest share one bucket, summarised with sourceIp null; idle ones are forgotten', () => {
    const limiter = new UnauthenticatedRecordLimiter(limits, () => clock);
    for (let n = 0; n < 50; n++) limiter.admit(refusal(`10.1.0.${n}`));
    expect(limiter.trackedAddresses).toBe(2);
    const summaries = limiter.takeSummaries();
    expect(summaries.find((summary) => summary.sourceIp === null)?.count).toBe(50 - 2 - 3);
    clock += 60_000;
    limiter.takeSummaries();
    expect(limiter.trackedAddresses).toBe(0);
  });

  it('holds back what many addresses write together beyond the overall burst', () => {
    const limiter = new UnauthenticatedRecordLimiter({ ...limits, trackedAddresses: 100 }, () => clock);
    const admitted = Array.from({ length: 20 }, (_, n) => limiter.admit(refusal(`10.2.0.${n}`)));
    expect(admitted.filter(Boolean)).toHaveLength(5);
  });
});

describe('bounded fields', () => {
  it('cuts past the limit on a character boundary and says how much it cut', () => {
    expect(truncated('abc', 3)).toBe('abc');
    expect(truncated('a'.repeat(30_000), 1024)).toBe(`${'a'.repeat(1024)}…[truncated 28976 bytes]`);
    expect(truncated('ééé', 3)).toBe('é…[truncated 4 bytes]');
  });

  it('keeps the leading values of a list that fit and names how many more there were', () => {
    expect(truncatedList(['sh', '-c', 'x'.repeat(20), 'tail'], 10)).toEqual(['sh', '-c', `${'x'.repeat(6)}…[truncated 14 bytes]`, '…[truncated 1 more]']);
    expect(truncatedList(['ls'], 10)).toEqual(['ls']);
  });
});
