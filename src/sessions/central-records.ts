/**
 * What the issuer takes into its central audit (DESIGN §12), checked before
 * it is stored: a relay is trusted with its own cluster's records only, and
 * each record must have the shape the relay writes (src/audit/record.ts),
 * within the bounds the relay itself keeps (bounded-fields.ts). A summary
 * of unauthenticated refusals has no request id: it is stored under one
 * derived from its content, so a batch sent twice still stores it once.
 */
import { createHash } from 'node:crypto';
import { DECISIONS } from '../audit/record.js';
import type { IncomingAuditRecord } from '../issuer/store/audit-sql.js';

/** 500 records a batch (the relay's default) of a few KiB at most each, with room: a larger batch gets 413 and is split. */
export const AUDIT_BATCH_BODY_LIMIT = 8 * 1024 * 1024;
export const MAX_RECORDS_PER_BATCH = 2_000;
/** No record the relay writes comes near this (its bounded fields total under 30 KiB). */
const MAX_RECORD_BYTES = 64 * 1024;
const MAX_ID_LENGTH = 128;

export class CentralRecordError extends Error {
  constructor(
    readonly status: 403 | 422,
    message: string,
  ) {
    super(message);
  }
}

function refuse(message: string): never {
  throw new CentralRecordError(422, message);
}

const isString = (value: unknown, max = 8192): value is string => typeof value === 'string' && value.length <= max;
const optionalString = (value: unknown, max = 8192) => value === undefined || isString(value, max);

/** The records of one batch from `cluster`'s relay; refuses the whole batch if one is malformed or names another cluster. */
export function readAuditBatch(body: unknown, cluster: string): IncomingAuditRecord[] {
  if (!Array.isArray(body)) refuse('the body must be a JSON array of audit records');
  if (body.length > MAX_RECORDS_PER_BATCH) refuse(`a batch holds at most ${MAX_RECORDS_PER_BATCH} records; send smaller batches`);
  return body.map((entry, index) => {
    const record = centralRecord(entry, index);
    if (record.cluster !== cluster) {
      throw new CentralRecordError(403, `record ${index} is of cluster "${String(record.cluster).slice(0, 63)}": this connector key may send records of cluster "${cluster}" only`);
    }
    return record;
  });
}

/** One record as the issuer stores it; `index` names it in refusals. */
export function centralRecord(entry: unknown, index: number): IncomingAuditRecord {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) refuse(`record ${index} is not a JSON object`);
  const record = entry as Record<string, unknown>;
  if (JSON.stringify(record).length > MAX_RECORD_BYTES) refuse(`record ${index} is larger than ${MAX_RECORD_BYTES} bytes`);
  if (!isString(record.time) || Number.isNaN(Date.parse(record.time))) refuse(`record ${index} has no RFC 3339 "time"`);
  if (record.kind === 'summary') return summaryRecord(record, index);
  if (record.stage !== 'ResponseComplete') refuse(`record ${index} is not a completed request's record (stage "ResponseComplete")`);
  if (!isString(record.requestId, MAX_ID_LENGTH) || record.requestId === '') refuse(`record ${index} has no "requestId"`);
  if (!isString(record.cluster, 63)) refuse(`record ${index} has no "cluster"`);
  if (record.user !== null && !isString(record.user, 1024)) refuse(`record ${index}: "user" must be a string or null`);
  if (typeof record.durationMs !== 'number' || !Number.isFinite(record.durationMs) || record.durationMs < 0) refuse(`record ${index}: "durationMs" must be a number of milliseconds`);
  if (!Number.isInteger(record.status)) refuse(`record ${index}: "status" must be an HTTP status`);
  if (!isString(record.decision) || !(DECISIONS as readonly string[]).includes(record.decision)) refuse(`record ${index}: "decision" must be one of ${DECISIONS.join(', ')}`);
  for (const field of ['verb', 'namespace', 'name'] as const) if (!isString(record[field], 512)) refuse(`record ${index}: "${field}" must be a string`);
  for (const field of ['kubectlSession', 'kubectlCommand', 'proxySession', 'container'] as const) if (!optionalString(record[field], 512)) refuse(`record ${index}: "${field}" must be a string`);
  if (record.command !== undefined && (!Array.isArray(record.command) || record.command.some((arg) => typeof arg !== 'string'))) refuse(`record ${index}: "command" must be a list of strings`);
  return record as IncomingAuditRecord;
}

function summaryRecord(record: Record<string, unknown>, index: number): IncomingAuditRecord {
  if (!isString(record.cluster, 63)) refuse(`summary record ${index} names no cluster`);
  return {
    ...record,
    time: record.time as string,
    requestId: `summary-${createHash('sha256').update(JSON.stringify(record)).digest('base64url').slice(0, 32)}`,
    durationMs: 0,
    user: null,
    verb: '',
    decision: 'denied-by-relay',
    status: 0,
    namespace: '',
    name: '',
  };
}
