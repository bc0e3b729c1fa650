/**
 * What a hub replica writes to the store about the relay connections it
 * holds (src/hub/connection-records.ts), against a store that records each
 * call and can be made to fail: writes at once on connect, readiness and
 * close; ONE refresh per heartbeat however many connections; a failing
 * store breaks nothing, is said once, and is caught up with once it answers.
 * Also the bounds on what relays say about themselves (relay-statements.ts).
 */
import { describe, expect, it } from 'vitest';
import { ConnectionRecords, READINESS_NOT_YET_STATED } from '../../src/hub/connection-records.js';
import { boundedText, MAX_READINESS_REASON_CHARS, READINESS_REASON_UNSAID, relayVersionOf, statedReadiness } from '../../src/hub/relay-statements.js';
import type { RelayConnection } from '../../src/issuer/store.js';
import { createLogger } from '../../src/log.js';
import { until } from '../helpers/http.js';

/** A store that keeps the latest row per id and counts its calls; `failing` makes every call throw. */
function recordingStore() {
  const rows = new Map<string, RelayConnection>();
  const calls = { save: 0, touch: 0, purge: 0, touchedIds: [] as number[] };
  const store = {
    failing: false,
    rows,
    calls,
    async saveRelayConnections(connections: readonly RelayConnection[]) {
      calls.save++;
      if (store.failing) throw new Error('the store is down');
      for (const connection of connections) rows.set(connection.id, { ...connection });
    },
    async touchRelayConnections(ids: readonly string[], at: Date) {
      calls.touch++;
      if (store.failing) throw new Error('the store is down');
      calls.touchedIds.push(ids.length);
      for (const id of ids) {
        const row = rows.get(id);
        if (row && !row.disconnectedAt) row.lastHeardAt = at;
      }
    },
    async purgeRelayConnections() {
      calls.purge++;
      if (store.failing) throw new Error('the store is down');
      return 0;
    },
  };
  return store;
}

function records(heartbeatMs = 50) {
  const store = recordingStore();
  const lines: string[] = [];
  const recorder = new ConnectionRecords({ store, hubReplica: 'hub-a', heartbeatMs, log: createLogger('info', {}, (line) => lines.push(line)) });
  return { store, lines, recorder };
}

