/**
 * The audit sink (DESIGN §5): file rotation, the webhook's batches and
 * retries, and the rule that a sink which cannot keep up blocks or fails new
 * requests instead of losing records.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { GroupWrite } from '../../src/audit/group-write.js';
import type { AuditRecord, ReceivedRecord } from '../../src/audit/record.js';
import { type AuditConfig, type AuditSink, AuditUnavailableError, openAuditSink } from '../../src/audit/sink.js';
import { ReconnectBackoff } from '../../src/backoff.js';
import { createLogger } from '../../src/log.js';
import { until } from '../helpers/http.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'kube-relay-audit-'));
const quickRetries = () => new ReconnectBackoff({ initialMs: 10, maxMs: 40 });

function record(n: number): AuditRecord {
  return {
    time: new Date().toISOString(),
    requestId: `request-${n}`,
    stage: 'ResponseComplete',
    cluster: 'prod-eu',
    mode: 'direct',
    user: 'agent:deployer',
    groups: ['acme/sre'],
    tokenId: `jti-${n}`,
    sourceIp: '127.0.0.1',
    userAgent: 'kubectl',
    method: 'GET',
    path: '/api/v1/namespaces/default/pods',
    query: '',
    verb: 'list',
    namespace: 'default',
    resource: 'pods',
    subresource: '',
    name: '',
    status: 200,
    decision: 'allowed',
    durationMs: 1,
    bytesIn: 0,
    bytesOut: 10,
  };
}

function received(n: number): ReceivedRecord {
  const { status: _status, decision: _decision, durationMs: _durationMs, bytesIn: _bytesIn, bytesOut: _bytesOut, ...fields } = record(n);
  return { ...fields, stage: 'RequestReceived' };
}

/** A log collector on loopback: it keeps every batch it accepts and answers as `answer` says. */
interface Receiver {
  url: string;
  batches: AuditRecord[][];
  authorizations: (string | undefined)[];
  answer: (batch: AuditRecord[]) => number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const receiver = { batches: [], authorizations: [], answer: () => 200 } as unknown as Receiver;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const batch = JSON.parse(body) as AuditRecord[];
      const status = receiver.answer(batch);
      if (status < 300) {
        receiver.batches.push(batch);
        receiver.authorizations.push(req.headers.authorization);
      }
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/audit`;
  receiver.close = () => new Promise((resolve) => server.close(() => resolve()));
  return receiver;
}

/** A port nothing listens on. */
async function deadUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/audit`;
}

const open: (AuditSink | Receiver)[] = [];
afterEach(async () => {
  for (const thing of open.splice(0)) await thing.close();
});

async function sink(config: AuditConfig, logLines: string[] = []) {
  const metrics = new Registry();
  const opened = await openAuditSink(config, metrics, createLogger('info', {}, (line) => logLines.push(line)));
  open.push(opened);
  const metric = async (name: string, labels: string) => Number(new RegExp(`${name}\\{${labels}\\} (\\d+)`).exec(await metrics.metrics())?.[1] ?? 0);
  return { sink: opened, metric };
}

