/**
 * A worker's stdout and stderr reach the primary's as whole lines only.
 * Workers that shared the primary's descriptors would each write their
 * groups of audit lines (stdout) and log lines (stderr) with write(2)
 * calls of their own, and into a pipe (a container runtime's, kubectl
 * logs) a write larger than PIPE_BUF (4 KiB) may be split and interleaved
 * with another process's. So each worker writes into a pipe of its own and
 * the primary, the one writer of its stdout and stderr, copies whole lines.
 */
import type { Readable } from 'node:stream';

/** The sources waiting for each destination to drain: one 'drain' listener per destination, however many workers. */
const waiting = new Map<NodeJS.WritableStream, Set<Readable>>();

function resumeOnDrain(to: NodeJS.WritableStream, from: Readable): void {
  from.pause();
  let sources = waiting.get(to);
  if (!sources) {
    waiting.set(to, (sources = new Set()));
    to.once('drain', () => {
      waiting.delete(to);
      for (const source of sources!) source.resume();
    });
  }
  sources.add(from);
}

export function copyLines(from: Readable, to: NodeJS.WritableStream): void {
  let partial: Buffer[] = [];
  from.on('data', (chunk: Buffer) => {
    const end = chunk.lastIndexOf(0x0a) + 1;
    if (end === 0) {
      partial.push(chunk);
      return;
    }
    const lines = partial.length === 0 ? chunk.subarray(0, end) : Buffer.concat([...partial, chunk.subarray(0, end)]);
    partial = end < chunk.length ? [chunk.subarray(end)] : [];
    if (!to.write(lines)) resumeOnDrain(to, from);
  });
  // A worker that died mid-line: its last words, ended.
  from.on('end', () => {
    if (partial.length > 0) to.write(Buffer.concat([...partial, Buffer.from('\n')]));
    partial = [];
  });
}
