// Unit tests for protocol v2 (the default) in longlink.js: welcome, positions,
// resume with ?since=, duplicates, position messages, lost streams, binary pushes,
// and plain mode left as it was. A fake WebSocket plays the server.
// Run: node --test clients/js/test/
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { LongLink, SUBPROTOCOL_V2 } from '../longlink.js';

// FakeWebSocket records how it was constructed; the test plays the server. Like a
// browser, it selects longlink.v2 at open when the client offered it.
class FakeWebSocket {
  static instances = [];
  constructor(...args) {
    this.args = args;
    this.url = args[0];
    this.protocols = args[1];
    this.protocol = '';
    this.sent = [];
    this.bufferedAmount = 0;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code, reason) { this.closedWith = { code, reason }; }
  // server side
  open(protocol) {
    this.protocol = protocol ?? (Array.isArray(this.protocols) && this.protocols.includes(SUBPROTOCOL_V2) ? SUBPROTOCOL_V2 : '');
    this.onopen && this.onopen({});
  }
  raw(data) { this.onmessage && this.onmessage({ data }); }
  json(obj) { this.raw(JSON.stringify(obj)); }
  welcome(streams) { this.json({ type: 'welcome', connection: 'n1.x-1', node: 'n1', streams }); }
  push(fields) { this.json({ type: 'push', ...fields }); }
  serverClose(code, reason = '') {
    this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
  }
}

const last = () => FakeWebSocket.instances.at(-1);
const query = (ws, name) => new URL(ws.url).searchParams.get(name);
const sinceOf = (ws) => {
  const s = query(ws, 'since');
  return s === null ? null : JSON.parse(s);
};

async function flush() {
  for (let i = 0; i < 5; i++) await tick();
}

function make(opts = {}) {
  const ll = new LongLink({
    url: 'ws://gw.test:8080/ws',
    token: 'tok',
    WebSocket: FakeWebSocket,
    random: () => 0.5,
    minBackoffMs: 100,
    maxBackoffMs: 1000,
    heartbeatMs: 0,
    ...opts,
  });
  const events = [];
  for (const type of ['open', 'message', 'push', 'welcome', 'lost', 'close', 'error']) {
    ll.on(type, (ev) => events.push([type, ev]));
  }
  const of = (type) => events.filter(([t]) => t === type).map(([, e]) => e);
  return { ll, events, of };
}

// connected returns a client whose first connection is open.
async function connected(opts) {
  const c = make(opts);
  c.ll.connect();
  await flush();
  last().open();
  return c;
}

// reconnect drops the current connection (1006) and opens the next one.
async function reconnect(ll) {
  last().serverClose(1006);
  assert.equal(ll.state, 'reconnecting');
  mock.timers.tick(1000);
  await flush();
  last().open();
  return last();
}

const p = (epoch, offset) => ({ epoch, offset });

beforeEach(() => {
  FakeWebSocket.instances = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
});
afterEach(() => mock.timers.reset());

test('v2 is the default: offers the longlink.v2 subprotocol, token in the query, no since at first', async () => {
  const { ll, of } = await connected();
  const ws = last();
  assert.deepEqual(ws.protocols, [SUBPROTOCOL_V2]);
  assert.equal(SUBPROTOCOL_V2, 'longlink.v2');
  assert.equal(query(ws, 'token'), 'tok');
  assert.equal(query(ws, 'since'), null, 'the first connection has nothing to resume');
  assert.equal(ws.binaryType, 'arraybuffer');
  assert.equal(ll.state, 'open');
  assert.deepEqual(ll.positions(), {});
  assert.deepEqual(of('error'), []);
});

