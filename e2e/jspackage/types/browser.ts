// browser.ts: lib "dom", no @types: the browser's WebSocket and fetch fit the options.
import { LongLink } from 'longlink-client';
import { use, requests, refused } from './common.js';

const link = use(WebSocket);
void requests(link);
refused(link);
new LongLink({ endpointURL: 'http://localhost:8081/v1/endpoint', token: 't', fetch, WebSocket });
