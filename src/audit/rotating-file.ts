/**
 * The audit file: JSON lines appended with synchronous write(2) calls on
 * one descriptor (mode 0600), rotated by size as logrotate names the
 * files (`audit.jsonl.1` the newest rotated one). Synchronous, because a
 * request waits for its RequestReceived line to be written: handing each
 * write to libuv's thread pool and back cost a third of the requests per
 * second of one client on a loaded machine, a write(2) of a few KiB into
 * the page cache costs microseconds. The price: a disk that stalls stalls
 * the relay, as it stalls kube-apiserver's requests in its blocking mode.
 * Rotation falls between lines, once a file has passed its size.
 */
import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export interface Rotation {
  /** Rotate past this many bytes; 0 = never. */
  maxBytes: number;
  /** Rotated files kept. */
  maxBackups: number;
}

export class RotatingFile {
  private fd: number;
  private size: number;

  /** Opens (creating it if need be) `file` for appending; throws what open(2) says. */
  constructor(
    private readonly file: string,
    private readonly rotation: Rotation,
  ) {
    this.fd = openSync(file, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
    if (this.rotation.maxBytes > 0 && this.size >= this.rotation.maxBytes) this.rotate();
  }

  /** Appends `chunk` (whole lines); throws what write(2) says (ENOSPC, EIO). */
  append(chunk: string): void {
    const { maxBytes } = this.rotation;
    const bytes = Buffer.from(chunk, 'utf8');
    if (maxBytes === 0 || this.size + bytes.length < maxBytes) return this.writeAll(bytes);
    let start = 0;
    while (start < bytes.length) {
      // The lines that take this file past its size, then the next file.
      let end = start;
      while (end < bytes.length && this.size + (end - start) < maxBytes) end = bytes.indexOf(0x0a, end) + 1 || bytes.length;
      this.writeAll(bytes.subarray(start, end));
      start = end;
      if (this.size >= maxBytes) this.rotate();
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  private writeAll(bytes: Buffer): void {
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(this.fd, bytes, offset);
    this.size += bytes.length;
  }

  private rotate(): void {
    closeSync(this.fd);
    const { maxBackups } = this.rotation;
    if (maxBackups === 0) rmSync(this.file, { force: true });
    for (let n = maxBackups - 1; n >= 1; n--) if (existsSync(`${this.file}.${n}`)) renameSync(`${this.file}.${n}`, `${this.file}.${n + 1}`);
    if (maxBackups > 0) renameSync(this.file, `${this.file}.1`);
    this.fd = openSync(this.file, 'a', 0o600);
    this.size = 0;
  }
}