test('constructor validates protocol and since', () => {
  const base = { url: 'ws://x/ws', token: 't', WebSocket: FakeWebSocket };
  assert.throws(() => new LongLink({ ...base, protocol: 'v3' }), /protocol/);
  assert.throws(() => new LongLink({ ...base, since: [] }), /since/);
  assert.throws(() => new LongLink({ ...base, since: { 'user:1': { epoch: 1, offset: 2 } } }), /since\["user:1"\]/);
  assert.throws(() => new LongLink({ ...base, since: { 'user:1': { epoch: 'e', offset: -1 } } }), /since/);
  assert.throws(() => new LongLink({ ...base, since: { 'user:1': { epoch: 'e', offset: 1.5 } } }), /since/);
  // since is v2 only: plain ignores it rather than failing a page that always passes it.
  new LongLink({ ...base, protocol: 'plain', since: 'garbage' });
});

test('welcome sets the positions and is emitted; pushes advance them and deliver data as plain would', async () => {
  const { ll, of } = await connected();
  const ws = last();
  ws.welcome({ 'user:42': p('e1', 17), all: p('a1', 3) });
  assert.equal(of('welcome').length, 1);
  assert.equal(of('welcome')[0].connection, 'n1.x-1');
  assert.equal(of('welcome')[0].node, 'n1');
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 17), all: p('a1', 3) });

  ws.push({ id: 'm1', stream: 'user:42', epoch: 'e1', offset: 18, data: 'hello' });
  ws.push({ id: 'm2', stream: 'all', epoch: 'a1', offset: 4, data: { type: 'chat', text: 'hi' } });
  ws.push({ id: 'm3', stream: 'user:42', epoch: 'e1', offset: 19, data: [1, 'two', null] });
  ws.push({ id: 'm4', stream: 'user:42', epoch: 'e1', offset: 20, data: 42 });
  assert.deepEqual(of('message'), ['hello', '{"type":"chat","text":"hi"}', '[1,"two",null]', '42']);
  assert.deepEqual(of('push'), [
    { id: 'm1', stream: 'user:42', epoch: 'e1', offset: 18, data: 'hello' },
    { id: 'm2', stream: 'all', epoch: 'a1', offset: 4, data: { type: 'chat', text: 'hi' } },
    { id: 'm3', stream: 'user:42', epoch: 'e1', offset: 19, data: [1, 'two', null] },
    { id: 'm4', stream: 'user:42', epoch: 'e1', offset: 20, data: 42 },
  ]);
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 20), all: p('a1', 4) });
  assert.deepEqual(of('error'), []);
});

test('a JSON value is delivered as the exact text the server relayed, not re-encoded', async () => {
  const { of } = await connected();
  last().welcome({ all: p('a', 0) });
  const values = [
    '{"n": 1.0, "big": 12345678901234567890, "s": "caf\\u00e9 } ] \\" {"}',
    '[ 1, [2, {"x": []}], "]" ]',
    '-0.5e+10',
    'true',
    'null',
  ];
  values.forEach((v, i) => {
    // data first or last, with other members around it, as a server may order them
    const env = i % 2 === 0
      ? `{"type":"push","id":"v${i}","stream":"all","epoch":"a","offset":${i + 1},"data":${v}}`
      : `{ "data" : ${v} , "type":"push","id":"v${i}","stream":"all","epoch":"a","offset":${i + 1}, "x":{"data":0}}`;
    last().raw(env);
  });
  assert.deepEqual(of('message'), values);
  assert.deepEqual(of('push')[0].data, { n: 1, big: 12345678901234567890, s: 'café } ] " {' });
  assert.deepEqual(of('error'), []);
});

test('positions() is a copy', async () => {
  const { ll } = await connected();
  last().welcome({ 'user:42': p('e1', 17) });
  const pos = ll.positions();
  pos['user:42'].offset = 99;
  pos['room:x'] = p('z', 1);
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 17) });
});

test('a reconnect carries since with the positions reached, encoded with encodeURIComponent', async () => {
  const { ll } = await connected({ url: 'ws://gw.test:8080/ws?x=1' });
  last().welcome({ 'user:42': p('e1', 17), 'room:lobby': p('r 1', 5) });
  last().push({ id: 'm1', stream: 'user:42', epoch: 'e1', offset: 18, data: 'a' });
  const ws = await reconnect(ll);
  const want = { 'user:42': p('e1', 18), 'room:lobby': p('r 1', 5) };
  assert.deepEqual(sinceOf(ws), want);
  assert.ok(ws.url.endsWith(`since=${encodeURIComponent(JSON.stringify(want))}`), ws.url);
  assert.equal(query(ws, 'token'), 'tok');
  assert.equal(query(ws, 'x'), '1');
  assert.deepEqual(ws.protocols, [SUBPROTOCOL_V2]);
  // The open event redacts the token only.
  assert.ok(!ws.url.includes('REDACTED'));
});

