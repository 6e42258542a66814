// Unit tests for longlink.js with a fake WebSocket and mocked timers.
// Run: node --test clients/js/test/
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import {
  LongLink, CloseCode, Policy, closePolicy, backoffDelay, HEARTBEAT,
} from '../longlink.js';

// FakeWebSocket records what the client does and lets the test play the server.
class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    this.bufferedAmount = 0;
    this.binaryType = 'blob';
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code, reason) { this.closedWith = { code, reason }; }
  // server side
  open() { this.onopen && this.onopen({}); }
  message(data) { this.onmessage && this.onmessage({ data }); }
  serverClose(code, reason = '') {
    this.onerror && code === 1006 && this.onerror({});
    this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
  }
}

const last = () => FakeWebSocket.instances.at(-1);
const tokenOf = (ws) => new URL(ws.url).searchParams.get('token');

// flush lets the client's async steps (token, endpoint fetch) run; setImmediate is
// not mocked, so this advances microtasks and I/O-free promise chains only.
async function flush() {
  for (let i = 0; i < 5; i++) await tick();
}

// These tests cover the connection state machine, the same in both protocols, in
// plain mode, where a message is delivered as it arrives. Protocol v2: v2.test.js.
function make(opts = {}) {
  const ll = new LongLink({
    url: 'ws://gw.test:8080/ws',
    token: 'tok',
    protocol: 'plain',
    WebSocket: FakeWebSocket,
    random: () => 0.5,
    minBackoffMs: 100,
    maxBackoffMs: 1000,
    heartbeatMs: 0,
    ...opts,
  });
  const events = [];
  for (const type of ['open', 'message', 'close', 'reconnecting', 'error']) {
    ll.on(type, (ev) => events.push([type, ev]));
  }
  return { ll, events, of: (type) => events.filter(([t]) => t === type).map(([, e]) => e) };
}

beforeEach(() => {
  FakeWebSocket.instances = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
});
afterEach(() => mock.timers.reset());

test('closePolicy follows the gateway close codes', () => {
  const f = (code, want) => assert.equal(closePolicy(code), want, `code ${code}`);
  f(CloseCode.GOING_AWAY, Policy.RECONNECT);
  f(CloseCode.REPLACED, Policy.STOP);
  f(CloseCode.KICKED, Policy.STOP);
  f(CloseCode.TOKEN_EXPIRED, Policy.REFRESH_TOKEN);
  f(CloseCode.SLOW_CONSUMER, Policy.RECONNECT);
  for (const c of [1000, 1002, 1006, 1007, 1008, 1009, 1011, 4999]) f(c, Policy.RECONNECT);
});

test('backoffDelay is full jitter under an exponential cap', () => {
  const f = (attempt, r, want) => assert.equal(backoffDelay(attempt, 100, 1000, () => r), want);
  f(0, 0, 0);
  f(0, 0.999, 99);
  f(1, 0.5, 100);
  f(3, 0.5, 400);
  f(4, 0.999, 999); // capped at maxMs
  f(1000, 0.5, 500); // huge attempt counts do not overflow to Infinity/NaN
});

test('constructor rejects bad options', () => {
  assert.throws(() => new LongLink({ token: 't', WebSocket: FakeWebSocket }), /url or options.endpointURL/);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', WebSocket: FakeWebSocket }), /token/);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', token: 't', WebSocket: FakeWebSocket, heartbeatMs: -1 }), /heartbeatMs/);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', token: 't', WebSocket: FakeWebSocket, minBackoffMs: 10, maxBackoffMs: 5 }), /minBackoffMs/);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', token: 't', WebSocket: 42 }), /WebSocket/);
});

test('connects with the token as a query parameter and delivers messages', async () => {
  const { ll, of } = make({ url: 'ws://gw.test:8080/ws?x=1' });
  ll.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  const ws = last();
  assert.equal(tokenOf(ws), 'tok');
  assert.equal(new URL(ws.url).searchParams.get('x'), '1');
  assert.equal(ws.binaryType, 'arraybuffer');
  assert.equal(ll.state, 'connecting');
  ws.open();
  assert.equal(ll.state, 'open');
  assert.match(of('open')[0].url, /token=REDACTED/);
  ws.message('hello');
  const bin = new Uint8Array([1, 2]).buffer;
  ws.message(bin);
  assert.deepEqual(of('message'), ['hello', bin]);
  assert.equal(ll.send('up'), true);
  assert.deepEqual(ws.sent, ['up']);
});

test('1001 going away reconnects after the jittered backoff', async () => {
  const { ll, of } = make();
  ll.connect();
  await flush();
  last().open();
  last().serverClose(CloseCode.GOING_AWAY, 'shutdown');
  assert.equal(ll.state, 'reconnecting');
  assert.deepEqual(of('close')[0], { code: 1001, reason: 'shutdown', wasClean: true, willReconnect: true });
  assert.deepEqual(of('reconnecting')[0], { attempt: 1, delayMs: 50, code: 1001 });
  mock.timers.tick(49);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1, 'reconnected before the backoff elapsed');
  mock.timers.tick(1);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  last().open();
  assert.equal(ll.state, 'open');
});

