/**
 * The idle-watch phase of npm run bench: many watches held open, the
 * relay's memory and CPU, one event to all. Over HTTP/1.1 each watch is a
 * connection of its own (many small clients); over HTTP/2 they share
 * connections of up to 1 000 streams each, as client-go carries a client's
 * informers (and opens another connection at the server's stream limit).
 */
import http2 from 'node:http2';
import https from 'node:https';
import { processUsage, type Target } from './stack.js';

export type WatchProtocol = 'http/1.1' | 'h2';
/** The relay's (and kube-apiserver's) SETTINGS_MAX_CONCURRENT_STREAMS. */
const STREAMS_PER_CONNECTION = 1000;

export interface WatchFigures {
  protocol: WatchProtocol;
  watches: number;
  openSeconds: number;
  relayRssMiB: number;
  /** The relay's RSS before these watches were opened. */
  relayRssBeforeMiB: number;
  hubRssMiB?: number;
  idleCpuPercent: number;
  fanOutMs: number;
}

/** How many watches the upstream holds open. */
export async function upstreamWatches(upstream: Target, ca: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    https.get(`${upstream.base}/bench/watches`, { agent: false, ca }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  return (JSON.parse(text) as { open: number }).open;
}

/** Opens watches through `target`, each calling `onData` for what it receives; returns what closes them all. */
export type WatchOpener = (target: Target, ca: string, count: number, onData: () => void) => Promise<() => void>;

const overHttp1: WatchOpener = async (target, ca, count, onData) => {
  const agent = new https.Agent({ keepAlive: false, maxSockets: Infinity, maxCachedSessions: 1000, ca });
  const requests: { destroy(): void }[] = [];
  for (let first = 0; first < count; first += 250) {
    const headers = await target.headers(); // a fresh 60-second token per batch: opening them all takes a while
    await Promise.all(
      Array.from({ length: Math.min(250, count - first) }, () => new Promise<void>((resolve, reject) => {
        const req = https.get(`${target.base}/api/v1/namespaces/bench/pods?watch=1`, { agent, headers }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`watch: HTTP ${res.statusCode}`));
          res.on('data', onData);
          resolve();
        });
        req.on('error', reject);
        requests.push(req);
      })),
    );
  }
  return () => {
    for (const req of requests) req.destroy();
    agent.destroy();
  };
};

const overHttp2: WatchOpener = async (target, ca, count, onData) => {
  const sessions: http2.ClientHttp2Session[] = [];
  const base = new URL(target.base);
  for (let first = 0; first < count; first += 250) {
    const headers = await target.headers();
    if (first % STREAMS_PER_CONNECTION === 0) {
      const session = http2.connect(base.origin, { ca });
      await new Promise<void>((resolve, reject) => session.once('remoteSettings', () => resolve()).once('error', reject));
      session.on('error', () => undefined); // once open, its end is closeAll's, not an error of the run
      sessions.push(session);
    }
    const session = sessions.at(-1)!;
    await Promise.all(
      Array.from({ length: Math.min(250, count - first) }, () => new Promise<void>((resolve, reject) => {
        const stream = session.request({ ':path': `${base.pathname.replace(/\/$/, '')}/api/v1/namespaces/bench/pods?watch=1`, ...headers });
        stream.once('response', (answer) => {
          if (answer[':status'] !== 200) return reject(new Error(`watch: HTTP ${answer[':status']}`));
          stream.on('data', onData);
          stream.on('error', () => undefined);
          resolve();
        });
        stream.once('error', reject);
      })),
    );
  }
  return () => sessions.forEach((session) => session.destroy());
};

export const WATCH_OPENERS: Record<WatchProtocol, WatchOpener> = { 'http/1.1': overHttp1, h2: overHttp2 };

export async function idleWatches(target: Target, upstream: Target, ca: string, count: number, protocol: WatchProtocol, relayPid: number, hubPid?: number): Promise<WatchFigures> {
  let waitingForEvent: (() => void) | undefined;
  const relayRssBeforeMiB = processUsage(relayPid).rssMiB;
  const openedAt = performance.now();
  const closeAll = await WATCH_OPENERS[protocol](target, ca, count, () => waitingForEvent?.());
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

  closeAll();
  while ((await upstreamWatches(upstream, ca)) > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  return {
    protocol,
    watches: count,
    openSeconds,
    relayRssMiB: after.rssMiB,
    relayRssBeforeMiB,
    ...(hubPid ? { hubRssMiB: processUsage(hubPid).rssMiB } : {}),
    idleCpuPercent: (100 * (after.cpuSeconds - before.cpuSeconds)) / 5,
    fanOutMs,
  };
}

