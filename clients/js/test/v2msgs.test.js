// Unit tests for the v2 messages of issue 13 in longlink.js: acks (automatic after
// the handlers, cumulative and coalesced per stream, by id without a stream, again
// for redeliveries, manual with autoAck: false), send/reply, subscribe/unsubscribe
// and re-subscribing after reconnects, and server errors. A fake WebSocket plays
// the server (as in v2.test.js).
// Run: node --test clients/js/test/
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { LongLink, RequestError, SUBPROTOCOL_V2 } from '../longlink.js';

class FakeWebSocket {
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.protocol = '';
    this.sent = [];
    this.bufferedAmount = 0;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code, reason) { this.closedWith = { code, reason }; }
  open() {
    this.protocol = SUBPROTOCOL_V2;
    this.onopen && this.onopen({});
  }
  json(obj) { this.onmessage && this.onmessage({ data: JSON.stringify(obj) }); }
  welcome(streams) { this.json({ type: 'welcome', connection: 'n1.x-1', node: 'n1', streams }); }
  push(fields) { this.json({ type: 'push', data: 'x', ...fields }); }
  serverClose(code) { this.onclose && this.onclose({ code, reason: '', wasClean: false }); }
  // messages the client sent, parsed; of one type when given
  out(type) {
    return this.sent.map((s) => JSON.parse(s)).filter((m) => type === undefined || m.type === type);
  }
  reply(req, fields) { this.json({ type: 'reply', id: req.id, ...fields }); }
}

const last = () => FakeWebSocket.instances.at(-1);
const p = (epoch, offset) => ({ epoch, offset });

async function flush() {
  for (let i = 0; i < 5; i++) await tick();
}

// acksAfter lets the ack delay pass and returns the acks sent on ws.
async function acksAfter(ws) {
  await flush();
  mock.timers.tick(10);
  await flush();
  return ws.out('ack');
}

async function connected(opts = {}, streams = { 'user:1': p('e', 0) }) {
  const ll = new LongLink({
    url: 'ws://gw.test/ws', token: 'tok', WebSocket: FakeWebSocket, random: () => 0.5,
    minBackoffMs: 100, maxBackoffMs: 1000, heartbeatMs: 0, ...opts,
  });
  const errors = [];
  ll.on('error', (e) => errors.push(e));
  ll.connect();
  await flush();
  last().open();
  last().welcome(streams);
  return { ll, errors, ws: last() };
}

async function reconnect(ll, streams) {
  last().serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  last().open();
  if (streams) last().welcome(streams);
  return last();
}

beforeEach(() => {
  FakeWebSocket.instances = [];
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
});
afterEach(() => mock.timers.reset());

test('a push asking for an ack is acknowledged after its handlers return; one ack per stream for a burst', async () => {
  const { ll, ws } = await connected({}, { 'user:1': p('e', 0), 'room:a': p('r', 0) });
  const got = [];
  ll.on('push', (ev) => got.push(ev));
  ws.push({ id: 'm1', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws.push({ id: 'm2', stream: 'user:1', epoch: 'e', offset: 2, ack: true });
  ws.push({ id: 'm3', stream: 'room:a', epoch: 'r', offset: 1, ack: true });
  ws.push({ id: 'm4', stream: 'user:1', epoch: 'e', offset: 3 }); // no ack asked
  assert.equal(got.length, 4);
  assert.equal(got[0].ack, true);
  assert.equal(got[3].ack, undefined);
  assert.deepEqual(ws.out('ack'), [], 'acks wait for the coalescing delay');
  assert.deepEqual(await acksAfter(ws), [
    { type: 'ack', stream: 'user:1', epoch: 'e', offset: 2 },
    { type: 'ack', stream: 'room:a', epoch: 'r', offset: 1 },
  ]);
  assert.deepEqual(await acksAfter(ws), [
    { type: 'ack', stream: 'user:1', epoch: 'e', offset: 2 },
    { type: 'ack', stream: 'room:a', epoch: 'r', offset: 1 },
  ], 'nothing more is sent');
});

test('a push without a stream is acknowledged by id; ackDelayMs 0 sends in a microtask', async () => {
  const { ws } = await connected({ ackDelayMs: 0 });
  ws.push({ id: 'c1', ack: true });
  ws.push({ id: 'h1', stream: 'user:1', ack: true }); // history off: no position either
  await flush();
  assert.deepEqual(ws.out('ack'), [{ type: 'ack', message: 'c1' }, { type: 'ack', message: 'h1' }]);
});

test('an async handler is awaited; acks stay cumulative in offset order', async () => {
  const { ll, ws } = await connected();
  const resolvers = new Map();
  ll.on('push', (ev) => new Promise((resolve) => resolvers.set(ev.offset, resolve)));
  ws.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws.push({ id: 'b', stream: 'user:1', epoch: 'e', offset: 2, ack: true });
  resolvers.get(2)();
  assert.deepEqual(await acksAfter(ws), [], 'offset 2 is done, but 1 is not: nothing to ack yet');
  resolvers.get(1)();
  assert.deepEqual(await acksAfter(ws), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 2 }]);
});

