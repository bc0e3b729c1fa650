import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { auditedRequest, auditRecord, redactQuery } from '../../src/audit/record.js';
import { TOKEN_QUERY_PARAMETERS } from '../../src/request-stages/authenticate.js';

describe('redactQuery: no token survives in an audited query string', () => {
  it.each([
    ['access_token=eyJa.eyJb.c', 'access_token=redacted'],
    ['watch=1&token=secret&labelSelector=app%3Dweb', 'watch=1&token=redacted&labelSelector=app%3Dweb'],
    ['access%5Ftoken=secret', 'access%5Ftoken=redacted'],
    ['id_token', 'id_token=redacted'],
    ['token=a&token=b', 'token=redacted&token=redacted'],
  ])('%s becomes %s', (query, expected) => {
    expect(redactQuery(query, TOKEN_QUERY_PARAMETERS)).toBe(expected);
  });

  it.each(['', 'watch=1&resourceVersion=0', 'tokens=1', 'labelSelector=token%3Dx', '%E0%A4%A=1'])('keeps %j exactly as sent', (query) => {
    expect(redactQuery(query, TOKEN_QUERY_PARAMETERS)).toBe(query);
  });
});

describe('port-forward session records name the ports the request names (DESIGN §5)', () => {
  /** A port-forward session that went through (101), as the pipeline leaves it when the session ends. */
  function sessionRecord(target: string) {
    const req = { method: 'POST', socket: { remoteAddress: '127.0.0.1' }, rawHeaders: ['User-Agent', 'kubectl/v1.33.0'] } as unknown as IncomingMessage;
    const request = { ...auditedRequest(req, 'prod-eu', 'direct', target, 'request-1'), status: 101, session: { protocol: 'SPDY/3.1/portforward.k8s.io', startedAt: Date.now() } };
    return auditRecord(request, Date.now());
  }

  it.each([
    ['?ports=8080', ['8080']],
    ['?ports=8080,9090', ['8080', '9090']],
    ['?ports=8080&ports=9090', ['8080', '9090']],
    ['?ports=8080,9090&ports=5432', ['8080', '9090', '5432']],
  ])('%s gives ports %j, read as kube-apiserver reads them (repeated or comma-separated)', (query, ports) => {
    expect(sessionRecord(`/api/v1/namespaces/default/pods/web/portforward${query}`)).toMatchObject({ verb: 'portforward', ports });
  });

  it.each(['', '?ports=', '?timeout=30s'])('has no ports field when the request names none (kubectl over SPDY: the ports travel inside the SPDY framing): %j', (query) => {
    const record = sessionRecord(`/api/v1/namespaces/default/pods/web/portforward${query}`);
    expect(record.verb).toBe('portforward');
    expect(record).not.toHaveProperty('ports');
  });

  it('gives no other session a ports field', () => {
    expect(sessionRecord('/api/v1/namespaces/default/pods/web/exec?command=ls&ports=8080')).not.toHaveProperty('ports');
  });
});
