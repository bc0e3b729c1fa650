/**
 * The watch-rounds phase of npm run bench (issue 14, item 13): rounds of idle
 * watches opened and closed through one direct relay, the relay's memory
 * measured after each round's open and after its close. A relay that
 * retains something per watch grows from round to round; one that does not
 * returns to about the same figure after every close.
 *
 * The relay runs as the real CLI in its own process, started with
 * `--inspect=127.0.0.1:0` so that this process can, over the DevTools
 * protocol, force a full garbage collection before each measurement and
 * read `process.memoryUsage()` (JS heap, external and ArrayBuffer memory)
 * beside the RSS from /proc; and, when asked, write heap snapshots to
 * compare object counts between rounds. Nothing in the relay is changed
 * for this.
 *
 * The verdict is on RSS: after the last close it must be at most 10 % above
 * after the first close. The watches go over HTTP/2 by default, sharing
 * connections as client-go's do (--round-protocol http/1.1: a connection
 * each, as below).
 *
 * What it showed over HTTP/1.1 (issue 14): the JS heap is back to the same 15-16 MiB after
 * every close and external memory stays flat; what grows is native memory
 * that glibc's malloc keeps once closed TLS connections (Node's TLSWrap, its
 * buffers and OpenSSL's state, on both legs) have freed it. Each round
 * touches more of the address space the first round's peak left behind, so
 * RSS climbs towards that high-water mark and levels off there;
 * `--malloc-trim` (malloc_trim(0)) gives the free part back to within a few
 * MiB of the first round. A bare Node TLS proxy grows the same way, and
 * under jemalloc with background purging RSS returns to one figure after
 * every close. The environment reaches every process of the run
 * (MALLOC_ARENA_MAX, LD_PRELOAD, MALLOC_CONF), to compare allocators.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { upstreamWatches, WATCH_OPENERS, type WatchProtocol } from './idle-watches.js';

/** RSS after the last close may exceed RSS after the first close by at most this share. */
export const ROUND_GROWTH_LIMIT = 0.1;
export interface WatchTarget {
  base: string;
  headers: () => Promise<Record<string, string>>;
}

export interface MemoryFigures {
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
}

export interface RoundFigures {
  round: number;
  open: MemoryFigures;
  closed: MemoryFigures;
}

export interface WatchRoundsResult {
  rounds: RoundFigures[];
  /** After the last close and malloc_trim(0), when asked for and gdb could call it. */
  trimmed?: MemoryFigures;
  watches: number;
  /** RSS after the last close over RSS after the first close, less one. */
  growth: number;
  pass: boolean;
}