test('options.since resumes on the very first connection', async () => {
  const since = { 'user:42': p('e1', 7) };
  const { ll, of } = await connected({ since });
  assert.deepEqual(sinceOf(last()), since);
  // The replay: the welcome announces where the stream will be once it is done.
  last().welcome({ 'user:42': { epoch: 'e1', offset: 9, recovered: true } });
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 7) }, 'not there until the replay arrived');
  last().push({ id: 'm8', stream: 'user:42', epoch: 'e1', offset: 8, data: 'eight' });
  last().push({ id: 'm9', stream: 'user:42', epoch: 'e1', offset: 9, data: 'nine' });
  assert.deepEqual(of('message'), ['eight', 'nine']);
  assert.deepEqual(of('lost'), []);
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 9) });
  since['user:42'].offset = 0; // the option was copied
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 9) });
});

test('a connection lost in the middle of a replay resumes from where it got to', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('e1', 10) });
  let ws = await reconnect(ll);
  assert.deepEqual(sinceOf(ws), { 'user:42': p('e1', 10) });
  ws.welcome({ 'user:42': { epoch: 'e1', offset: 13, recovered: true } });
  ws.push({ id: 'm11', stream: 'user:42', epoch: 'e1', offset: 11, data: '11' });
  ws = await reconnect(ll); // before 12 and 13 arrived
  assert.deepEqual(sinceOf(ws), { 'user:42': p('e1', 11) });
  ws.welcome({ 'user:42': { epoch: 'e1', offset: 13, recovered: true } });
  ws.push({ id: 'm12', stream: 'user:42', epoch: 'e1', offset: 12, data: '12' });
  ws.push({ id: 'm13', stream: 'user:42', epoch: 'e1', offset: 13, data: '13' });
  assert.deepEqual(of('message'), ['11', '12', '13']);
});

test('duplicates are dropped by offset', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('e1', 0) });
  for (let i = 1; i <= 3; i++) last().push({ id: `m${i}`, stream: 'user:42', epoch: 'e1', offset: i, data: `d${i}` });
  const ws = await reconnect(ll);
  assert.deepEqual(sinceOf(ws), { 'user:42': p('e1', 3) });
  ws.welcome({ 'user:42': { epoch: 'e1', offset: 4, recovered: true } });
  // A server replaying a little too much, with ids the client forgot or never had:
  // the offset alone says these were seen.
  ws.push({ id: 'other-2', stream: 'user:42', epoch: 'e1', offset: 2, data: 'again' });
  ws.push({ id: 'other-3', stream: 'user:42', epoch: 'e1', offset: 3, data: 'again' });
  ws.push({ id: 'm4', stream: 'user:42', epoch: 'e1', offset: 4, data: 'd4' });
  ws.push({ id: 'm4-again', stream: 'user:42', epoch: 'e1', offset: 4, data: 'again' });
  assert.deepEqual(of('message'), ['d1', 'd2', 'd3', 'd4']);
  assert.deepEqual(ll.positions(), { 'user:42': p('e1', 4) });
});

