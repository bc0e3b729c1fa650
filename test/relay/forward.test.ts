import http, { type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Forwarder, type ForwardHooks } from '../../src/relay/forward.js';
import type { Upstream } from '../../src/relay/upstream.js';
import { issueCertificate, type LocalCa, loadOrCreateCa } from '../../src/tls/local-ca.js';

const listen = (server: http.Server) => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
const noHooks: ForwardHooks = { onResponse: () => undefined, onBytes: () => undefined, onUpgraded: () => undefined, onError: () => undefined };

describe('forwarding to the API server', () => {
  let ca: LocalCa;
  let serving: { certPem: string; keyPem: string };
  beforeAll(() => {
    ca = loadOrCreateCa(mkdtempSync(path.join(tmpdir(), 'kube-relay-forward-')));
    serving = issueCertificate(ca, { commonName: 'upstream', sans: ['127.0.0.1'], usage: 'server' });
  });
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    cleanups.splice(0).forEach((cleanup) => cleanup());
  });

  // Issue 14: with ca (and cert/key) in the agent's options, tls.connect built a TLS context of its own for each
  // connection (OpenSSL's SSL_CTX, the CA parsed again), native memory the allocator kept after the watches closed.
  it('opens every upstream connection with the one TLS context it built at start', async () => {
    const requests = 5;
    const connections = new Set<Socket>();
    const held: ServerResponse[] = [];
    // Each answer waits until every request has arrived, so none can reuse another's connection.
    const upstreamServer = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      connections.add(req.socket);
      held.push(res);
      if (held.length === requests) held.forEach((answer) => answer.end('ok'));
    });
    const upstreamPort = await listen(upstreamServer);
    const upstream: Upstream = {
      server: new URL(`https://127.0.0.1:${upstreamPort}`),
      tls: { ca: ca.certPem, rejectUnauthorized: true },
      authorization: () => 'Bearer relay',
      description: 'test upstream',
    };
    const forwarder = new Forwarder(upstream);
    const relay = http.createServer((req, res) => void forwarder.forwardRequest(req, res, { authorization: 'Bearer relay' }, noHooks, { longRunning: false }));
    const relayPort = await listen(relay);
    cleanups.push(() => {
      forwarder.close();
      relay.close();
      upstreamServer.close();
    });

    const createSecureContext = vi.spyOn(tls, 'createSecureContext');
    const bodies = await Promise.all(
      Array.from({ length: requests }, () => new Promise<string>((resolve, reject) => {
        http.get(`http://127.0.0.1:${relayPort}/api/v1/namespaces/default/pods`, { agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve(body));
        }).on('error', reject);
      })),
    );

    expect(bodies).toEqual(Array(requests).fill('ok'));
    expect(connections.size).toBe(requests);
    expect(createSecureContext).not.toHaveBeenCalled();
  });

  it("presents the relay's client certificate from that context when it has one", async () => {
    const client = issueCertificate(ca, { commonName: 'kube-relay', usage: 'client' });
    const upstreamServer = https.createServer({ cert: serving.certPem, key: serving.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      res.end(String((req.socket as tls.TLSSocket).getPeerCertificate().subject?.CN));
    });
    const upstreamPort = await listen(upstreamServer);
    const forwarder = new Forwarder({
      server: new URL(`https://127.0.0.1:${upstreamPort}`),
      tls: { ca: ca.certPem, cert: client.certPem, key: client.keyPem, rejectUnauthorized: true },
      authorization: () => undefined,
      description: 'test upstream',
    });
    const relay = http.createServer((req, res) => void forwarder.forwardRequest(req, res, {}, noHooks, { longRunning: false }));
    const relayPort = await listen(relay);
    cleanups.push(() => {
      forwarder.close();
      relay.close();
      upstreamServer.close();
    });

    const body = await new Promise<string>((resolve, reject) => {
      http.get(`http://127.0.0.1:${relayPort}/api`, { agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });

    expect(body).toBe('kube-relay');
  });
});
