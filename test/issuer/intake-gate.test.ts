/** IntakeGate: one cluster's batches one after another, and never more than the concurrency at once. */
import { describe, expect, it } from 'vitest';
import { IntakeGate } from '../../src/issuer/store/intake-gate.js';

describe('IntakeGate', () => {
  it('runs work of one key in order and at most `concurrency` at once overall', async () => {
    const gate = new IntakeGate(2);
    let running = 0;
    let most = 0;
    const order: string[] = [];
    const work = (key: string, i: number) =>
      gate.run(key, async () => {
        running++;
        most = Math.max(most, running);
        order.push(`${key}${i}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        if (key === 'b' && i === 1) throw new Error('b1 failed');
        return `${key}${i}`;
      });
    const results = await Promise.allSettled(['a', 'b', 'c', 'd'].flatMap((key) => [0, 1, 2].map((i) => work(key, i))));
    expect(most).toBe(2);
    for (const key of ['a', 'b', 'c', 'd']) expect(order.filter((entry) => entry.startsWith(key))).toEqual([`${key}0`, `${key}1`, `${key}2`]);
    // A failure is its caller's; the key's later work still runs.
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(11);
  });
});
