/**
 * The request target must reach the API server byte for byte, or not at all
 * (DESIGN §3.4). Targets that a proxy, an HTTP library or the API server
 * might normalise into another path are refused instead of rewritten:
 * absolute-form targets, empty and dot segments (plain or percent-encoded),
 * encoded slashes and backslashes. kubectl and client-go never send them.
 */
import { RelayRefusal } from './errors.js';

const SUSPICIOUS_ENCODINGS = /%(2f|5c|2e|00)/i;

export function checkRequestTarget(target: string | undefined): void {
  if (!target || !target.startsWith('/')) {
    throw new RelayRefusal('bad-request-target', 'the request target must be an absolute path (origin-form)');
  }
  const queryStart = target.indexOf('?');
  const path = queryStart === -1 ? target : target.slice(0, queryStart);
  const refuse = (why: string) => {
    throw new RelayRefusal('bad-request-target', `the request path ${why}; send the canonical path instead`);
  };
  if (path.includes('\\')) refuse('contains a backslash');
  if (SUSPICIOUS_ENCODINGS.test(path)) refuse('contains an encoded slash, backslash, dot or NUL');
  // Every segment after the leading "/" must be non-empty, except a trailing slash ("/apis/" is fine).
  const segments = path.slice(1).split('/');
  segments.forEach((segment, index) => {
    if (segment === '.' || segment === '..') refuse('contains a dot segment');
    if (segment === '' && index !== segments.length - 1) refuse('contains an empty segment ("//")');
  });
}
