import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReconnectBackoff } from '../../src/backoff.js';
import { Keepalive } from '../../src/tunnel/keepalive.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('reconnect backoff (DESIGN §4)', () => {
  it('doubles its cap from 5 s to 60 s', () => {
    const backoff = new ReconnectBackoff({ random: () => 1 });
    expect(Array.from({ length: 7 }, () => backoff.nextDelayMs())).toEqual([5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
  });

  it('draws every delay uniformly from [0, cap] (full jitter)', () => {
    const zero = new ReconnectBackoff({ random: () => 0 });
    expect(zero.nextDelayMs()).toBe(0);
    const backoff = new ReconnectBackoff();
    for (let i = 0; i < 200; i++) {
      const cap = backoff.currentCapMs;
      const delay = backoff.nextDelayMs();
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(cap);
      expect(cap).toBeLessThanOrEqual(60_000);
    }
  });

  it('resets only after a connection stayed up for 60 s', () => {
    const backoff = new ReconnectBackoff({ random: () => 1 });
    backoff.nextDelayMs();
    backoff.nextDelayMs();
    backoff.connectionEnded(59_999);
    expect(backoff.currentCapMs).toBe(20_000);
    backoff.connectionEnded(60_000);
    expect(backoff.currentCapMs).toBe(5_000);
  });
});

describe('keepalive (DESIGN §4)', () => {
  it('pings every 30 s and declares a silent peer dead 75 s after its last sign of life', () => {
    vi.useFakeTimers();
    const ping = vi.fn();
    const dead = vi.fn();
    const keepalive = new Keepalive(ping, dead);
    keepalive.start();
    vi.advanceTimersByTime(30_000);
    expect(ping).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(30_000);
    expect(ping).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(14_999);
    expect(dead).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(dead).toHaveBeenCalledTimes(1);
  });

  it('a late pong inside the grace period keeps the peer alive', () => {
    vi.useFakeTimers();
    const dead = vi.fn();
    const keepalive = new Keepalive(() => undefined, dead);
    keepalive.start();
    vi.advanceTimersByTime(70_000);
    keepalive.alive();
    vi.advanceTimersByTime(50_000);
    expect(dead).not.toHaveBeenCalled();
    keepalive.stop();
  });

  it('stays alive while pongs arrive', () => {
    vi.useFakeTimers();
    const dead = vi.fn();
    const keepalive = new Keepalive(() => undefined, dead);
    keepalive.start();
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(30_000);
      keepalive.alive();
    }
    expect(dead).not.toHaveBeenCalled();
    keepalive.stop();
  });
});
