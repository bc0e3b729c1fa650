/**
 * A dry-run agent's DELETE (DESIGN §13). kube-apiserver reads a delete's
 * options from its body when it has one and then ignores the query
 * (apiserver/pkg/endpoints/handlers/delete.go: DeleteResource and
 * DeleteCollection decode DeleteOptions from the body, else from the
 * query), and kubectl always sends one (propagationPolicy): `dryRun=All` in
 * the query alone would delete for real. So such a body is read (it is a
 * small DeleteOptions), given `"dryRun": ["All"]`, and sent in place of the
 * client's; one that is not a JSON object is refused, never forwarded as it is.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { type ApiRequest, requestHasBody } from '../http-messages.js';
import type { AgentIdentity } from '../identity.js';
import { RelayRefusal } from '../request-stages/errors.js';

/** DeleteOptions are a few hundred bytes; preconditions and all, far under this. */
export const MAX_DELETE_OPTIONS_BYTES = 64 * 1024;

/** A DELETE that carries a body (a length above 0, chunked, or HTTP/2 DATA frames), whose options would override the query's dryRun. */
export function isDeleteWithBody(req: ApiRequest): boolean {
  return req.method === 'DELETE' && requestHasBody(req);
}

function refuse(message: string, identity: AgentIdentity): never {
  throw new RelayRefusal('policy-dry-run', `kube-relay policy: the agent runs in dry-run mode; ${message}`, identity, { policyRule: 'dry-run' });
}

/** The body read whole and rewritten with dryRun: ["All"]; `headers` (the upstream set) get its new length. */
export async function dryRunDeleteOptions(req: ApiRequest, headers: OutgoingHttpHeaders, identity: AgentIdentity): Promise<Buffer> {
  const type = String(req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && type !== '*/*') refuse(`a delete with a ${type.slice(0, 60)} body cannot be made a dry run (send JSON DeleteOptions)`, identity);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_DELETE_OPTIONS_BYTES) refuse(`a delete body over ${MAX_DELETE_OPTIONS_BYTES / 1024} KiB is not DeleteOptions`, identity);
    chunks.push(chunk);
  }
  let options: unknown;
  try {
    options = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    refuse('the delete body is not JSON DeleteOptions', identity);
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) refuse('the delete body is not JSON DeleteOptions', identity);
  const body = Buffer.from(JSON.stringify({ ...(options as Record<string, unknown>), dryRun: ['All'] }));
  delete headers['transfer-encoding'];
  headers['content-length'] = String(body.length);
  return body;
}
