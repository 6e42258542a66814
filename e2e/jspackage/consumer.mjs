// consumer.mjs runs session.js in Node.js for e2e/jspackage_test.go, from a scratch
// project that installed the packed longlink-client tarball (and ws). LONGLINK_WS:
// 'ws' passes the ws package's WebSocket as the client's option (the Node 20 way
// docs/client-js.md gives); 'global' passes none, for node --experimental-websocket
// (or Node >= 22).
import { LongLink } from 'longlink-client';
import { serveLines } from './lines.mjs';
import { session } from './session.js';

const mode = process.env.LONGLINK_WS;
if (mode !== 'ws' && mode !== 'global') {
  console.error(`consumer.mjs: LONGLINK_WS must be ws or global, not ${JSON.stringify(mode)}`);
  process.exit(2);
}
const WebSocket = mode === 'ws' ? (await import('ws')).default : undefined;

await serveLines({
  ...session(WebSocket),
  // noWebSocket reports the error of a client made without a WebSocket on this
  // runtime (none when it has a global one: Node >= 22, or --experimental-websocket).
  async noWebSocket() {
    const global = typeof globalThis.WebSocket === 'function';
    try {
      new LongLink({ url: 'ws://127.0.0.1:1/ws', token: 't' });
    } catch (err) {
      return { global, node: process.version, error: `${err.name}: ${err.message}` };
    }
    return { global, node: process.version, error: '' };
  },
});
