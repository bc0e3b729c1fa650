/** A worker's output reaches the primary's as whole lines (src/relay/workers/line-pipe.ts). */
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { copyLines } from '../../src/relay/workers/line-pipe.js';

function collector() {
  const writes: string[] = [];
  const to = new Writable({
    write(chunk: Buffer, _encoding, done) {
      writes.push(chunk.toString());
      done();
    },
  });
  return { to, writes };
}

describe('copyLines', () => {
  it('writes only whole lines, holding a line cut between chunks until its end arrives', async () => {
    const from = new PassThrough();
    const { to, writes } = collector();
    copyLines(from, to);
    from.write('{"a":1}\n{"b":');
    from.write('2}');
    from.write('\n{"c":3}\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual(['{"a":1}\n', '{"b":2}\n{"c":3}\n']);
    expect(writes.every((write) => write.endsWith('\n'))).toBe(true);
  });

  it('ends the last line of a worker that died in the middle of it', async () => {
    const from = new PassThrough();
    const { to, writes } = collector();
    copyLines(from, to);
    from.end('{"a":1}\n{"cut');
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes.join('')).toBe('{"a":1}\n{"cut\n');
  });
});

describe('copyLines into a destination that is full', () => {
  it('pauses every source until the destination drains, with one listener however many sources', async () => {
    const written: string[] = [];
    let finish: (() => void) | undefined;
    const to = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, done) {
        written.push(chunk.toString());
        finish = done;
      },
    });
    const sources = Array.from({ length: 20 }, () => new PassThrough());
    for (const from of sources) copyLines(from, to);
    for (const from of sources) from.write('line\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(sources.every((from) => from.isPaused())).toBe(true);
    expect(to.listenerCount('drain')).toBe(1);
    while (finish) {
      const done = finish;
      finish = undefined;
      done();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(sources.some((from) => from.isPaused())).toBe(false);
    expect(written).toHaveLength(20);
  });
});