test('duplicates are dropped by id: a message that reaches the client again through another stream', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 5), 'room:lobby': p('r', 8) });
  // m6 went to the user and the room; it came through user:42, and the connection
  // dropped before the room's position message arrived.
  last().push({ id: 'm6', stream: 'user:42', epoch: 'u', offset: 6, data: 'both' });
  const ws = await reconnect(ll);
  assert.deepEqual(sinceOf(ws), { 'user:42': p('u', 6), 'room:lobby': p('r', 8) });
  ws.welcome({ 'user:42': { epoch: 'u', offset: 6, recovered: true }, 'room:lobby': { epoch: 'r', offset: 9, recovered: true } });
  ws.push({ id: 'm6', stream: 'room:lobby', epoch: 'r', offset: 9, data: 'both' });
  assert.deepEqual(of('message'), ['both'], 'the same message id was emitted twice');
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 6), 'room:lobby': p('r', 9) }, 'the dropped copy still advances its stream');
  ws.push({ id: 'm7', stream: 'room:lobby', epoch: 'r', offset: 10, data: 'next' });
  assert.deepEqual(of('message'), ['both', 'next']);
});

test('the id set is bounded: the oldest ids are forgotten first', async () => {
  const { of } = await connected();
  last().welcome({});
  last().push({ id: 'first', data: 'x' }); // to connection ids: no stream, so only the id protects it
  last().push({ id: 'first', data: 'x' });
  assert.equal(of('message').length, 1);
  for (let i = 0; i < 1000; i++) last().push({ id: `n${i}`, data: 'n' });
  assert.equal(of('message').length, 1001);
  last().push({ id: 'n999', data: 'n' }); // still remembered
  assert.equal(of('message').length, 1001);
  last().push({ id: 'first', data: 'x' }); // 1000 ids later: forgotten
  assert.equal(of('message').length, 1002);
});

test('position messages advance the stream and emit nothing', async () => {
  const { ll, events } = await connected();
  last().welcome({ 'user:42': p('u', 1), 'room:lobby': p('r', 1) });
  last().push({ id: 'm1', stream: 'user:42', epoch: 'u', offset: 2, data: 'x' });
  const before = events.length;
  last().json({ type: 'position', stream: 'room:lobby', epoch: 'r', offset: 2, id: 'm1' });
  assert.equal(events.length, before);
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 2), 'room:lobby': p('r', 2) });
  // An older position does not move it back.
  last().json({ type: 'position', stream: 'room:lobby', epoch: 'r', offset: 1, id: 'm0' });
  assert.deepEqual(ll.positions()['room:lobby'], p('r', 2));
  // Resuming sends it, so the server does not replay m1 on the room.
  const ws = await reconnect(ll);
  assert.deepEqual(sinceOf(ws), { 'user:42': p('u', 2), 'room:lobby': p('r', 2) });
});

test('a position message arriving before its push does not hide the push', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'room:a': p('a', 0), 'user:42': p('u', 0) });
  last().json({ type: 'position', stream: 'room:a', epoch: 'a', offset: 1, id: 'm1' });
  last().push({ id: 'm1', stream: 'user:42', epoch: 'u', offset: 1, data: 'x' });
  assert.deepEqual(of('message'), ['x']);
  assert.deepEqual(ll.positions(), { 'room:a': p('a', 1), 'user:42': p('u', 1) });
});

test('recovered:false emits lost and starts the stream from the welcome position', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 10), 'room:lobby': p('r', 4), all: p('a', 1) });
  const ws = await reconnect(ll);
  ws.welcome({
    'user:42': { epoch: 'u', offset: 200, recovered: false }, // trimmed
    'room:lobby': { epoch: 'r2', offset: 3, recovered: false }, // epoch changed
    all: { epoch: 'a', offset: 1, recovered: true },
  });
  assert.equal(of('welcome').length, 2);
  assert.deepEqual(of('lost'), [
    { stream: 'user:42', epoch: 'u', offset: 200, since: p('u', 10) },
    { stream: 'room:lobby', epoch: 'r2', offset: 3, since: p('r', 4) },
  ]);
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 200), 'room:lobby': p('r2', 3), all: p('a', 1) });
  ws.push({ id: 'm201', stream: 'user:42', epoch: 'u', offset: 201, data: 'live' });
  ws.push({ id: 'r4', stream: 'room:lobby', epoch: 'r2', offset: 4, data: 'room live' });
  assert.deepEqual(of('message'), ['live', 'room live']);
  // The next reconnect resumes after the loss: the same loss is not reported twice.
  const ws2 = await reconnect(ll);
  assert.deepEqual(sinceOf(ws2), { 'user:42': p('u', 201), 'room:lobby': p('r2', 4), all: p('a', 1) });
});

