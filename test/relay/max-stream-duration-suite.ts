/**
 * Watches that reach the relay's maximum stream duration, on a stack of
 * their own (a short --max-stream-duration), run once per mode like
 * relay-suite.ts: a JSON watch ends with a final ERROR event, anything
 * else is cut (watch-termination.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.js';
import { openWatch, podEvent } from '../helpers/watch-client.js';
import type { RelaySuiteOptions } from './relay-suite.js';

export function maxStreamDurationSuite(mode: 'direct' | 'tunnel', options: RelaySuiteOptions = {}): void {
  describe('the maximum stream duration (DESIGN §3.6)', () => {
    let limited: Stack;
    let limitedToken: string;

    beforeAll(async () => {
      limited = await startStack({ mode, fake: { http2: options.upstream === 'h2' }, relay: { maxStreamDurationMs: 2_000 } });
      limitedToken = await limited.token();
    });

    afterAll(async () => {
      await limited?.close();
    });

    it('ends a JSON watch that reaches it with an ERROR event (504 Timeout) as its last line, then a clean end', async () => {
      const client = openWatch(limited.relay.url, limited.caPem, '/api/v1/namespaces/default/pods?watch=1', limitedToken, {}, options.client);
      const watch = await limited.fake.nextWatch();
      // On a loaded machine the relay may end the watch before this event reaches it: then it is not forwarded.
      await watch.send(podEvent('a')).catch(() => undefined);
      expect(await client.ended).toBe('complete');
      const lines = client.lines();
      expect(lines.at(-1)).toEqual({ type: 'ERROR', object: expect.objectContaining({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 504, reason: 'Timeout' }) });
      expect(lines.slice(0, -1)).toEqual(lines.length === 2 ? [podEvent('a')] : []);
      await watch.closed;
    });

    it('cuts a protobuf watch as before: no event can be added to its framing', async () => {
      const client = openWatch(limited.relay.url, limited.caPem, '/api/v1/namespaces/default/pods?watch=1', limitedToken, { accept: 'application/vnd.kubernetes.protobuf;stream=watch' }, options.client);
      const watch = await limited.fake.nextWatch();
      await watch.write(Buffer.from([0x00, 0x00, 0x00, 0x04, 0x6b, 0x38, 0x73, 0x00])).catch(() => undefined);
      expect(await client.ended).toBe('cut');
      expect(client.body()).not.toContain('ERROR');
      await watch.closed;
    });
  });
}
