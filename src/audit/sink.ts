/**
 * Where audit records go: a file of JSON lines (`--audit-file`) or stdout.
 * A record is never dropped silently: a write error is counted in
 * `kube_relay_audit_records_dropped_total` and logged, and the file is
 * opened at start-up so a bad path fails the relay before it serves.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { Counter } from 'prom-client';
import type { Logger } from '../log.js';
import type { AuditRecord } from './record.js';

export interface AuditSink {
  write(record: AuditRecord): void;
  close(): Promise<void>;
}

export interface AuditCounters {
  written: Counter;
  dropped: Counter;
}

export async function openAuditSink(file: string | undefined, counters: AuditCounters, log: Logger): Promise<AuditSink> {
  let stream: NodeJS.WritableStream;
  let owned: WriteStream | undefined;
  if (file === undefined || file === '-') {
    stream = process.stdout;
  } else {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    owned = createWriteStream(file, { flags: 'a', mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      owned!.once('open', () => resolve());
      owned!.once('error', (err) => reject(new Error(`cannot open audit file ${file}: ${err.message}`)));
    });
    stream = owned;
  }
  let failed = false;
  stream.on('error', (err: Error) => {
    if (!failed) log.error('audit sink failed; records are being dropped', { error: err.message });
    failed = true;
  });
  return {
    write(record) {
      if (failed) {
        counters.dropped.inc();
        return;
      }
      stream.write(JSON.stringify(record) + '\n');
      counters.written.inc();
    },
    close() {
      return new Promise((resolve) => (owned ? owned.end(() => resolve()) : resolve()));
    },
  };
}