test('after recovered:false, what history kept after the gap is still accepted once', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 10) });
  const ws = await reconnect(ll);
  ws.welcome({ 'user:42': { epoch: 'u', offset: 52, recovered: false } });
  // A server that replays the tail it still has (50..52) after announcing the loss.
  ws.push({ id: 'm50', stream: 'user:42', epoch: 'u', offset: 50, data: '50' });
  ws.push({ id: 'm51', stream: 'user:42', epoch: 'u', offset: 51, data: '51' });
  ws.push({ id: 'm51b', stream: 'user:42', epoch: 'u', offset: 51, data: 'dup' });
  ws.push({ id: 'm52', stream: 'user:42', epoch: 'u', offset: 52, data: '52' });
  ws.push({ id: 'm53', stream: 'user:42', epoch: 'u', offset: 53, data: '53' });
  assert.deepEqual(of('message'), ['50', '51', '52', '53']);
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 53) });
  // That allowance ends with the connection.
  const ws2 = await reconnect(ll);
  ws2.welcome({ 'user:42': { epoch: 'u', offset: 53, recovered: true } });
  ws2.push({ id: 'x51', stream: 'user:42', epoch: 'u', offset: 51, data: 'old' });
  assert.deepEqual(of('message'), ['50', '51', '52', '53']);
});

test('a resumed stream the welcome does not answer for is lost when it moved on', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 10), 'room:a': p('a', 5), 'room:b': p('b', 1) });
  const ws = await reconnect(ll);
  // No recovered field: the server did not resume these streams.
  ws.welcome({ 'user:42': p('u', 12), 'room:a': p('a', 5), 'room:b': p('b2', 1) });
  assert.deepEqual(of('lost'), [
    { stream: 'user:42', epoch: 'u', offset: 12, since: p('u', 10) },
    { stream: 'room:b', epoch: 'b2', offset: 1, since: p('b', 1) },
  ]);
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 12), 'room:a': p('a', 5), 'room:b': p('b2', 1) });
});

test('recovered:true with an epoch the client does not have adopts the server position', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 10) });
  const ws = await reconnect(ll);
  ws.welcome({ 'user:42': { epoch: 'u2', offset: 2, recovered: true } });
  assert.deepEqual(of('lost'), []);
  assert.deepEqual(ll.positions(), { 'user:42': p('u2', 2) });
  ws.push({ id: 'm3', stream: 'user:42', epoch: 'u2', offset: 3, data: 'x' });
  assert.deepEqual(of('message'), ['x']);
});

test('a push with a new epoch is adopted', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'room:lobby': p('r1', 40) });
  last().push({ id: 'm1', stream: 'room:lobby', epoch: 'r2', offset: 1, data: 'fresh' });
  last().push({ id: 'm2', stream: 'room:new', epoch: 'n', offset: 7, data: 'unknown stream' });
  assert.deepEqual(of('message'), ['fresh', 'unknown stream']);
  assert.deepEqual(ll.positions(), { 'room:lobby': p('r2', 1), 'room:new': p('n', 7) });
});

test('streams missing from a welcome are forgotten; new ones start at the welcome', async () => {
  const { ll } = await connected();
  last().welcome({ 'user:42': p('u', 1), 'room:old': p('o', 9) });
  const ws = await reconnect(ll);
  ws.welcome({ 'user:42': { epoch: 'u', offset: 1, recovered: true }, 'room:new': p('n', 30) });
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 1), 'room:new': p('n', 30) });
});

test('pushes without a stream or without a position are delivered and move nothing', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 3) });
  last().push({ id: 'c1', data: 'to my connection' });
  last().push({ id: 'h1', stream: 'user:42', data: 'history off' });
  last().push({ id: 'h2', stream: 'user:42', data: 'history off again' });
  assert.deepEqual(of('message'), ['to my connection', 'history off', 'history off again']);
  assert.deepEqual(of('push'), [
    { id: 'c1', data: 'to my connection' },
    { id: 'h1', stream: 'user:42', data: 'history off' },
    { id: 'h2', stream: 'user:42', data: 'history off again' },
  ]);
  assert.deepEqual(ll.positions(), { 'user:42': p('u', 3) });
});

