import { describe, expect, it } from 'vitest';
import { redactQuery } from '../../src/audit/record.js';
import { TOKEN_QUERY_PARAMETERS } from '../../src/relay/authenticate.js';

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