/** A DevTools protocol session with a Node process started with --inspect. */
export class Inspector {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (result: unknown) => void; reject: (err: Error) => void }>();
  private readonly listeners = new Map<string, (params: Record<string, unknown>) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: Record<string, unknown> };
      if (message.id !== undefined) {
        const waiter = this.waiting.get(message.id);
        this.waiting.delete(message.id);
        if (message.error) waiter?.reject(new Error(message.error.message));
        else waiter?.resolve(message.result);
      } else if (message.method) this.listeners.get(message.method)?.(message.params ?? {});
    });
  }

  static async connect(url: string): Promise<Inspector> {
    const socket = new WebSocket(url, { maxPayload: 1024 * 1024 * 1024 });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    return new Inspector(socket);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (result: unknown) => void, reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** A full garbage collection, then process.memoryUsage() in the inspected process. */
  async memoryAfterGc(pid: number): Promise<MemoryFigures> {
    // Twice: what the first frees through weak callbacks (sockets' native handles) can let the second free more.
    await this.send('HeapProfiler.collectGarbage');
    await this.send('HeapProfiler.collectGarbage');
    const { result } = await this.send<{ result: { value: string } }>('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const usage = JSON.parse(result.value) as { heapUsed: number; external: number; arrayBuffers: number };
    const mib = (bytes: number) => bytes / 1024 / 1024;
    return { rssMiB: rssMiB(pid), heapUsedMiB: mib(usage.heapUsed), externalMiB: mib(usage.external), arrayBuffersMiB: mib(usage.arrayBuffers) };
  }

  async writeHeapSnapshot(file: string): Promise<void> {
    const chunks: string[] = [];
    this.listeners.set('HeapProfiler.addHeapSnapshotChunk', (params) => chunks.push(params.chunk as string));
    await this.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    this.listeners.delete('HeapProfiler.addHeapSnapshotChunk');
    writeFileSync(file, chunks.join(''));
  }

  close(): void {
    this.socket.close();
  }
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** A Prometheus gauge or counter (no labels) from the relay's admin listener. */
async function metric(adminPort: number, name: string): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`watch-rounds: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Opens `count` idle watches through `target`; resolves, with what closes them, once the upstream holds them all. */
async function openWatches(protocol: WatchProtocol, target: WatchTarget, upstream: WatchTarget, ca: string, count: number): Promise<() => void> {
  const closeAll = await WATCH_OPENERS[protocol](target, ca, count, () => undefined);
  await until(async () => (await upstreamWatches(upstream, ca)) >= count, 'the upstream to hold every watch');
  return closeAll;
}

export interface WatchRoundsOptions {
  target: WatchTarget;
  upstream: WatchTarget;
  ca: string;
  rounds: number;
  watches: number;
  /** h2: the watches share connections of 1 000 streams, as client-go's; http/1.1: a connection each. */
  protocol: WatchProtocol;
  relayPid: number;
  adminPort: number;
  inspector: Inspector;
  /**
   * Write a heap snapshot after each round's open and after its close here. Writing one costs the relay
   * memory of its own (malloc keeps it too): the RSS figures of such a run are not the verdict's.
   */
  heapSnapshotDir?: string | undefined;
  /**
   * After the verdict, ask glibc to give back the free memory it holds (malloc_trim(0), called in the
   * relay through gdb) and measure again: what remains is what the relay still uses.
   */
  mallocTrim?: boolean | undefined;
  log: (line: string) => void;
}

export async function watchRounds(options: WatchRoundsOptions): Promise<WatchRoundsResult> {
  const { target, upstream, ca, inspector, relayPid, adminPort, log } = options;
  const baselineConnections = await metric(adminPort, 'kube_relay_client_connections');
  const fmt = (value: number) => value.toFixed(1);
  const row = (figures: MemoryFigures) => `${fmt(figures.rssMiB)} | ${fmt(figures.heapUsedMiB)} | ${fmt(figures.externalMiB)} | ${fmt(figures.arrayBuffersMiB)}`;
  log('| round | state | relay RSS MiB | heap used MiB | external MiB | array buffers MiB |');
  log('|---|---|---|---|---|---|');
  const before = await inspector.memoryAfterGc(relayPid);
  log(`| 0 | before | ${row(before)} |`);
  const rounds: RoundFigures[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const closeAll = await openWatches(options.protocol, target, upstream, ca, options.watches);
    const open = await inspector.memoryAfterGc(relayPid);
    log(`| ${round} | ${options.watches} open | ${row(open)} |`);
    if (options.heapSnapshotDir) await inspector.writeHeapSnapshot(path.join(options.heapSnapshotDir, `relay-round-${round}-open.heapsnapshot`));
    closeAll();
    await until(async () => (await upstreamWatches(upstream, ca)) === 0, 'the upstream to see every watch end');
    await until(async () => (await metric(adminPort, 'kube_relay_client_connections')) <= baselineConnections, 'the relay to see every client connection close');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const closed = await inspector.memoryAfterGc(relayPid);
    log(`| ${round} | closed | ${row(closed)} |`);
    if (options.heapSnapshotDir) await inspector.writeHeapSnapshot(path.join(options.heapSnapshotDir, `relay-round-${round}-closed.heapsnapshot`));
    rounds.push({ round, open, closed });
  }
  const growth = rounds.at(-1)!.closed.rssMiB / rounds[0]!.closed.rssMiB - 1;
  let trimmed: MemoryFigures | undefined;
  if (options.mallocTrim) {
    try {
      execFileSync('gdb', ['-p', String(relayPid), '-batch', '-ex', 'call (int)malloc_trim(0)'], { stdio: 'ignore', timeout: 60_000 });
      trimmed = await inspector.memoryAfterGc(relayPid);
      log(`| ${options.rounds} | closed, then malloc_trim(0) | ${row(trimmed)} |`);
    } catch (err) {
      log(`(malloc_trim(0) through gdb failed: ${(err as Error).message.split('\n')[0]}; gdb must be installed and allowed to attach)`);
    }
  }
  return { rounds, ...(trimmed ? { trimmed } : {}), watches: options.watches, growth, pass: growth <= ROUND_GROWTH_LIMIT };
}
