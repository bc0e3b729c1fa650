/**
 * Audit records as JSON lines on stdout or in a file (rotating-file.ts).
 * Lines go out in groups, one write per turn of the event loop
 * (group-write.ts). A request's RequestReceived line is committed: the
 * request waits until the write holding it has completed, that is until
 * the kernel has it, so a kill -9 of the process loses no record of a
 * request it forwarded. fsync is not asked for: that guards against a
 * crash of the machine, at the cost of a disk flush per write. The same
 * choice as kube-apiserver's log backend, whose default
 * --audit-log-mode=blocking writes each event before the request goes on.
 * A record is pending until its write has completed. A write error breaks
 * the destination for good: the records it held, and any sent after, are
 * reported as dropped, and the sink stops taking requests (DESIGN §5:
 * block or fail, never carry on unaudited).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { type ChunkWriter, GroupWrite } from './group-write.js';
import { type Rotation, RotatingFile } from './rotating-file.js';
import type { Destination, DestinationEvents } from './sink.js';

export type { Rotation } from './rotating-file.js';

export async function openStreamDestination(file: string, rotation: Rotation, events: DestinationEvents): Promise<Destination> {
  if (file === '-') {
    // process.stdout writes to a file or a pipe synchronously on Linux; its callback says the write is done.
    const onError = (err: Error) => stdout.fail(err.message);
    const stdout = new StreamDestination('stdout', (chunk, done) => process.stdout.write(chunk, done), () => process.stdout.off('error', onError), events);
    process.stdout.on('error', onError);
    return stdout;
  }
  const absolute = path.resolve(file);
  let opened: RotatingFile;
  try {
    // A bad path fails the process before it serves, not at its first request.
    mkdirSync(path.dirname(absolute), { recursive: true });
    opened = new RotatingFile(absolute, rotation);
  } catch (err) {
    throw new Error(`cannot open audit file ${file}: ${(err as Error).message}`);
  }
  const writeToFile: ChunkWriter = (chunk, done) => {
    try {
      opened.append(chunk);
    } catch (err) {
      return done(err as Error);
    }
    done(null);
  };
  return new StreamDestination('file', writeToFile, () => opened.close(), events);
}

class StreamDestination implements Destination {
  pending = 0;
  broken: string | undefined;
  /** Drops are reported once per tick, not once per record. */
  private unreportedDrops = 0;
  private readonly lines: GroupWrite;
  private closed = false;

  constructor(
    readonly name: string,
    writeChunk: ChunkWriter,
    private readonly release: () => void,
    private readonly events: DestinationEvents,
  ) {
    this.lines = new GroupWrite(writeChunk, (count, err) => {
      this.pending -= count;
      if (!err) return this.events.delivered(count);
      this.broken ??= err.message;
      this.drop(count);
    });
  }

  send(line: string): void {
    if (this.broken !== undefined || this.closed) return this.drop();
    this.pending++;
    this.lines.send(line);
  }

  commit(line: string): Promise<void> {
    if (this.broken !== undefined || this.closed) {
      this.drop();
      return Promise.reject(new Error(this.broken ?? 'the audit trail is closed'));
    }
    this.pending++;
    return this.lines.write(line);
  }

  /** Breaks the destination: the stream said it failed. */
  fail(reason: string): void {
    this.broken ??= reason;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.lines.flush();
    this.closed = true;
    this.release();
  }

  private drop(count = 1): void {
    const reported = this.unreportedDrops > 0;
    this.unreportedDrops += count;
    if (reported) return;
    setImmediate(() => {
      this.events.dropped(this.unreportedDrops, 'write-failed', this.broken ?? 'the audit trail is closed');
      this.unreportedDrops = 0;
    });
  }
}
