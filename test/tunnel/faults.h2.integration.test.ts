// faults.integration.test.ts again with the agents' requests and watches over HTTP/2 (issue 21): a hub that
// shuts down sends its sessions away (GOAWAY) and lets the streams under way finish, as it does connections.
import { sendRequestsOver } from '../helpers/http.js';

sendRequestsOver('h2');
await import('./faults.integration.test.js');