test('a handler that throws or rejects means no ack (and holds the stream back); the redelivery is handled again', async () => {
  const { ll, errors, ws } = await connected();
  let calls = 0;
  ll.on('message', () => {
    calls++;
    if (calls === 1) throw new Error('boom');
  });
  ws.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws.push({ id: 'b', stream: 'user:1', epoch: 'e', offset: 2, ack: true });
  assert.deepEqual(await acksAfter(ws), [], 'offset 1 failed: the cumulative ack cannot pass it');
  assert.match(errors[0].message, /boom|listener threw/);
  // The next connection: the server delivers both again (neither was acked).
  const ws2 = await reconnect(ll, { 'user:1': p('e', 2) });
  ws2.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws2.push({ id: 'b', stream: 'user:1', epoch: 'e', offset: 2, ack: true });
  assert.equal(calls, 3, 'a is handled again (it was never acked), b is not (it was handled)');
  assert.deepEqual(await acksAfter(ws2), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 2 }]);

  const rej = await connected();
  rej.ll.on('push', () => Promise.reject(new Error('nope')));
  rej.ws.push({ id: 'z', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  assert.deepEqual(await acksAfter(rej.ws), []);
  assert.match(rej.errors.at(-1).message, /nope/);
});

test('a handled push delivered again (its ack was lost with the connection) is acked again, not handled again', async () => {
  const { ll, ws } = await connected();
  let calls = 0;
  ll.on('message', () => calls++);
  ws.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws.push({ id: 'c1', ack: true });
  // The connection drops before the ack delay passes: the acks never leave.
  const ws2 = await reconnect(ll, { 'user:1': p('e', 1) });
  assert.deepEqual(ws.out('ack'), []);
  ws2.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws2.push({ id: 'c1', ack: true });
  assert.equal(calls, 2);
  assert.deepEqual(await acksAfter(ws2), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 1 }, { type: 'ack', message: 'c1' }]);
});

test('autoAck false: ack(push) acknowledges, cumulatively', async () => {
  const { ll, ws } = await connected({ autoAck: false });
  const evs = [];
  ll.on('push', (ev) => evs.push(ev));
  ws.push({ id: 'a', stream: 'user:1', epoch: 'e', offset: 1, ack: true });
  ws.push({ id: 'b', stream: 'user:1', epoch: 'e', offset: 2, ack: true });
  ws.push({ id: 'n', stream: 'user:1', epoch: 'e', offset: 3 });
  assert.deepEqual(await acksAfter(ws), []);
  ll.ack(evs[1]);
  assert.deepEqual(await acksAfter(ws), []);
  ll.ack(evs[0]);
  ll.ack(evs[0]); // twice: ignored
  assert.deepEqual(await acksAfter(ws), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 2 }]);
  assert.throws(() => ll.ack(evs[2]), /asked for an ack/);
  assert.throws(() => ll.ack({ id: 'a', ack: true }), /asked for an ack/);
  // Not acked yet when the connection went: delivered again, handed to the app again.
  ws.push({ id: 'c', stream: 'user:1', epoch: 'e', offset: 4, ack: true });
  const ws2 = await reconnect(ll, { 'user:1': p('e', 4) });
  ws2.push({ id: 'c', stream: 'user:1', epoch: 'e', offset: 4, ack: true });
  assert.equal(evs.length, 5);
  ll.ack(evs[3]); // the old connection's event: remembered, not sent
  ll.ack(evs[4]);
  assert.deepEqual(await acksAfter(ws2), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 4 }]);
});

