/**
 * Issue 13: every failed dial to the hub says why at warn, a cause that
 * repeats is summarised instead of flooding the log, and the tunnel coming
 * back says how long it was down.
 */
import { mkdtemp } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ReconnectBackoff } from '../../src/backoff.js';
import { createLogger } from '../../src/log.js';
import { TunnelConnector } from '../../src/tunnel/connector.js';
import { type DialTarget, DialFailureLog, dialErrorFailure, formatDuration, httpStatusFailure, tunnelDroppedFailure } from '../../src/tunnel/dial-failures.js';
import { issueCertificate, loadOrCreateCa } from '../../src/tls/local-ca.js';
import { until } from '../helpers/http.js';

const TARGET: DialTarget = { address: 'hub.example:443', trust: 'the system roots', caGiven: false, handshakeTimeoutMs: 10_000 };

function systemError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields);
}

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

function capturedLog(level: 'debug' | 'info' = 'info') {
  const lines: LogLine[] = [];
  return { lines, log: createLogger(level, {}, (line) => lines.push(JSON.parse(line) as LogLine)) };
}

describe('the cause of a failed dial', () => {
  it('names the address for a refused connection', () => {
    const failure = dialErrorFailure(systemError('connect ECONNREFUSED 127.0.0.1:8443', { code: 'ECONNREFUSED', address: '127.0.0.1', port: 8443 }), TARGET);
    expect(failure).toMatchObject({ kind: 'connection-refused', cause: 'connection refused by 127.0.0.1:8443' });
  });

  it('names the name that does not resolve', () => {
    const failure = dialErrorFailure(systemError('getaddrinfo ENOTFOUND hub.example', { code: 'ENOTFOUND', hostname: 'hub.example' }), TARGET);
    expect(failure).toMatchObject({ kind: 'dns', cause: 'the name hub.example does not resolve (ENOTFOUND)' });
  });

  it('says a TLS failure with its code and the trust used, and that --issuer-ca-file sets it', () => {
    const failure = dialErrorFailure(systemError('self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), TARGET);
    expect(failure.kind).toBe('tls');
    expect(failure.cause).toBe(
      'TLS with hub.example:443 failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain) trusting the system roots; --issuer-ca-file sets the CA the relay trusts for the hub',
    );
    const altname = dialErrorFailure(systemError("Hostname/IP does not match certificate's altnames", { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), TARGET);
    expect(altname.kind).toBe('tls');
    expect(altname.cause).not.toContain('--issuer-ca-file sets');
    const wrongCa = dialErrorFailure(systemError('unable to verify the first certificate', { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), {
      ...TARGET,
      trust: 'the CA file /etc/kube-relay/ca.crt (--issuer-ca-file)',
      caGiven: true,
    });
    expect(wrongCa.cause).toContain("trusting the CA file /etc/kube-relay/ca.crt (--issuer-ca-file); is that the CA that signed the hub's certificate?");
  });

  it('says the handshake timed out (ws gives that error no code)', () => {
    expect(dialErrorFailure(new Error('Opening handshake has timed out'), TARGET)).toMatchObject({
      kind: 'handshake-timeout',
      cause: 'hub.example:443 did not complete the WebSocket handshake within 10 s',
    });
  });

  it('gives the hub’s status and message for an HTTP answer, bounded', () => {
    expect(httpStatusFailure(503, 'the hub is starting')).toMatchObject({ kind: 'http-status', cause: 'the hub answered HTTP 503: the hub is starting', fields: { status: 503 } });
    expect(httpStatusFailure(502, 'x'.repeat(10_000)).cause.length).toBeLessThan(400);
  });

  it('says how an open tunnel dropped', () => {
    expect(tunnelDroppedFailure(1006, '').cause).toBe('the connection ended without a WebSocket close (1006)');
    expect(tunnelDroppedFailure(1011, 'internal error').cause).toBe('the hub closed it (WebSocket close 1011: internal error)');
    expect(tunnelDroppedFailure(1006, '', 'the hub stopped answering pings')).toMatchObject({ kind: 'tunnel-dropped', cause: 'the hub stopped answering pings' });
  });

  it('keeps any other network error with its code', () => {
    expect(dialErrorFailure(systemError('read ECONNRESET', { code: 'ECONNRESET' }), TARGET)).toMatchObject({ kind: 'network', cause: 'cannot connect to hub.example:443 (ECONNRESET: read ECONNRESET)' });
  });
});

describe('the log of an outage', () => {
  const refused = dialErrorFailure(systemError('connect ECONNREFUSED 127.0.0.1:8443', { code: 'ECONNREFUSED', address: '127.0.0.1', port: 8443 }), TARGET);
  const tls = dialErrorFailure(systemError('unable to verify the first certificate', { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), TARGET);

  it('warns at the first failure, then summarises the same cause at most once a minute with a count, and says how long the tunnel was down', () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const { lines, log } = capturedLog();
    const outage = new DialFailureLog(log, 'https://hub.example', { now: () => now });
    outage.failed(refused, 4_000);
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', msg: 'cannot reach the hub: connection refused by 127.0.0.1:8443', reason: 'connection-refused', retryInMs: 4_000 })]);
    // Eleven more failures over 55 s: none logged at info or above.
    for (let i = 0; i < 11; i++) {
      now += 5_000;
      outage.failed(refused, 5_000);
    }
    expect(lines).toHaveLength(1);
    now += 5_000;
    outage.failed(refused, 5_000);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 'warn', msg: 'still cannot reach the hub: connection refused by 127.0.0.1:8443 (13 attempts since 2030-01-01T00:00:00.000Z)', attempts: 13 });
    now += 30_000;
    outage.failed(refused, 5_000);
    expect(lines).toHaveLength(2);
    now += 45_000;
    outage.connected({});
    expect(lines[2]).toMatchObject({ level: 'info', msg: 'tunnel connected after 2 min 15 s without one (14 failed dials)', downMs: 135_000, failedDials: 14 });
  });

  it('warns at once when the cause changes, and logs a plain "tunnel connected" when there was no outage', () => {
    const now = 0;
    const { lines, log } = capturedLog();
    const outage = new DialFailureLog(log, 'https://hub.example', { now: () => now });
    outage.connected({ replica: 'a' });
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'tunnel connected', replica: 'a' });
    outage.failed(tunnelDroppedFailure(1006, ''), 100);
    outage.failed(refused, 100);
    outage.failed(tls, 100);
    outage.failed(refused, 100);
    expect(lines.slice(1).map((line) => `${line.level} ${line.msg}`)).toEqual([
      'warn tunnel disconnected: the connection ended without a WebSocket close (1006)',
      'warn cannot reach the hub: connection refused by 127.0.0.1:8443',
      `warn cannot reach the hub: ${tls.cause}`,
    ]);
  });

  it('still shows every attempt at debug', () => {
    const { lines, log } = capturedLog('debug');
    const outage = new DialFailureLog(log, 'https://hub.example', { now: () => 0 });
    for (let i = 0; i < 3; i++) outage.failed(refused, 100);
    expect(lines.map((line) => line.level)).toEqual(['warn', 'debug', 'debug']);
  });

  it('formats durations for people', () => {
    expect([850, 42_000, 185_000, 7_800_000].map(formatDuration)).toEqual(['850 ms', '42 s', '3 min 5 s', '2 h 10 min']);
  });
});

