/**
 * A client connection's plain requests through the hub reuse the tunnel
 * streams its earlier requests finished with (issue 21), as a keep-alive
 * connection would, and only that connection's: each stream carries one
 * client's address to the relay's audit, and closes with the connection.
 */
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/stack.js';

const SEQUENTIAL = 20;

describe('tunnel streams of a keep-alive client connection', () => {
  let stack: Stack;
  let token: string;

  beforeAll(async () => {
    stack = await startStack({ mode: 'tunnel', issuer: { adminListen: { host: '127.0.0.1', port: 0 } } });
    token = await stack.token();
  });
  afterAll(async () => {
    await stack?.close();
  });

  const openStreams = async () => {
    const text = await (await fetch(`http://127.0.0.1:${stack.issuer.adminPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('kube_relay_tunnel_open_streams{cluster="prod-eu"}'));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  const get = (agent: https.Agent, path: string) =>
    new Promise<{ status: number; localPort: number }>((resolve, reject) => {
      const req = https.get(`${stack.relay.url.replace(/\/$/, '')}${path}`, { agent, ca: stack.caPem, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, localPort: req.socket!.localPort! }));
      });
      req.on('error', reject);
    });

  it(`carries ${SEQUENTIAL} sequential requests of one connection on one tunnel stream, closed with the connection`, async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    for (let i = 0; i < SEQUENTIAL; i++) {
      const answer = await get(agent, '/api/v1/namespaces/default/pods');
      expect(answer.status).toBe(200);
      ports.add(answer.localPort);
      expect(await openStreams()).toBe(1); // the one stream, idle between requests and reused
    }
    expect(ports.size).toBe(1); // one client connection throughout
    agent.destroy();
    await until(async () => (await openStreams()) === 0, 10_000, 'the tunnel stream to close with the client connection');
  });

  it("gives each client connection streams of its own: two connections taking turns hold two streams, and the relay audits the client's address", async () => {
    const first = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const second = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers = [];
      for (let i = 0; i < 3; i++) {
        answers.push(await get(first, `/api/v1/namespaces/first-${i}/pods`));
        answers.push(await get(second, `/api/v1/namespaces/second-${i}/pods`));
      }
      expect(await openStreams()).toBe(2);
      for (let i = 0; i < 3; i++) {
        for (const [name, agentAnswer] of [['first', answers[2 * i]!], ['second', answers[2 * i + 1]!]] as const) {
          const record = await stack.awaitRecord(`/api/v1/namespaces/${name}-${i}/pods`);
          expect(record.sourceIp).toMatch(/127\.0\.0\.1$/);
          expect(record.status).toBe(200);
          expect(agentAnswer.status).toBe(200);
        }
      }
    } finally {
      first.destroy();
      second.destroy();
    }
    await until(async () => (await openStreams()) === 0, 10_000, 'both tunnel streams to close with their connections');
  });
});
