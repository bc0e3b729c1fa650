// key-rotation.test.ts again with every agent request over HTTP/2 (issue 21).
import { sendRequestsOver } from '../helpers/http.js';

sendRequestsOver('h2');
await import('./key-rotation.test.js');