describe('the file destination', () => {
  it('rotates by size into numbered files, keeps the number asked for, mode 0600, every line whole', async () => {
    const dir = tmp();
    const file = path.join(dir, 'audit.jsonl');
    const { sink: audit, metric } = await sink({ file, fileMaxBytes: 2048, fileMaxBackups: 2 });
    for (let n = 0; n < 60; n++) audit.write(record(n));
    await until(async () => (await metric('kube_relay_audit_records_total', 'sink="file"')) === 60, 5_000, 'every record written');
    await audit.close();
    open.length = 0;
    expect(readdirSync(dir).sort()).toEqual(['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
    const kept = ['audit.jsonl.2', 'audit.jsonl.1', 'audit.jsonl'].flatMap((name) => {
      const full = path.join(dir, name);
      expect(statSync(full).mode & 0o777).toBe(0o600);
      expect(statSync(full).size).toBeLessThanOrEqual(2048 + 600);
      return readFileSync(full, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => (JSON.parse(line) as AuditRecord).requestId);
    });
    // The newest records survive, in order, none torn across files.
    expect(kept.at(-1)).toBe('request-59');
    expect(kept).toEqual(kept.map((_, i) => `request-${60 - kept.length + i}`));
  });

  it('a file that cannot be written breaks the sink: records counted as dropped and logged, new requests held or refused', async () => {
    const lines: string[] = [];
    const { sink: audit, metric } = await sink({ file: '/dev/full', whenFull: 'fail' }, lines);
    expect(audit.unavailable).toBeUndefined();
    audit.write(record(1));
    await until(() => audit.unavailable !== undefined, 3_000, 'the write error');
    expect(audit.unavailable).toMatch(/audit file is broken: .*ENOSPC/);
    await expect(audit.room()).rejects.toBeInstanceOf(AuditUnavailableError);
    await until(async () => (await metric('kube_relay_audit_records_dropped_total', 'sink="file",reason="write-failed"')) === 1, 3_000, 'the drop counted');
    expect(lines.some((line) => line.includes('audit records were not delivered') && line.includes('ENOSPC'))).toBe(true);
    expect(await metric('kube_relay_audit_full_total', 'action="refused"')).toBe(1);
  });

  it('resolves a RequestReceived record only once it is in the file (a completed write), and writes the records of one tick together', async () => {
    const file = path.join(tmp(), 'audit.jsonl');
    const { sink: audit } = await sink({ file });
    await audit.received(received(0));
    // Read at once, with nothing in between: the line is where a kill -9 of this process cannot take it.
    expect(readFileSync(file, 'utf8')).toContain('"requestId":"request-0","stage":"RequestReceived"');
    await Promise.all([1, 2, 3, 4, 5].map((n) => audit.received(received(n))));
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(6);
  });

  it('fails a RequestReceived record the file cannot take, so its request is not forwarded', async () => {
    const { sink: audit } = await sink({ file: '/dev/full', whenFull: 'fail' });
    await expect(audit.received(received(1))).rejects.toThrow(/ENOSPC/);
    await expect(audit.received(received(2))).rejects.toThrow(/ENOSPC/);
  });

  it('GroupWrite: the lines offered in one turn of the event loop go in one write, resolved together, lines nobody waits for included', async () => {
    const writes: string[] = [];
    const group = new GroupWrite((chunk, done) => {
      writes.push(chunk);
      setTimeout(done, 5);
    }, () => undefined);
    group.send('completed');
    await Promise.all(['a', 'b', 'c'].map((line) => group.write(line)));
    await group.write('d');
    expect(writes).toEqual(['completed\na\nb\nc\n', 'd\n']);
  });

  it('refuses a path it cannot open before anything is served', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'not-a-dir'), '');
    await expect(openAuditSink({ file: path.join(dir, 'not-a-dir', 'audit.jsonl') }, new Registry(), createLogger('error'))).rejects.toThrow(/not-a-dir/);
  });
});

