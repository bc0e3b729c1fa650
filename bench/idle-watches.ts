/** The idle-watch phase of npm run bench: many watches held open, the relay's memory and CPU, one event to all. */
import type { ClientRequest } from 'node:http';
import https from 'node:https';
import { processUsage, type Target } from './stack.js';

export interface WatchFigures {
  watches: number;
  openSeconds: number;
  relayRssMiB: number;
  hubRssMiB?: number;
  idleCpuPercent: number;
  fanOutMs: number;
}

async function upstreamWatches(upstream: Target, ca: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    https.get(`${upstream.base}/bench/watches`, { agent: false, ca }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  return (JSON.parse(text) as { open: number }).open;
}

export async function idleWatches(target: Target, upstream: Target, ca: string, count: number, relayPid: number, hubPid?: number): Promise<WatchFigures> {
  const agent = new https.Agent({ keepAlive: false, maxSockets: Infinity, maxCachedSessions: 1000, ca });
  const requests: ClientRequest[] = [];
  let waitingForEvent: (() => void) | undefined;
  const openedAt = performance.now();
  for (let first = 0; first < count; first += 250) {
    const headers = await target.headers(); // a fresh 60-second token per batch: opening them all takes a while
    await Promise.all(
      Array.from({ length: Math.min(250, count - first) }, () => new Promise<void>((resolve, reject) => {
        const req = https.get(`${target.base}/api/v1/namespaces/bench/pods?watch=1`, { agent, headers }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`watch: HTTP ${res.statusCode}`));
          res.on('data', () => waitingForEvent?.());
          resolve();
        });
        req.on('error', reject);
        requests.push(req);
      })),
    );
  }
  const openSeconds = (performance.now() - openedAt) / 1000;
  while ((await upstreamWatches(upstream, ca)) < count) await new Promise((resolve) => setTimeout(resolve, 200));

  const before = processUsage(relayPid);
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const after = processUsage(relayPid);

  let delivered = 0;
  const allDelivered = new Promise<void>((resolve) => {
    waitingForEvent = () => {
      if (++delivered === count) resolve();
    };
  });
  const sentAt = performance.now();
  await new Promise<void>((resolve, reject) => {
    const req = https.request(`${upstream.base}/bench/event`, { method: 'POST', agent: false, ca }, (res) => res.resume().on('end', resolve));
    req.on('error', reject);
    req.end();
  });
  await allDelivered;
  const fanOutMs = performance.now() - sentAt;

  for (const req of requests) req.destroy();
  agent.destroy();
  while ((await upstreamWatches(upstream, ca)) > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  return {
    watches: count,
    openSeconds,
    relayRssMiB: after.rssMiB,
    ...(hubPid ? { hubRssMiB: processUsage(hubPid).rssMiB } : {}),
    idleCpuPercent: (100 * (after.cpuSeconds - before.cpuSeconds)) / 5,
    fanOutMs,
  };
}

