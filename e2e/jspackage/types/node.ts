// node.ts: Node.js 20 with @types/node and the ws package (and @types/ws), the way
// docs/client-js.md shows: ws's WebSocket and Node's fetch fit the options.
import WebSocket from 'ws';
import { LongLink } from 'longlink-client';
import { use, requests, refused } from './common.js';

const link = use(WebSocket);
void requests(link);
refused(link);
new LongLink({ endpointURL: 'http://localhost:8081/v1/endpoint', token: 't', fetch, WebSocket });
