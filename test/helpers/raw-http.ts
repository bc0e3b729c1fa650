/**
 * HTTP/1.1 written by hand on a TLS connection, for requests no HTTP client
 * would send: duplicate or folded headers, conflicting framing, odd request
 * targets. Node's own client normalises all of those away.
 */
import tls from 'node:tls';
import { expect } from 'vitest';
import { EXTRA_REQUEST_ID, EXTRA_TOKEN_ID, extraHeaderName } from '../../src/relay/impersonate.js';
import type { RecordedRequest } from '../fixtures/fake-apiserver.js';
import { RELAY_SA_TOKEN } from './stack.js';

export interface RawAnswer {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

export interface RawTarget {
  /** https://host:port of the listener. */
  url: string;
  ca: string;
  session?: Buffer;
  onSession?: (session: Buffer) => void;
}

/**
 * Sends `bytes` as they are and reads the answer: the status line and headers,
 * then the body up to its Content-Length, or until the server closes.
 * `headOnly` resolves as soon as the headers are in (an answer that would stream).
 */
export function sendRaw(target: RawTarget, bytes: string | Buffer, options: { headOnly?: boolean; timeoutMs?: number } = {}): Promise<RawAnswer> {
  const url = new URL(target.url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: target.ca, ...(target.session ? { session: target.session } : {}) }, () => socket.write(bytes));
    if (target.onSession) socket.once('session', target.onSession);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${options.timeoutMs ?? 10_000} ms: ${JSON.stringify(received.slice(0, 200))}`));
    }, options.timeoutMs ?? 10_000);
    let received = '';
    let parsed: { status: number; headers: Record<string, string>; bodyStart: number } | undefined;
    const finish = (answer: RawAnswer) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const tryFinish = (closed: boolean) => {
      if (!parsed) {
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        const [statusLine, ...lines] = received.slice(0, end).split('\r\n');
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine!);
        if (!status) {
          clearTimeout(timer);
          socket.destroy();
          reject(new Error(`not an HTTP answer: ${JSON.stringify(received.slice(0, 200))}`));
          return;
        }
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
        }
        parsed = { status: Number(status[1]), headers, bodyStart: end + 4 };
      }
      const body = received.slice(parsed.bodyStart);
      const length = parsed.headers['content-length'];
      if (options.headOnly || (length !== undefined && Buffer.byteLength(body, 'latin1') >= Number(length)) || closed || parsed.status === 101) {
        finish({ status: parsed.status, headers: parsed.headers, body: Buffer.from(body, 'latin1').toString('utf8') });
      }
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      tryFinish(false);
    });
    socket.on('end', () => tryFinish(true));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!parsed) reject(new Error(`closed before an answer: ${JSON.stringify(received.slice(0, 200))}`));
      else tryFinish(true);
    });
  });
}

/** Header names of a recorded request, in lower case, in the order received. */
function headerNames(seen: RecordedRequest): string[] {
  return seen.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
}

/**
 * The identity invariant (DESIGN §3.3) on one forwarded request: the relay's
 * credential, Impersonate-User, one Impersonate-Group per group, the two
 * extras, and nothing identity-bearing from the client.
 */
export function expectExactlyAgentIdentity(seen: RecordedRequest, user: string, groups: string[]): void {
  // As a proxy folding "_" into "-" would read them.
  const names = headerNames(seen).map((name) => name.replaceAll('_', '-'));
  const impersonation = names.filter((name) => name.startsWith('impersonate-')).sort();
  expect(impersonation).toEqual(['impersonate-user', ...groups.map(() => 'impersonate-group'), extraHeaderName(EXTRA_TOKEN_ID), extraHeaderName(EXTRA_REQUEST_ID)].sort());
  expect(names.filter((name) => name === 'authorization')).toHaveLength(1);
  expect(names.filter((name) => name.startsWith('x-remote-') || name.startsWith('proxy-') || name === 'forwarded' || name.startsWith('x-forwarded-') || name === 'x-real-ip')).toEqual([]);
  expect(seen.headers.authorization).toBe(`Bearer ${RELAY_SA_TOKEN}`);
  expect(seen.headers['impersonate-user']).toBe(user);
  const forwardedGroups = seen.rawHeaders.filter((_, i) => i % 2 === 1 && seen.rawHeaders[i - 1]!.toLowerCase() === 'impersonate-group');
  expect(forwardedGroups.sort()).toEqual([...groups].sort());
}
