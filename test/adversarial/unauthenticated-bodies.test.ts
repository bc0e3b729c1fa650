/**
 * Bodies nobody agreed to read (issue 14): the relay and the hub answered
 * `100 Continue` before checking the token and then read and discarded
 * about 1 GB in a few seconds; `/v1/token` read 200 MiB with a wrong key.
 * A request refused before it is admitted gets its final status without a
 * 100 Continue, and its body is not read past a small limit: the client
 * sees the refusal while it is still sending, and the connection closes.
 *
 * The counting client writes as fast as the server takes the bytes and
 * counts what its TLS socket accepted, which is what the server read plus
 * what the kernel buffers on the way hold (a few MiB on loopback).
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../helpers/stack.js';

const BODY_BYTES = 200 * 1024 * 1024;
/** Well above the socket buffers between client and server, far below the 200 MiB sent. */
const MAX_ACCEPTED_BYTES = 16 * 1024 * 1024;
/** The client gives up when the server has taken nothing for this long after answering (it stopped reading). */
const STALL_MS = 3_000;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

interface Upload {
  /** Everything the server sent, as latin1. */
  received: string;
  /** Body bytes the client's socket accepted. */
  accepted: number;
}

/**
 * Sends `head` (which declares BODY_BYTES of body) and then the body as fast
 * as the socket takes it; with `waitForContinue`, the body only after a
 * `100 Continue`, as a client that sent `Expect: 100-continue` must.
 */
function upload(url: string, ca: string, head: string, waitForContinue: boolean): Promise<Upload> {
  const target = new URL(url);
  return new Promise((resolve) => {
    let received = '';
    let accepted = 0;
    let sending = false;
    let done = false;
    let stallTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(stallTimer);
      socket.destroy();
      resolve({ received, accepted });
    };
    const answered = () => /HTTP\/1\.1 [2-5]\d\d /.test(received);
    const armStallTimer = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => answered() && finish(), STALL_MS);
    };
    const send = () => {
      if (sending) return;
      sending = true;
      const writeMore = () => {
        while (!done && accepted + CHUNK.length <= BODY_BYTES) {
          const flushed = socket.write(CHUNK, (err) => {
            if (err) return;
            accepted += CHUNK.length;
            armStallTimer();
          });
          if (!flushed) {
            socket.once('drain', writeMore);
            return;
          }
        }
      };
      writeMore();
    };
    const socket = tls.connect({ host: target.hostname, port: Number(target.port), ca }, () => {
      socket.write(head);
      if (!waitForContinue) send();
      armStallTimer();
    });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (waitForContinue && received.startsWith('HTTP/1.1 100 ')) send();
      if (answered()) armStallTimer();
    });
    // A server that closes while the body is still coming resets the connection: the answer came before.
    socket.on('error', finish);
    socket.on('close', finish);
    // A bound for a server that neither answers nor reads: the assertions below then say what happened.
    setTimeout(finish, 120_000).unref();
  });
}

function expectRefusedUnread(result: Upload, status: number): void {
  expect(result.received).not.toMatch(/^HTTP\/1\.1 100 /);
  expect(result.received.slice(0, 200)).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
  expect(result.accepted).toBeLessThan(MAX_ACCEPTED_BYTES);
}

describe.each(['direct', 'tunnel'] as const)('bodies of refused requests, %s mode', (mode) => {
  let stack: Stack;
  let token: string;
  const who = mode === 'direct' ? 'the relay' : 'the hub';

  beforeAll(async () => {
    stack = await startStack({ mode });
    token = await stack.token();
  });

  afterAll(async () => {
    await stack?.close();
  });

  const apiHead = (authorization: string, extra: string[] = []) => {
    const url = new URL(stack.relay.url);
    return [
      `POST ${url.pathname.replace(/\/$/, '')}/api/v1/namespaces/default/configmaps HTTP/1.1`,
      `Host: ${url.host}`,
      `Authorization: ${authorization}`,
      'Content-Type: application/json',
      `Content-Length: ${BODY_BYTES}`,
      ...extra,
      '',
      '',
    ].join('\r\n');
  };

  it.each([false, true])(`${who} answers a bad token 401 without 100 Continue and reads little of a 200 MiB upload (Expect: 100-continue: %s)`, async (expectContinue) => {
    const before = stack.fake.requests.length;
    const result = await upload(stack.relay.url, stack.caPem, apiHead('Bearer not-a-token', expectContinue ? ['Expect: 100-continue'] : []), expectContinue);
    expectRefusedUnread(result, 401);
    if (expectContinue) expect(result.accepted).toBe(0);
    expect(stack.fake.requests.length).toBe(before);
  }, 150_000);

  it.each([false, true])('/v1/token answers a wrong API key 401 without 100 Continue and reads little of a 200 MiB body (Expect: 100-continue: %s)', async (expectContinue) => {
    const url = new URL(stack.issuer.url);
    const head = [
      'POST /v1/token HTTP/1.1',
      `Host: ${url.host}`,
      `Authorization: Bearer krl_agent_${'W'.repeat(43)}`,
      'Content-Type: application/json',
      `Content-Length: ${BODY_BYTES}`,
      ...(expectContinue ? ['Expect: 100-continue'] : []),
      '',
      '',
    ].join('\r\n');
    const result = await upload(stack.issuer.url, stack.caPem, head, expectContinue);
    expectRefusedUnread(result, 401);
    if (expectContinue) expect(result.accepted).toBe(0);
  }, 150_000);

  it('still answers 100 Continue to an admitted request, and forwards its body', async () => {
    const url = new URL(stack.relay.url);
    const body = '{"kind":"ConfigMap","metadata":{"name":"continued"}}';
    const head = [
      `POST ${url.pathname.replace(/\/$/, '')}/api/v1/namespaces/continued/configmaps HTTP/1.1`,
      `Host: ${url.host}`,
      `Authorization: Bearer ${token}`,
      'Content-Type: application/json',
      `Content-Length: ${body.length}`,
      'Expect: 100-continue',
      'Connection: close',
      '',
      '',
    ].join('\r\n');
    const received = await new Promise<string>((resolve, reject) => {
      let text = '';
      const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.caPem }, () => socket.write(head));
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        const first = text === '';
        text += chunk;
        if (first && text.startsWith('HTTP/1.1 100 ')) socket.write(body);
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
    expect(received).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    const seen = stack.fake.requests.find((r) => r.url === '/api/v1/namespaces/continued/configmaps');
    expect(seen?.body.toString()).toBe(body);
  }, 30_000);

  if (mode === 'direct') {
    it('answers an authenticated request it refuses (an Impersonate-User header) 403 without 100 Continue, and reads little of its body', async () => {
      const result = await upload(stack.relay.url, stack.caPem, apiHead(`Bearer ${token}`, ['Impersonate-User: system:admin', 'Expect: 100-continue']), true);
      expectRefusedUnread(result, 403);
      const unexpected = await upload(stack.relay.url, stack.caPem, apiHead(`Bearer ${token}`, ['Impersonate-User: system:admin']), false);
      expectRefusedUnread(unexpected, 403);
    }, 150_000);
  }
});
