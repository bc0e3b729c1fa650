import { maxStreamDurationSuite } from './max-stream-duration-suite.js';
import { relaySuite } from './relay-suite.js';

relaySuite('direct');
maxStreamDurationSuite('direct');