test('data_base64 is delivered as an ArrayBuffer, as a binary message is in plain mode', async () => {
  const { of } = await connected();
  last().welcome({ all: p('a', 0) });
  last().push({ id: 'b1', stream: 'all', epoch: 'a', offset: 1, data_base64: 'AAEC/w==' });
  last().push({ id: 'b2', stream: 'all', epoch: 'a', offset: 2, data_base64: 'AAEC/w' }); // padding optional
  last().push({ id: 'b3', stream: 'all', epoch: 'a', offset: 3, data_base64: '' });
  const msgs = of('message');
  for (const m of msgs) assert.ok(m instanceof ArrayBuffer);
  assert.deepEqual(msgs.map((m) => [...new Uint8Array(m)]), [[0, 1, 2, 255], [0, 1, 2, 255], []]);
  assert.equal(of('push')[0].data, msgs[0]);
  assert.deepEqual(of('error'), []);
});

test('malformed server messages are reported and skipped; unknown types are ignored', async () => {
  const { ll, of } = await connected();
  last().welcome({ 'user:42': p('u', 0) });
  last().raw('not json');
  last().raw('"a string"');
  last().raw(new Uint8Array([1]).buffer);
  last().push({ id: 'bad', stream: 'user:42', epoch: 'u', offset: 1, data_base64: '!!!' });
  last().push({ id: 'none', stream: 'user:42', epoch: 'u', offset: 2 });
  last().json({ type: 'something-new', x: 1 });
  assert.equal(of('error').length, 5);
  assert.deepEqual(of('message'), []);
  assert.equal(ll.state, 'open');
  last().push({ id: 'ok', stream: 'user:42', epoch: 'u', offset: 3, data: 'fine' });
  assert.deepEqual(of('message'), ['fine']);
});

test('a server that does not select longlink.v2 gets a plain connection and an error', async () => {
  const c = make();
  c.ll.connect();
  await flush();
  last().open(''); // a lax WebSocket implementation opened without the subprotocol
  assert.match(c.of('error')[0].message, /did not select longlink\.v2/);
  last().raw('{"raw":"bytes"}');
  assert.deepEqual(c.of('message'), ['{"raw":"bytes"}']);
});

test('plain mode is unchanged: no subprotocol, no since, every message as it arrives', async () => {
  const { ll, of } = await connected({ protocol: 'plain', since: { 'user:42': p('u', 1) } });
  let ws = last();
  assert.equal(ws.args.length, 1, 'plain constructs the WebSocket with the URL only');
  assert.equal(query(ws, 'since'), null);
  ws.raw('{"type":"welcome","streams":{"user:42":{"epoch":"u","offset":5}}}');
  ws.raw('{"type":"push","id":"m1","data":"x"}');
  ws.raw('{"type":"push","id":"m1","data":"x"}');
  const bin = new Uint8Array([1, 2]).buffer;
  ws.raw(bin);
  assert.deepEqual(of('message'), [
    '{"type":"welcome","streams":{"user:42":{"epoch":"u","offset":5}}}',
    '{"type":"push","id":"m1","data":"x"}',
    '{"type":"push","id":"m1","data":"x"}',
    bin,
  ]);
  assert.deepEqual(of('welcome'), []);
  assert.deepEqual(of('push'), []);
  assert.deepEqual(ll.positions(), {});
  ws = await reconnect(ll);
  assert.equal(query(ws, 'since'), null);
  assert.equal(ws.args.length, 1);
});

test('close() then connect() on the same client resumes from its positions', async () => {
  const { ll } = await connected();
  last().welcome({ 'user:42': p('u', 4) });
  ll.close();
  ll.connect();
  await flush();
  assert.deepEqual(sinceOf(last()), { 'user:42': p('u', 4) });
});
