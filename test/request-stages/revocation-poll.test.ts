/** The relay's revocation poll (issue 14): each poll asks from the previous answer, so an outage of any length skips nothing. */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { RevocationList } from '../../src/request-stages/revocations.js';
import { until } from '../helpers/http.js';

let server: http.Server | undefined;

afterEach(() => {
  server?.close();
});

describe('revocation polling', () => {
  it('asks since the last answer (less an overlap), also after polls that failed', async () => {
    const asked: (string | null)[] = [];
    let failing = false;
    const revokedAt = new Date().toISOString();
    server = http.createServer((req, res) => {
      const since = new URL(req.url!, 'http://x').searchParams.get('since');
      asked.push(since);
      if (failing) {
        res.writeHead(503).end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ generatedAt: `2026-12-01T10:0${asked.length}:00.000Z`, items: asked.length === 4 ? [{ user: 'agent:late', revokedAt }] : [] }));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const list = new RevocationList();
    const stop = list.startPolling(`http://127.0.0.1:${(server.address() as { port: number }).port}`, undefined, createLogger('error'), 50);
    try {
      await until(() => asked.length >= 2, 5_000, 'two polls');
      failing = true;
      await until(() => asked.length >= 3, 5_000, 'a failed poll');
      failing = false;
      await until(() => list.isRevoked({ user: 'agent:late', groups: [], tokenId: 'x', issuedAt: Math.floor(Date.parse(revokedAt) / 1000), expiresAt: Math.floor(Date.parse(revokedAt) / 1000) + 60 }), 5_000, 'the revocation after the outage');
    } finally {
      stop();
    }
    expect(asked[0]).toBeNull();
    expect(asked[1]).toBe('2026-12-01T10:00:30.000Z'); // 10:01:00 less 30 s
    // The poll after the failed one still asks from the last answer that arrived.
    expect(asked[3]).toBe(asked[2]);
  });
});
