/**
 * Audit records as JSON lines on stdout or in a file (mode 0600), the file
 * rotated by size when asked (`audit.jsonl.1` is the newest rotated file,
 * as logrotate names them; rotating-file-stream does the rotating). A
 * record is pending until its write has completed. A write error breaks the
 * destination for good: the records it held, and any sent after, are
 * reported as dropped, and the sink stops taking requests (DESIGN §5: block
 * or fail, never carry on unaudited).
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { createStream } from 'rotating-file-stream';
import type { Destination, DestinationEvents } from './sink.js';

export interface Rotation {
  /** Rotate past this many bytes; 0 = never. */
  maxBytes: number;
  /** Rotated files kept. */
  maxBackups: number;
}

export async function openStreamDestination(file: string, rotation: Rotation, events: DestinationEvents): Promise<Destination> {
  if (file === '-') return new StreamDestination('stdout', process.stdout, events, false);
  const absolute = path.resolve(file);
  mkdirSync(path.dirname(absolute), { recursive: true });
  const stream: Writable =
    rotation.maxBytes > 0
      ? createStream(path.basename(absolute), { path: path.dirname(absolute), size: `${rotation.maxBytes}B`, rotate: rotation.maxBackups, mode: 0o600 })
      : createWriteStream(absolute, { flags: 'a', mode: 0o600 });
  // A bad path fails the process before it serves, not at its first request.
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (err) => reject(new Error(`cannot open audit file ${file}: ${err.message}`)));
  });
  return new StreamDestination('file', stream, events, true);
}

class StreamDestination implements Destination {
  pending = 0;
  broken: string | undefined;
  /** Drops are reported once per tick, not once per record. */
  private unreportedDrops = 0;
  private readonly onError = (err: Error) => {
    this.broken ??= err.message;
  };

  constructor(
    readonly name: string,
    private readonly stream: Writable,
    private readonly events: DestinationEvents,
    private readonly owned: boolean,
  ) {
    stream.on('error', this.onError);
  }

  send(line: string): void {
    if (this.broken !== undefined) return this.drop();
    this.pending++;
    this.stream.write(`${line}\n`, (err) => {
      this.pending--;
      if (!err) return this.events.delivered(1);
      this.broken ??= err.message;
      this.drop();
    });
  }

  async close(deadlineMs: number): Promise<void> {
    if (!this.owned) {
      this.stream.off('error', this.onError);
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, deadlineMs);
      this.stream.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private drop(): void {
    if (this.unreportedDrops++ > 0) return;
    setImmediate(() => {
      this.events.dropped(this.unreportedDrops, 'write-failed', this.broken ?? 'unknown error');
      this.unreportedDrops = 0;
    });
  }
}
