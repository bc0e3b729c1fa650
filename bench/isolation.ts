/** The isolation phase of npm run bench: small GETs beside one stalled stream. */
import https from 'node:https';
import tls from 'node:tls';
import type { Target } from './stack.js';

const percentile = (samples: number[], p: number) => [...samples].sort((a, b) => a - b)[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))]!;

function timedGet(url: string, agent: https.Agent, headers: Record<string, string>): Promise<number> {
  const startedAt = performance.now();
  return new Promise((resolve, reject) => {
    https
      .get(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - startedAt) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

/** Opens a port-forward-like upgrade to the echoing upstream, writes `bytes` and never reads: a stalled consumer. */
async function stalledStream(target: Target, ca: string, bytes: number): Promise<tls.TLSSocket> {
  const headers = await target.headers();
  const base = new URL(target.base);
  const socket = tls.connect({ host: base.hostname, port: Number(base.port), ca });
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  const headerLines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.write(
    `POST ${base.pathname.replace(/\/$/, '')}/api/v1/namespaces/bench/pods/stall/portforward HTTP/1.1\r\nHost: ${base.host}\r\n${headerLines}` +
      'Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n',
  );
  socket.write(Buffer.alloc(bytes, 's'));
  socket.pause();
  return socket;
}

/** p99 of 100 parallel GETs (5 rounds), without and then beside one stalled stream on the same path. */
export async function isolation(target: Target, ca: string): Promise<{ p99Ms: number; p99StalledMs: number }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 100, ca });
  const url = `${target.base}/api/v1/namespaces/bench/pods`;
  const rounds = async () => {
    const headers = await target.headers();
    const samples: number[] = [];
    for (let round = 0; round < 5; round++) samples.push(...(await Promise.all(Array.from({ length: 100 }, () => timedGet(url, agent, headers)))));
    return samples;
  };
  await rounds(); // warm-up: connections open
  const p99Ms = percentile(await rounds(), 99);
  const stalled = await stalledStream(target, ca, 8 * 1024 * 1024);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const p99StalledMs = percentile(await rounds(), 99);
  stalled.destroy();
  agent.destroy();
  return { p99Ms, p99StalledMs };
}