test('send resolves with the reply, rejects on status >= 400, timeout and disconnect', async () => {
  const { ll, ws } = await connected({ requestTimeoutMs: 500 });
  const ok = ll.send('chat', { text: 'hi' });
  const [req] = ws.out('send');
  assert.deepEqual(req, { type: 'send', business: 'chat', data: { text: 'hi' }, id: req.id });
  assert.equal(typeof req.id, 'number');
  ws.reply(req, { status: 200, data: { seen: true } });
  assert.deepEqual(await ok, { status: 200, data: { seen: true } });

  const bad = ll.send('chat', null);
  ws.reply(ws.out('send')[1], { status: 504, reason: 'back-end timeout' });
  await assert.rejects(bad, (e) => e instanceof RequestError && e.code === 'status' && e.status === 504 && e.reason === 'back-end timeout');

  const slow = ll.send('chat', 1, { timeout: 50 });
  mock.timers.tick(50);
  await assert.rejects(slow, (e) => e.code === 'timeout' && e.status === 0);
  ws.reply(ws.out('send')[2], { status: 200 }); // too late: ignored

  const cut = ll.send('chat', 2);
  const cut2 = ll.subscribe('r');
  ws.serverClose(1006);
  await assert.rejects(cut, (e) => e.code === 'disconnected');
  await assert.rejects(cut2, (e) => e.code === 'disconnected');
  await assert.rejects(ll.send('chat', 3), (e) => e.code === 'disconnected', 'not connected');
  await assert.rejects(ll.send('', 3), TypeError);
});

test('requests are bounded; ids are unique; send(data) alone is the raw send', async () => {
  const { ll, ws } = await connected({ maxPendingRequests: 2 });
  const a = ll.send('b', 1);
  const b = ll.send('b', 2);
  await assert.rejects(ll.send('b', 3), (e) => e.code === 'overloaded');
  const [ra, rb] = ws.out('send');
  assert.notEqual(ra.id, rb.id);
  ws.reply(rb, { status: 202, data: 'second' });
  ws.reply(ra, { status: 200, data: 'first' });
  assert.deepEqual(await a, { status: 200, data: 'first' });
  assert.deepEqual(await b, { status: 202, data: 'second' });
  assert.equal(ll.send('raw text'), true);
  assert.equal(ws.sent.at(-1), 'raw text');
  ll.close();
  assert.equal(ll.sendRaw('x'), false);
});

test('subscribe keeps the room across reconnects: since carries its position, it is subscribed again, a gap is lost', async () => {
  const { ll, ws } = await connected();
  const lost = [];
  ll.on('lost', (e) => lost.push(e));
  const sub = ll.subscribe('chat/lobby');
  const [req] = ws.out('subscribe');
  assert.deepEqual(req, { type: 'subscribe', room: 'chat/lobby', id: req.id });
  ws.reply(req, { status: 200, data: { stream: 'room:chat/lobby', epoch: 'r1', offset: 7 } });
  assert.deepEqual((await sub).data, { stream: 'room:chat/lobby', epoch: 'r1', offset: 7 });
  assert.deepEqual(ll.subscriptions(), ['chat/lobby']);
  assert.deepEqual(ll.positions()['room:chat/lobby'], p('r1', 7));
  ws.push({ id: 'm8', stream: 'room:chat/lobby', epoch: 'r1', offset: 8 });

  // Reconnect: the room's position goes in since, and it is subscribed again.
  last().serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  const ws2 = last();
  const since = JSON.parse(new URL(ws2.url).searchParams.get('since'));
  assert.deepEqual(since['room:chat/lobby'], p('r1', 8));
  ws2.open();
  ws2.welcome({ 'user:1': p('e', 0) });
  const [again] = ws2.out('subscribe');
  assert.equal(again.room, 'chat/lobby');
  assert.deepEqual(ll.positions()['room:chat/lobby'], p('r1', 8), 'kept while subscribing again');
  ws2.reply(again, { status: 200, data: { stream: 'room:chat/lobby', epoch: 'r1', offset: 10 } });
  await flush();
  assert.deepEqual(lost, [{ stream: 'room:chat/lobby', epoch: 'r1', offset: 10, since: p('r1', 8) }]);
  assert.deepEqual(ll.positions()['room:chat/lobby'], p('r1', 10));

  // A welcome that lists the room (the server resumed it) needs no subscribe.
  const ws3 = await reconnect(ll, { 'user:1': p('e', 0), 'room:chat/lobby': { epoch: 'r1', offset: 10, recovered: true } });
  assert.deepEqual(ws3.out('subscribe'), []);

  const un = ll.unsubscribe('chat/lobby');
  ws3.reply(ws3.out('unsubscribe')[0], { status: 200 });
  await un;
  assert.deepEqual(ll.subscriptions(), []);
  assert.equal(ll.positions()['room:chat/lobby'], undefined);
  const ws4 = await reconnect(ll, { 'user:1': p('e', 0) });
  assert.deepEqual(ws4.out('subscribe'), []);
});