test('backoff grows while attempts fail and resets after a stable connection', async () => {
  const { ll, of } = make({ stableMs: 5000 });
  ll.connect();
  await flush();
  for (let i = 0; i < 5; i++) {
    last().serverClose(1006); // refused: never opened
    const delay = of('reconnecting').at(-1).delayMs;
    mock.timers.tick(delay);
    await flush();
  }
  assert.deepEqual(of('reconnecting').map((e) => e.delayMs), [50, 100, 200, 400, 500]);
  last().open();
  mock.timers.tick(4999);
  last().serverClose(4008); // not stable yet: keeps growing
  assert.equal(of('reconnecting').at(-1).delayMs, 500);
  mock.timers.tick(500);
  await flush();
  last().open();
  mock.timers.tick(5000);
  last().serverClose(4008);
  assert.equal(of('reconnecting').at(-1).delayMs, 50, 'backoff did not reset after a stable connection');
  ll.close();
});

for (const code of [CloseCode.REPLACED, CloseCode.KICKED]) {
  test(`close code ${code} stops without reconnecting`, async () => {
    const { ll, of } = make();
    ll.connect();
    await flush();
    last().open();
    last().serverClose(code, 'bye');
    assert.equal(ll.state, 'closed');
    assert.deepEqual(of('close'), [{ code, reason: 'bye', wasClean: true, willReconnect: false }]);
    mock.timers.tick(60000);
    await flush();
    assert.equal(FakeWebSocket.instances.length, 1);
    assert.equal(of('reconnecting').length, 0);
    // connect() starts again after a stop.
    ll.connect();
    await flush();
    assert.equal(FakeWebSocket.instances.length, 2);
  });
}

test('4003 token expired asks the token callback for a new token', async () => {
  const calls = [];
  let n = 0;
  const { ll } = make({ token: async (ctx) => { calls.push(ctx); return `t${++n}`; } });
  ll.connect();
  await flush();
  assert.equal(tokenOf(last()), 't1');
  last().open();
  last().serverClose(CloseCode.TOKEN_EXPIRED);
  assert.equal(ll.state, 'reconnecting');
  mock.timers.tick(1000);
  await flush();
  assert.equal(tokenOf(last()), 't2');
  assert.deepEqual(calls, [{ expired: false }, { expired: true }]);
  last().open();
  last().serverClose(CloseCode.GOING_AWAY);
  mock.timers.tick(1000);
  await flush();
  assert.deepEqual(calls.at(-1), { expired: false }, 'expired flag must clear after a successful open');
});

test('4003 with a fixed string token stops and reports why', async () => {
  const { ll, of } = make();
  ll.connect();
  await flush();
  last().open();
  last().serverClose(CloseCode.TOKEN_EXPIRED);
  assert.equal(ll.state, 'closed');
  assert.match(of('error')[0].message, /fixed string/);
  assert.equal(of('close')[0].willReconnect, false);
});

test('a failing token callback is retried with backoff', async () => {
  let fail = true;
  const { ll, of } = make({ token: async () => { if (fail) throw new Error('auth server down'); return 'ok'; } });
  ll.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.match(of('error')[0].message, /auth server down/);
  assert.equal(ll.state, 'reconnecting');
  fail = false;
  mock.timers.tick(50);
  await flush();
  assert.equal(tokenOf(last()), 'ok');
});

test('close() sends 1000, stops reconnecting and ignores the late close event', async () => {
  const { ll, of } = make();
  ll.connect();
  await flush();
  const ws = last();
  ws.open();
  ll.close();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: '' });
  assert.equal(ll.state, 'closed');
  assert.deepEqual(of('close'), [{ code: 1000, reason: '', wasClean: true, willReconnect: false }]);
  ws.serverClose(1000); // handlers were detached: nothing happens
  mock.timers.tick(60000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(ll.send('x'), false);
});

test('close() while the token is being fetched creates no socket', async () => {
  let release;
  const { ll } = make({ token: () => new Promise((r) => { release = r; }) });
  ll.connect();
  await flush();
  ll.close();
  release('late');
  await flush();
  assert.equal(FakeWebSocket.instances.length, 0);
  assert.equal(ll.state, 'closed');
});

