import { describe } from 'vitest';
import { maxStreamDurationSuite } from './max-stream-duration-suite.js';
import { relaySuite } from './relay-suite.js';

// The same checks against an API server that offers HTTP/2, as kube-apiserver does: plain requests go over h2.
describe('direct mode, HTTP/2 upstream', () => {
  relaySuite('direct', { upstream: 'h2' });
  maxStreamDurationSuite('direct', { upstream: 'h2' });
});

describe('tunnel mode, HTTP/2 upstream', () => {
  relaySuite('tunnel', { upstream: 'h2' });
  maxStreamDurationSuite('tunnel', { upstream: 'h2' });
});