test('a refused subscribe rejects with the reason; refused again after a reconnect, the room is dropped', async () => {
  const { ll, errors, ws } = await connected();
  const sub = ll.subscribe('secret');
  ws.reply(ws.out('subscribe')[0], { status: 403, reason: 'not allowed' });
  await assert.rejects(sub, (e) => e.code === 'status' && e.status === 403 && e.reason === 'not allowed');
  assert.deepEqual(ll.subscriptions(), []);

  const ok = ll.subscribe('open');
  ws.reply(ws.out('subscribe')[1], { status: 200, data: { stream: 'room:open', epoch: 'o', offset: 0 } });
  await ok;
  const ws2 = await reconnect(ll, { 'user:1': p('e', 0) });
  ws2.reply(ws2.out('subscribe')[0], { status: 403, reason: 'token changed' });
  await flush();
  assert.deepEqual(ll.subscriptions(), []);
  assert.match(errors.at(-1).message, /open.*403 token changed/);
});

test('error messages from the server reach servererror; unknown replies are ignored', async () => {
  const { ll, errors, ws } = await connected();
  const got = [];
  ll.on('servererror', (e) => got.push(e));
  ws.json({ type: 'error', status: 400, reason: 'not a JSON object' });
  ws.json({ type: 'reply', id: 999, status: 200 });
  assert.deepEqual(got, [{ status: 400, reason: 'not a JSON object' }]);
  assert.deepEqual(errors, []);
});

test('plain mode has no requests', async () => {
  const ll = new LongLink({ url: 'ws://gw.test/ws', token: 't', WebSocket: FakeWebSocket, protocol: 'plain', heartbeatMs: 0 });
  ll.connect();
  await flush();
  last().open();
  await assert.rejects(ll.send('b', 1), TypeError);
  await assert.rejects(ll.subscribe('r'), TypeError);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', token: 't', WebSocket: FakeWebSocket, autoAck: 'yes' }), /autoAck/);
  assert.throws(() => new LongLink({ url: 'ws://x/ws', token: 't', WebSocket: FakeWebSocket, maxPendingRequests: 0 }), /maxPendingRequests/);
});

test('a new page gets the unacknowledged pushes from before its welcome head: handled, then acked, position kept', async () => {
  const { ll, ws } = await connected({}, { 'user:1': p('e', 10) });
  const got = [];
  ll.on('push', (ev) => got.push(ev.id));
  ws.push({ id: 'm5', stream: 'user:1', epoch: 'e', offset: 5, ack: true });
  ws.push({ id: 'm11', stream: 'user:1', epoch: 'e', offset: 11, ack: true });
  assert.deepEqual(got, ['m5', 'm11'], 'a redelivered push this page never handled reaches the application');
  assert.deepEqual(await acksAfter(ws), [{ type: 'ack', stream: 'user:1', epoch: 'e', offset: 11 }]);
  assert.deepEqual(ll.positions()['user:1'], p('e', 11));
});