describe('a connector dialling a hub it cannot use', () => {
  let stopConnector: (() => Promise<void>) | undefined;
  let closeServer: (() => void) | undefined;

  afterEach(async () => {
    await stopConnector?.();
    closeServer?.();
    stopConnector = closeServer = undefined;
  });

  async function dial(server: http.Server, scheme: 'http' | 'https', hubCa?: string, hubCaDescription?: string) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closeServer = () => server.close();
    const { lines, log } = capturedLog();
    const connector = new TunnelConnector({
      hubUrl: `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`,
      cluster: 'prod-eu',
      connectorKey: 'krl_cluster_never-logged-secret',
      ...(hubCa ? { hubCa } : {}),
      ...(hubCaDescription ? { hubCaDescription } : {}),
      onStream: () => undefined,
      log,
      metrics: new Registry(),
      backoff: () => new ReconnectBackoff({ initialMs: 20, maxMs: 40 }),
    });
    connector.start();
    stopConnector = () => connector.stop(100);
    return lines;
  }

  async function tlsServer(): Promise<{ server: https.Server; otherCaPem: string }> {
    const hubCa = loadOrCreateCa(await mkdtemp(path.join(tmpdir(), 'kube-relay-dial-hub-ca-')));
    const other = loadOrCreateCa(await mkdtemp(path.join(tmpdir(), 'kube-relay-dial-other-ca-')));
    const cert = issueCertificate(hubCa, { commonName: 'hub', sans: ['127.0.0.1'], usage: 'server' });
    return { server: https.createServer({ cert: cert.certPem, key: cert.keyPem }), otherCaPem: other.certPem };
  }

  const warnings = (lines: LogLine[]) => lines.filter((line) => line.level === 'warn');

  it('warns that TLS failed trusting the system roots when no CA was given', async () => {
    const { server } = await tlsServer();
    const lines = await dial(server, 'https');
    await until(() => warnings(lines).length > 0, 10_000, 'a warning');
    expect(warnings(lines)[0]!.msg).toMatch(/^cannot reach the hub: TLS with 127\.0\.0\.1:\d+ failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY): .+\) trusting the system roots; --issuer-ca-file sets/);
    expect(JSON.stringify(lines)).not.toContain('krl_cluster_never-logged-secret');
  });

  it('warns that TLS failed trusting the CA file it was given when that is the wrong CA', async () => {
    const { server, otherCaPem } = await tlsServer();
    const lines = await dial(server, 'https', otherCaPem, 'the CA file /etc/kube-relay/ca.crt (--issuer-ca-file)');
    await until(() => warnings(lines).length > 0, 10_000, 'a warning');
    expect(warnings(lines)[0]!.msg).toContain('trusting the CA file /etc/kube-relay/ca.crt (--issuer-ca-file)');
  });

  it('warns with the hub’s status and message when it answers the upgrade with an error, once however often it is retried', async () => {
    const server = http.createServer((_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', message: 'the hub is starting' })));
    let upgrades = 0;
    server.on('upgrade', (_req, socket) => {
      upgrades++;
      // The relay drops the connection once it has read the answer; a reset then must not be an uncaught error here.
      socket.on('error', () => socket.destroy());
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"kind":"Status","message":"the hub is starting"}');
    });
    const lines = await dial(server, 'http');
    await until(() => upgrades >= 5, 10_000, 'five dials');
    expect(warnings(lines).map((line) => line.msg)).toEqual(['cannot reach the hub: the hub answered HTTP 503: the hub is starting']);
    expect(warnings(lines)[0]).toMatchObject({ reason: 'http-status', status: 503 });
  });
});
