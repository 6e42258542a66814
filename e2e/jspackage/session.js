// session.js is what e2e/jspackage_test.go does with the installed longlink-client
// package, the same in Node.js (consumer.mjs) and in Chromium (index.html): it is
// copied into a scratch project that installed the packed tarball, and imports the
// package by its name ('longlink-client': node_modules in Node, an import map in the
// page). Each function is one command of the line protocol (e2e/lines.mjs).
import { LongLink, SUBPROTOCOL_V2 } from 'longlink-client';

// session returns the commands, with WebSocket passed to the client as its option
// (undefined: the runtime's own, globalThis.WebSocket).
export function session(WebSocket) {
  const got = []; // messages received: strings, binary ones as 'hex:...'
  const errors = []; // the client's 'error' events
  const waiters = new Set();
  let link = null;
  let welcome = null;

  const changed = () => {
    for (const w of [...waiters]) w();
  };
  const waitFor = (what, done, timeoutMs) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return false;
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no ${what} within ${timeoutMs} ms; received ${JSON.stringify(got)}, errors ${JSON.stringify(errors)}`));
      }, timeoutMs);
      if (!check()) waiters.add(check);
    });

  return {
    // connect opens a link as the token's user and waits for the welcome (v2).
    async connect({ url, token, timeoutMs }) {
      link = new LongLink({ url, token, WebSocket, minBackoffMs: 100, maxBackoffMs: 1000 });
      link.on('welcome', (w) => {
        welcome = w;
        changed();
      });
      link.on('message', (data) => {
        got.push(typeof data === 'string' ? data : `hex:${hex(data)}`);
        changed();
      });
      link.on('error', (e) => errors.push(e.message));
      link.connect();
      await waitFor('welcome', () => welcome !== null, timeoutMs);
      return { streams: Object.keys(welcome.streams).sort(), subprotocol: SUBPROTOCOL_V2, state: link.state };
    },
    // expect waits for a message equal to text (binary ones: 'hex:0001...').
    async expect({ text, timeoutMs }) {
      await waitFor(JSON.stringify(text), () => got.includes(text), timeoutMs);
    },
    // closeWhileConnecting closes a second link while its socket is still connecting
    // and waits for that socket to be closed: with the ws package, the aborted
    // handshake emits 'error' on a socket the client has let go of, then 'close'.
    // until 'closing' waits only for readyState CLOSING: Node 20's built-in
    // WebSocket (undici) never fires 'close' for a socket closed while connecting.
    async closeWhileConnecting({ url, token, until = 'close', timeoutMs }) {
      const Base = WebSocket || globalThis.WebSocket;
      let raw = null;
      let made;
      const created = new Promise((resolve) => {
        made = resolve;
      });
      class Tracked extends Base {
        constructor(...args) {
          super(...args);
          raw = this;
          made();
        }
      }
      const other = new LongLink({ url, token, WebSocket: Tracked });
      other.connect();
      await created;
      const readyState = raw.readyState;
      other.close();
      const want = until === 'closing' ? 2 : 3;
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the socket's readyState is ${raw.readyState}, not ${want}, after ${timeoutMs} ms`)), timeoutMs);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        if (raw.readyState >= want) done();
        else raw.addEventListener('close', done); // no 'error' listener: the test is that none is needed
      });
      // One more turn of the event loop: an error thrown from the close lands first.
      await new Promise((resolve) => setTimeout(resolve, 0));
      return { readyStateAtClose: readyState, state: other.state };
    },
    close() {
      link.close();
      return { state: link.state, errors };
    },
  };
}

function hex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}
