/**
 * Group commit (issue 14): the lines offered in one turn of the event loop
 * are written together, one write(2) on the file descriptor, and every
 * request that waits for one of them goes on when that write completes.
 * So a request waits for one write however many arrive with it, and a
 * burst of requests costs one write, not one each. Lines nobody waits for
 * (ResponseComplete records) join the same writes, which keeps each
 * request's lines in order: they wait for the next group of waited-for
 * lines, or DEFERRED_LINE_DELAY_MS at most, so that one client's requests
 * one after another cost one write each, not two.
 */

/** How long a line nobody waits for may wait for company before it is written alone. */
export const DEFERRED_LINE_DELAY_MS = 10;

/** Writes `chunk` (whole lines) and calls `done` once the write has completed. */
export type ChunkWriter = (chunk: string, done: (err?: Error | null) => void) => void;

interface Group {
  readonly lines: string[];
  readonly written: Promise<void>;
  settle(err: Error | null | undefined): void;
}

export class GroupWrite {
  private group: Group | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly writeChunk: ChunkWriter,
    /** Called when a group's write has completed, with the number of its lines and the error, if any. */
    private readonly onWritten: (lines: number, err: Error | null | undefined) => void,
  ) {}

  /** Resolves once `line` (without its newline) has been written; rejects if that write failed. */
  write(line: string): Promise<void> {
    const group = this.add(line);
    // setImmediate runs after the I/O callbacks of this turn: the requests that arrived with this one join it.
    this.immediate ??= setImmediate(() => this.writeGroup());
    return group.written;
  }

  /** Writes `line` with the next group, waiting for nothing. */
  send(line: string): void {
    this.add(line);
    this.timer ??= setTimeout(() => this.writeGroup(), DEFERRED_LINE_DELAY_MS);
  }

  /** Writes what is waiting now (closing). */
  flush(): void {
    this.writeGroup();
  }

  private add(line: string): Group {
    const group = (this.group ??= this.newGroup());
    group.lines.push(line);
    return group;
  }

  private newGroup(): Group {
    let settle!: Group['settle'];
    const written = new Promise<void>((resolve, reject) => {
      settle = (err) => (err ? reject(err) : resolve());
    });
    // A group of lines nobody waits for must not fail as an unhandled rejection: onWritten reports it.
    written.catch(() => undefined);
    return { lines: [], written, settle };
  }

  private writeGroup(): void {
    const group = this.group;
    this.group = undefined;
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
    this.immediate = undefined;
    this.timer = undefined;
    if (!group) return;
    this.writeChunk(`${group.lines.join('\n')}\n`, (err) => {
      this.onWritten(group.lines.length, err);
      group.settle(err);
    });
  }
}
