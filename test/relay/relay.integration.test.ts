import { relaySuite } from './relay-suite.js';

relaySuite('direct');
