import { describe } from 'vitest';
import { maxStreamDurationSuite } from './max-stream-duration-suite.js';
import { relaySuite } from './relay-suite.js';

// The same checks against an API server that offers HTTP/2, as kube-apiserver does (plain requests go over h2),
// with HTTP/1.1 clients, and with HTTP/2 clients as kubectl is once the relay offers h2 too (issue 21).
describe('direct mode, HTTP/2 upstream', () => {
  relaySuite('direct', { upstream: 'h2' });
  maxStreamDurationSuite('direct', { upstream: 'h2' });
});

describe('direct mode, HTTP/2 clients and upstream', () => {
  relaySuite('direct', { upstream: 'h2', client: 'h2' });
  maxStreamDurationSuite('direct', { upstream: 'h2', client: 'h2' });
});

describe('tunnel mode, HTTP/2 clients and upstream', () => {
  relaySuite('tunnel', { upstream: 'h2', client: 'h2' });
  maxStreamDurationSuite('tunnel', { upstream: 'h2', client: 'h2' });
});
