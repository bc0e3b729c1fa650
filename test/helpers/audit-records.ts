/**
 * Central audit data for tests of sessions and `/v1/audit`: records as a relay sends them
 * (src/audit/record.ts), put in the store the way the issuer's ingest does.
 */
import type { IncomingAuditRecord } from '../../src/issuer/store/audit-sql.js';
import { openStore } from '../../src/issuer/store.js';

let counter = 0;

/** A completed request of `agent` (null: one that authenticated as no agent) on `cluster` that began `atMs`. */
export function auditRecord(agent: string | null, cluster: string, atMs: number, fields: Partial<IncomingAuditRecord> = {}): IncomingAuditRecord {
  const durationMs = fields.durationMs ?? 20;
  return {
    requestId: `req-${++counter}`,
    stage: 'ResponseComplete',
    time: new Date(atMs + durationMs).toISOString(),
    durationMs,
    cluster,
    mode: 'tunnel',
    user: agent === null ? null : `agent:${agent}`,
    method: 'GET',
    verb: 'get',
    decision: 'allowed',
    status: 200,
    namespace: 'default',
    resource: 'pods',
    name: '',
    ...fields,
  };
}

/** Stores each cluster's batch in the store of `dataDir` (closed again, for an issuer to open). */
export async function ingestInto(dataDir: string, batches: { cluster: { name: string; org: string }; records: IncomingAuditRecord[] }[]): Promise<void> {
  const store = await openStore({ dataDir });
  try {
    for (const batch of batches) await store.ingestAudit(batch.cluster, batch.records);
  } finally {
    await store.close();
  }
}
