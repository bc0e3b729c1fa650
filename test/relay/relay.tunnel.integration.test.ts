import { maxStreamDurationSuite } from './max-stream-duration-suite.js';
import { relaySuite } from './relay-suite.js';

// The same checks with the relay reached through the hub's tunnel (DESIGN §4: the tunnel is only a transport).
relaySuite('tunnel');
maxStreamDurationSuite('tunnel');