describe('the webhook destination', () => {
  it('posts JSON arrays of at most batchSize records, in order, with the token file re-read for every batch', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    const tokenFile = path.join(tmp(), 'token');
    writeFileSync(tokenFile, 'first\n');
    const { sink: audit } = await sink({ webhook: { url: receiver.url, tokenFile, batchSize: 3, batchWaitMs: 20 } });
    for (let n = 0; n < 7; n++) audit.write(record(n));
    await until(() => receiver.batches.flat().length === 7, 3_000, 'seven records');
    expect(receiver.batches.map((batch) => batch.length)).toEqual([3, 3, 1]);
    expect(receiver.batches.flat().map((r) => r.requestId)).toEqual([0, 1, 2, 3, 4, 5, 6].map((n) => `request-${n}`));
    expect(receiver.authorizations[0]).toBe('Bearer first');
    writeFileSync(tokenFile, 'rotated\n');
    audit.write(record(7));
    await until(() => receiver.batches.length === 4, 3_000, 'the next batch');
    expect(receiver.authorizations[3]).toBe('Bearer rotated');
  });

  it('sends a batch again after 503s and dropped connections, delivering each record once', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    let refusals = 3;
    receiver.answer = () => (refusals-- > 0 ? 503 : 200);
    const { sink: audit, metric } = await sink({ webhook: { url: receiver.url, batchWaitMs: 10, backoff: quickRetries() } });
    for (let n = 0; n < 5; n++) audit.write(record(n));
    await until(() => receiver.batches.flat().length === 5, 5_000, 'the records after the retries');
    expect(receiver.batches.flat().map((r) => r.requestId)).toEqual([0, 1, 2, 3, 4].map((n) => `request-${n}`));
    await until(async () => (await metric('kube_relay_audit_records_total', 'sink="webhook"')) === 5, 3_000, 'five counted as delivered');
    expect(audit.unavailable).toBeUndefined();
  });

  it('splits a batch the receiver finds too large (413), and reports one it refuses for its content (400) as dropped', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    receiver.answer = (batch) => (batch.length > 2 ? 413 : batch.some((r) => r.requestId === 'request-6') ? 400 : 200);
    const lines: string[] = [];
    const { sink: audit, metric } = await sink({ webhook: { url: receiver.url, batchSize: 8, batchWaitMs: 10, backoff: quickRetries() } }, lines);
    for (let n = 0; n < 8; n++) audit.write(record(n));
    await until(async () => (await metric('kube_relay_audit_records_dropped_total', 'sink="webhook",reason="rejected"')) === 2, 5_000, 'the refused pair');
    expect(receiver.batches.flat().map((r) => r.requestId)).toEqual([0, 1, 2, 3, 4, 5].map((n) => `request-${n}`));
    expect(await metric('kube_relay_audit_records_total', 'sink="webhook"')).toBe(6);
    expect(lines.some((line) => line.includes('audit records were not delivered') && line.includes('400'))).toBe(true);
  });

  it('takes a RequestReceived record into its queue at once, even while the receiver is down (it cannot promise more)', async () => {
    const { sink: audit } = await sink({ webhook: { url: await deadUrl(), batchWaitMs: 10, backoff: quickRetries() }, closeDeadlineMs: 100 });
    await audit.received(received(1));
    expect(audit.unavailable).toBeUndefined();
  });

  it('reports what it could not deliver by shutdown as dropped, never silently', async () => {
    const lines: string[] = [];
    const { sink: audit, metric } = await sink({ webhook: { url: await deadUrl(), batchWaitMs: 10, backoff: quickRetries() }, closeDeadlineMs: 300 }, lines);
    for (let n = 0; n < 4; n++) audit.write(record(n));
    await audit.close();
    open.length = 0;
    expect(await metric('kube_relay_audit_records_dropped_total', 'sink="webhook",reason="undelivered-at-shutdown"')).toBe(4);
    expect(lines.some((line) => line.includes('undelivered-at-shutdown') && line.includes('ECONNREFUSED'))).toBe(true);
  });
});

describe('a destination that cannot keep up (DESIGN §5: block or fail, by configuration)', () => {
  it('fail: once the buffer is full, new requests are refused until it drains; no record is ever dropped', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    let down = true;
    receiver.answer = () => (down ? 503 : 200);
    const { sink: audit, metric } = await sink({ webhook: { url: receiver.url, batchWaitMs: 10, backoff: quickRetries() }, whenFull: 'fail', bufferRecords: 5 });
    for (let n = 0; n < 5; n++) {
      await audit.room();
      audit.write(record(n));
    }
    expect(audit.unavailable).toMatch(/audit webhook holds 5 undelivered records/);
    await expect(audit.room()).rejects.toThrow(AuditUnavailableError);
    // A request already admitted still gets its record, over the bound.
    audit.write(record(5));
    down = false;
    await until(() => audit.unavailable === undefined, 5_000, 'the buffer to drain');
    await expect(audit.room()).resolves.toBeUndefined();
    await until(() => receiver.batches.flat().length === 6, 3_000, 'all six records');
    expect(await metric('kube_relay_audit_full_total', 'action="refused"')).toBe(1);
  });

  it('block: a new request waits while the buffer is full and goes on once there is room', async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    let down = true;
    receiver.answer = () => (down ? 503 : 200);
    const { sink: audit, metric } = await sink({ webhook: { url: receiver.url, batchWaitMs: 10, backoff: quickRetries() }, whenFull: 'block', bufferRecords: 3 });
    for (let n = 0; n < 3; n++) audit.write(record(n));
    let admitted = false;
    const waiting = audit.room().then(() => (admitted = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(admitted).toBe(false);
    down = false;
    await waiting;
    expect(admitted).toBe(true);
    expect(await metric('kube_relay_audit_full_total', 'action="blocked"')).toBe(1);
  });

  it('writeIfRoom (the hub’s refusals) counts instead of growing a full buffer', async () => {
    const { sink: audit, metric } = await sink({ webhook: { url: await deadUrl(), batchWaitMs: 10, backoff: quickRetries() }, bufferRecords: 2, closeDeadlineMs: 100 });
    for (let n = 0; n < 5; n++) audit.writeIfRoom(record(n));
    expect(audit.unavailable).toMatch(/holds 2 undelivered/);
    expect(await metric('kube_relay_audit_records_dropped_total', 'sink="all",reason="full"')).toBe(3);
  });
});
