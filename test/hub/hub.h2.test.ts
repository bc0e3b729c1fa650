// hub.test.ts again with every agent request over HTTP/2, as kubectl sends them once the hub offers h2 (issue 21).
import { sendRequestsOver } from '../helpers/http.js';

sendRequestsOver('h2');
await import('./hub.test.js');