test('close() during the backoff cancels the retry', async () => {
  const { ll } = make();
  ll.connect();
  await flush();
  last().serverClose(1006);
  ll.close();
  mock.timers.tick(60000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
});

test('a socket let go of keeps an error handler that reports nothing', async () => {
  // The ws package emits 'error' on a socket closed while connecting; an
  // EventEmitter 'error' without a listener would be thrown and crash the process.
  const { ll, events } = make({ connectTimeoutMs: 2000 });
  ll.connect();
  await flush();
  const first = last();
  mock.timers.tick(2000); // connect timeout: detached, then closed
  assert.equal(typeof first.onerror, 'function');
  assert.equal(first.onopen, null);
  assert.equal(first.onmessage, null);
  assert.equal(first.onclose, null);
  mock.timers.tick(50);
  await flush();
  const second = last();
  ll.close(); // close() while connecting: the same
  assert.equal(typeof second.onerror, 'function');
  const before = events.length;
  first.onerror({});
  second.onerror({});
  assert.equal(events.length, before, 'a detached socket reported an event');
});

test('heartbeat sends a ping text and reconnects when sends stop draining', async () => {
  const { ll, of } = make({ heartbeatMs: 1000 });
  ll.connect();
  await flush();
  const ws = last();
  ws.open();
  mock.timers.tick(1000);
  assert.deepEqual(ws.sent, [HEARTBEAT]);
  assert.equal(JSON.parse(HEARTBEAT).type, 'ping');
  ws.bufferedAmount = 15; // the ping never left the machine
  mock.timers.tick(1000); // first stale beat: still sends
  assert.equal(ws.sent.length, 2);
  assert.equal(ll.state, 'open');
  mock.timers.tick(1000); // second stale beat: give up on this socket
  assert.equal(ll.state, 'reconnecting');
  assert.equal(ws.closedWith.reason, 'heartbeat timeout');
  assert.equal(of('close')[0].code, CloseCode.ABNORMAL);
  mock.timers.tick(1000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
});

test('incoming messages do not stop the heartbeat from flowing', async () => {
  const { ll } = make({ heartbeatMs: 1000 });
  ll.connect();
  await flush();
  last().open();
  for (let i = 0; i < 3; i++) {
    last().message(`m${i}`);
    mock.timers.tick(1000);
  }
  assert.deepEqual(last().sent, [HEARTBEAT, HEARTBEAT, HEARTBEAT]);
  ll.close();
  mock.timers.tick(5000);
  assert.equal(last().sent.length, 3, 'heartbeat continued after close()');
});

test('a connection that does not open in time is abandoned and retried', async () => {
  const { ll, of } = make({ connectTimeoutMs: 2000 });
  ll.connect();
  await flush();
  mock.timers.tick(1999);
  assert.equal(ll.state, 'connecting');
  mock.timers.tick(1);
  assert.equal(ll.state, 'reconnecting');
  assert.deepEqual(of('close')[0], { code: 1006, reason: 'connect timeout', wasClean: false, willReconnect: true });
  mock.timers.tick(50);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  last().open();
  mock.timers.tick(10000);
  assert.equal(ll.state, 'open', 'connect timer fired after open');
});

test('endpointURL discovery picks the node, falls back to url, or retries', async () => {
  const fetches = [];
  let reply = { ok: true, status: 200, json: async () => ({ endpoint: 'ws://node-b:8080/ws', node: 'b' }) };
  const fetch = async (u) => { fetches.push(u); if (reply instanceof Error) throw reply; return reply; };

  const a = make({ url: undefined, endpointURL: 'http://gw.test:8080/v1/endpoint', fetch });
  a.ll.connect();
  await flush();
  assert.deepEqual(fetches, ['http://gw.test:8080/v1/endpoint']);
  assert.equal(new URL(last().url).host, 'node-b:8080');
  assert.equal(tokenOf(last()), 'tok');
  a.ll.close();

  reply = new Error('network down');
  const b = make({ url: 'ws://fallback:8080/ws', endpointURL: 'http://gw.test:8080/v1/endpoint', fetch });
  b.ll.connect();
  await flush();
  assert.equal(new URL(last().url).host, 'fallback:8080');
  b.ll.close();

  const n = FakeWebSocket.instances.length;
  reply = { ok: false, status: 503, json: async () => ({}) };
  const c = make({ url: undefined, endpointURL: 'http://gw.test:8080/v1/endpoint', fetch });
  c.ll.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, n);
  assert.match(c.of('error')[0].message, /HTTP 503/);
  assert.equal(c.ll.state, 'reconnecting');
  reply = { ok: true, status: 200, json: async () => ({ endpoint: 'ws://node-c:8080/ws' }) };
  mock.timers.tick(50);
  await flush();
  assert.equal(new URL(last().url).host, 'node-c:8080');
  c.ll.close();
});

test('a throwing listener is reported and does not break the client', async () => {
  const { ll, of } = make();
  ll.on('message', () => { throw new Error('app bug'); });
  ll.connect();
  await flush();
  last().open();
  last().message('x');
  assert.match(of('error')[0].message, /app bug/);
  assert.equal(ll.state, 'open');
  const off = ll.on('message', () => {});
  assert.equal(typeof off, 'function');
  assert.throws(() => ll.on('nope', () => {}), /unknown event/);
});

test('connect() is idempotent while active', async () => {
  const { ll } = make();
  ll.connect();
  ll.connect();
  await flush();
  last().open();
  ll.connect();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
});