describe('the relay connections a hub replica records', () => {
  it('writes a connection when it opens, when its readiness changes (with the reason) and when it closes', async () => {
    const { store, recorder } = records(60_000);
    const id = recorder.opened({ cluster: 'prod-eu', mode: 'tunnel', relayVersion: '0.1.0' });
    await until(() => store.rows.has(id), 5_000, 'the connection written');
    expect(store.rows.get(id)).toMatchObject({ cluster: 'prod-eu', hubReplica: 'hub-a', mode: 'tunnel', relayVersion: '0.1.0', heartbeatMs: 60_000, ready: false, notReadyReason: READINESS_NOT_YET_STATED });
    expect(store.rows.get(id)).not.toHaveProperty('disconnectedAt', expect.anything());

    recorder.readiness(id, true, undefined);
    await until(() => store.rows.get(id)!.ready, 5_000, 'ready written');
    expect(store.rows.get(id)!.notReadyReason).toBeUndefined();
    recorder.readiness(id, false, 'waiting for the Kubernetes API server');
    await until(() => !store.rows.get(id)!.ready, 5_000, 'not ready written');
    expect(store.rows.get(id)!.notReadyReason).toBe('waiting for the Kubernetes API server');

    recorder.closed(id);
    await until(() => store.rows.get(id)!.disconnectedAt !== undefined, 5_000, 'the close written');
    await recorder.stop();
  });

  it('refreshes every connection it holds in one write per heartbeat, and writes a burst of connections in a few', async () => {
    const { store, recorder } = records(100);
    const ids = Array.from({ length: 2_000 }, (_, i) => recorder.opened({ cluster: `c-${i % 50}`, mode: i % 2 ? 'tunnel' : 'direct' }));
    await until(() => store.rows.size === 2_000, 10_000, 'every connection written');
    expect(store.calls.save).toBeLessThanOrEqual(3);
    const closedOne = ids[0]!;
    recorder.closed(closedOne);
    await until(() => store.calls.touchedIds.length >= 3, 10_000, 'three heartbeats');
    // Each heartbeat is one call with every open connection, the closed one left out.
    expect(store.calls.touchedIds.every((count) => count >= 1_999)).toBe(true);
    expect(store.calls.touchedIds.at(-1)).toBe(1_999);
    const heardAt = store.rows.get(ids[1]!)!.lastHeardAt.getTime();
    expect(heardAt).toBeGreaterThan(store.rows.get(ids[1]!)!.connectedAt.getTime());
    expect(store.rows.get(closedOne)!.lastHeardAt.getTime()).toBe(store.rows.get(closedOne)!.disconnectedAt!.getTime());
    await recorder.stop();
  });

  it('keeps going while the store fails, says so once, and writes the latest state once it answers', async () => {
    const { store, lines, recorder } = records(50);
    store.failing = true;
    const staying = recorder.opened({ cluster: 'prod-eu', mode: 'tunnel' });
    const leaving = recorder.opened({ cluster: 'prod-eu', mode: 'direct' });
    recorder.readiness(staying, false, 'waiting for room in the audit trail');
    recorder.closed(leaving);
    await until(() => store.calls.save + store.calls.touch >= 5, 10_000, 'several failed writes');
    expect(lines.filter((line) => line.includes('cannot record relay connections')).length).toBe(1);
    expect(store.rows.size).toBe(0);

    store.failing = false;
    await until(() => store.rows.size === 2, 10_000, 'the connections written after the store came back');
    expect(store.rows.get(staying)).toMatchObject({ ready: false, notReadyReason: 'waiting for room in the audit trail' });
    expect(store.rows.get(leaving)!.disconnectedAt).toBeInstanceOf(Date);
    expect(lines.filter((line) => line.includes('recorded in the store again')).length).toBe(1);
    await recorder.stop();
  });

  it('on stop, ends every connection it still holds', async () => {
    const { store, recorder } = records(60_000);
    const id = recorder.opened({ cluster: 'prod-eu', mode: 'tunnel' });
    await recorder.stop();
    expect(store.rows.get(id)!.disconnectedAt).toBeInstanceOf(Date);
  });
});

describe('what a relay says about itself, as the hub keeps it', () => {
  it('a readiness message: ready, or not ready with a reason of one bounded line', () => {
    expect(statedReadiness({ type: 'ready', ready: true, reason: 'ignored' })).toEqual({ ready: true });
    expect(statedReadiness({ type: 'ready', ready: false, reason: 'waiting for the Kubernetes API server' })).toEqual({ ready: false, reason: 'waiting for the Kubernetes API server' });
    expect(statedReadiness({ type: 'ready', ready: false })).toEqual({ ready: false, reason: READINESS_REASON_UNSAID });
    expect(statedReadiness({ type: 'ready', ready: false, reason: 42 })).toEqual({ ready: false, reason: READINESS_REASON_UNSAID });
    expect(statedReadiness({ type: 'ready', ready: 'yes' })).toBeUndefined();
    expect(statedReadiness({ type: 'revocations' })).toBeUndefined();
    expect(statedReadiness(null)).toBeUndefined();
    const long = statedReadiness({ type: 'ready', ready: false, reason: `line one\nline\u0000two ${'x'.repeat(70_000)}` })!;
    expect(Array.from(long.reason!).length).toBe(MAX_READINESS_REASON_CHARS);
    expect(long.reason).toMatch(/^line one line two x+…$/);
  });

  it('never cuts a character in two', () => {
    const cut = boundedText('🙂'.repeat(400), 10);
    expect(Array.from(cut)).toEqual([...Array(9).fill('🙂'), '…']);
  });

  it('a version only when it looks like one', () => {
    expect(relayVersionOf('0.1.0')).toBe('0.1.0');
    expect(relayVersionOf('1.2.3-rc.1+build.5')).toBe('1.2.3-rc.1+build.5');
    expect(relayVersionOf(undefined)).toBeUndefined();
    expect(relayVersionOf('0.1.0, 0.2.0')).toBeUndefined();
    expect(relayVersionOf('<script>')).toBeUndefined();
    expect(relayVersionOf('9'.repeat(65))).toBeUndefined();
    expect(relayVersionOf(['0.1.0', '0.2.0'])).toBeUndefined();
  });
});
