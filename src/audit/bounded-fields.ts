/**
 * Bounds on what a client can make an audit record hold (issue 14). Every
 * field taken from the request is cut past its limit, with a visible
 * marker saying how much was cut, so that one request cannot write
 * megabytes of audit however long its User-Agent, path or query. The
 * limits sit well above anything kubectl sends: Kubernetes names are at
 * most 253 bytes (a DNS subdomain), namespaces and resources 63, so the
 * longest resource path is under 800 bytes; kubectl's User-Agent is under
 * 100 bytes, its Kubectl-Command under 64 and Kubectl-Session a UUID; a
 * label selector of 100 values of 63 bytes fits the query limit. The
 * relay's listener already refuses request heads over 32 KiB.
 */

export const FIELD_LIMITS = {
  /** Bytes of `path`: a /proxy/ subresource path may be longer than a resource path, never this long from kubectl. */
  path: 4096,
  /** Bytes of `query` (after tokens are redacted): label and field selectors. */
  query: 8192,
  userAgent: 1024,
  kubectlCommand: 256,
  kubectlSession: 256,
  /** Bytes of each of `namespace`, `resource`, `subresource`, `name`, `container`. */
  identifier: 512,
  /** Bytes of an exec `command`, all its arguments together. */
  command: 8192,
  /** Bytes of a port-forward's `ports`, all together. */
  ports: 1024,
} as const;

/**
 * `value` if it fits in `maxBytes` of UTF-8; otherwise its first
 * `maxBytes` (cut on a character boundary) and `…[truncated N bytes]`.
 */
export function truncated(value: string, maxBytes: number): string {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: short strings need no counting.
  if (value.length * 3 <= maxBytes) return value;
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= maxBytes) return value;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return `${bytes.subarray(0, end).toString('utf8')}…[truncated ${bytes.length - end} bytes]`;
}

/**
 * The leading values that fit in `maxBytes` together; the first one that
 * does not is cut (when something of it fits) and the rest are named by
 * count, so an exec command stays readable up to the limit.
 */
export function truncatedList(values: readonly string[], maxBytes: number): string[] {
  const kept: string[] = [];
  let left = maxBytes;
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    const size = Buffer.byteLength(value, 'utf8');
    if (size <= left) {
      kept.push(value);
      left -= size;
      continue;
    }
    if (left > 0) kept.push(truncated(value, left));
    const omitted = values.length - kept.length;
    if (omitted > 0) kept.push(`…[truncated ${omitted} more]`);
    return kept;
  }
  return kept;
}
