// pusher_node.mjs drives real Pusher libraries for e2e/pusher_node_test.go over the
// line protocol browser.mjs speaks: the Go test writes one JSON command per line on
// stdin, this script answers one JSON line per command on stdout ({"ok":true,...} or
// {"ok":false,"error":...}). Library logs go to stderr, which the Go test logs.
//
// It holds any number of pusher-js clients (its Node build), each named by the test,
// and one official `pusher` server SDK per node API address. It also is the app's
// back-end: an HTTP server on loopback that authorizes channels and authenticates
// users with the server SDK, as an app's /pusher/auth does. Everything a client
// receives is logged per client, in order, so that the test can wait for an event
// ("expect") and check that another never came ("absent") once a later one has.
//
// Environment: LONGLINK_PUSHER_APPS, a JSON list of {"id","key","secret"} (the node's
// --pusher-app apps), and LONGLINK_PUSHER_MASTER_KEY, base64 of 32 bytes: the
// encryption master key of private-encrypted- channels, the back-end's secret.
import { createServer } from 'node:http';
import { serveLines } from './lines.mjs';
import PusherServer from 'pusher';
import PusherJS from 'pusher-js';

const apps = new Map(JSON.parse(process.env.LONGLINK_PUSHER_APPS || '[]').map((a) => [a.id, a]));
const masterKey = process.env.LONGLINK_PUSHER_MASTER_KEY;
if (apps.size === 0 || !masterKey) {
  console.error('pusher_node.mjs: LONGLINK_PUSHER_APPS and LONGLINK_PUSHER_MASTER_KEY must be set');
  process.exit(2);
}

function app(id) {
  const a = apps.get(id);
  if (!a) throw new Error(`no app ${id}`);
  return a;
}

// signers[app] sign as the app's back-end; they never talk to a node (the host only
// satisfies the SDK's config). The wrong one signs with another secret, as a
// misconfigured back-end does.
const signer = (id, wrong) => {
  const a = app(id);
  return new PusherServer({ appId: a.id, key: a.key, secret: wrong ? a.secret + '-wrong' : a.secret, host: '127.0.0.1', useTLS: false, encryptionMasterKeyBase64: masterKey });
};

// The app's back-end. Form fields are what pusher-js posts (socket_id, channel_name)
// plus the client's params: app, user_id (who the user is), bad=1 (sign wrong).
const backend = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const f = new URLSearchParams(body);
    const socketId = f.get('socket_id');
    const info = { name: f.get('user_id') };
    let out;
    try {
      const s = signer(f.get('app'), f.get('bad') === '1');
      if (req.url === '/auth') {
        const channel = f.get('channel_name');
        out = channel.startsWith('presence-')
          ? s.authorizeChannel(socketId, channel, { user_id: f.get('user_id'), user_info: info })
          : s.authorizeChannel(socketId, channel);
      } else if (req.url === '/user-auth') {
        out = s.authenticateUser(socketId, { id: f.get('user_id'), user_info: info });
      } else {
        res.writeHead(404).end();
        return;
      }
    } catch (err) {
      console.error(`backend: ${req.url} ${body}: ${err.message}`);
      res.writeHead(500).end(err.message);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(out));
  });
});
await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
const backendURL = `http://127.0.0.1:${backend.address().port}`;

// clients by name: { pusher, log: [{seq, channel, event, data, userId}] }.
const clients = new Map();
// servers by app and API address: a server SDK pointed at that node.
const servers = new Map();

function client(name) {
  const c = clients.get(name);
  if (!c) throw new Error(`no client ${name}`);
  return c;
}

function server(id, api) {
  let s = servers.get(`${id} ${api}`);
  if (!s) {
    const a = app(id);
    const [host, port] = api.split(':');
    s = new PusherServer({ appId: a.id, key: a.key, secret: a.secret, host, port, useTLS: false, timeout: 10000, encryptionMasterKeyBase64: masterKey });
    servers.set(`${id} ${api}`, s);
  }
  return s;
}

// plain turns anything (errors included) into JSON-safe data for the log.
function plain(v) {
  try {
    return JSON.parse(JSON.stringify(v ?? null));
  } catch {
    return String(v);
  }
}

function record(c, channel, event, data, userId) {
  c.log.push({ seq: c.log.length, channel, event, data: plain(data), userId });
}

// waitUntil polls cond (which returns a value or undefined) until it gives a value.
async function waitUntil(what, timeoutMs, cond) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const matches = (e, { channel, event, data, since = 0 }) =>
  e.seq >= since && e.channel === channel && e.event === event && (data === undefined || same(e.data, data));

function bindChannel(c, ch) {
  if (ch.__logged) return;
  ch.__logged = true;
  ch.bind_global((event, data) => record(c, ch.name, event, data));
}

const memberIds = (ch) => {
  const ids = [];
  ch.members.each((m) => ids.push(m.id));
  return ids.sort();
};

const commands = {
  // connect makes a pusher-js client as a browser app would, against the node's
  // client port, with the driver's back-end for channel and user auth.
  async connect({ client: name, app: id, ws, userId = '', bad = false, timeoutMs }) {
    if (clients.has(name)) throw new Error(`client ${name} exists`);
    const [wsHost, wsPort] = ws.split(':');
    const params = { app: id, user_id: userId, bad: bad ? '1' : '0' };
    const pusher = new PusherJS(app(id).key, {
      cluster: 'x', wsHost, wsPort: Number(wsPort), forceTLS: false, enabledTransports: ['ws'],
      disableStats: true,
      channelAuthorization: { endpoint: `${backendURL}/auth`, transport: 'ajax', params },
      userAuthentication: { endpoint: `${backendURL}/user-auth`, transport: 'ajax', params },
    });
    const c = { pusher, log: [] };
    clients.set(name, c);
    pusher.connection.bind('state_change', ({ current }) => record(c, '', `state:${current}`, null));
    pusher.connection.bind('error', (err) => record(c, '', 'connection:error', err?.data ?? err?.type ?? err));
    // Messages that belong to no channel: pusher:error, pusher:signin_success. And
    // events with a user_id (client events on presence channels), whose user_id
    // pusher-js gives only to a callback bound to the event's name: as raw:<channel>.
    pusher.connection.bind('message', (m) => {
      if (!m.channel) record(c, '', m.event, m.data);
      else if (m.user_id !== undefined) record(c, `raw:${m.channel}`, m.event, m.data, m.user_id);
    });
    pusher.user.bind_global((event, data) => record(c, '#user', event, data));
    await waitState(c, 'connected', timeoutMs);
    return { socketId: pusher.connection.socket_id };
  },
  async state({ client: name, is, timeoutMs }) {
    const c = client(name);
    await waitState(c, is, timeoutMs);
    return { socketId: c.pusher.connection.socket_id };
  },
  // subscribe waits for the subscription's outcome; a refusal is an error unless
  // expectError, and then its data is returned.
  async subscribe({ client: name, channel, expectError = false, timeoutMs }) {
    const c = client(name);
    const since = c.log.length;
    const ch = c.pusher.subscribe(channel);
    bindChannel(c, ch);
    const e = await waitUntil(`subscription to ${channel}`, timeoutMs, () => c.log.find((e) => e.seq >= since && e.channel === channel &&
      (e.event === 'pusher:subscription_succeeded' || e.event === 'pusher:subscription_error')));
    if ((e.event === 'pusher:subscription_error') !== expectError) {
      throw new Error(`${channel}: ${e.event} ${JSON.stringify(e.data)}`);
    }
    if (expectError) return { data: e.data };
    return channel.startsWith('presence-') ? { members: memberIds(ch), me: ch.members.me } : {};
  },
  async unsubscribe({ client: name, channel }) {
    client(name).pusher.unsubscribe(channel);
  },
  // mark is the log's length: expect's since, to wait for what comes after now.
  async mark({ client: name }) {
    return { seq: client(name).log.length };
  },
  async expect({ client: name, timeoutMs, ...want }) {
    const c = client(name);
    const e = await waitUntil(`${want.event} on ${want.channel || '(connection)'} ${JSON.stringify(want.data) ?? ''}`, timeoutMs,
      () => c.log.find((e) => matches(e, want)));
    return { entry: e };
  },
  // absent fails if the event is in the log: call it after expecting a later event.
  async absent({ client: name, ...want }) {
    const e = client(name).log.find((e) => matches(e, want));
    if (e) throw new Error(`unexpected ${JSON.stringify(e)}`);
  },
  async log({ client: name }) {
    return { log: client(name).log };
  },
  // members waits until the presence channel's member list is ids.
  async members({ client: name, channel, ids, timeoutMs }) {
    const ch = client(name).pusher.channel(channel);
    if (!ch) throw new Error(`not subscribed to ${channel}`);
    const want = [...ids].sort();
    await waitUntil(`members of ${channel} = ${want}`, timeoutMs, () => (same(memberIds(ch), want) ? true : undefined))
      .catch((err) => { throw new Error(`${err.message}; have ${memberIds(ch)}`); });
    return { count: ch.members.count, me: ch.members.me };
  },
  async clientTrigger({ client: name, channel, event, data }) {
    const ch = client(name).pusher.channel(channel);
    if (!ch) throw new Error(`not subscribed to ${channel}`);
    return { sent: ch.trigger(event, data) };
  },
  // signin signs the client in and waits until its #server-to-user- channel is
  // subscribed, so events sent to the user reach it.
  async signin({ client: name, timeoutMs }) {
    const c = client(name);
    const since = c.log.length;
    c.pusher.signin();
    await waitUntil('signin and the server-to-user subscription', timeoutMs, () => {
      const u = c.pusher.user;
      const err = c.log.find((e) => e.seq >= since && e.event === 'pusher:error');
      if (err) throw new Error(`signin: ${JSON.stringify(err.data)}`);
      return u.user_data && u.serverToUserChannel?.subscribed ? true : undefined;
    });
    return { user: c.pusher.user.user_data };
  },
  async disconnect({ client: name }) {
    const c = client(name);
    c.pusher.disconnect();
    clients.delete(name);
  },
  // validateWebhook checks a webhook POST a node sent (headers with lowercased
  // names, the raw body) with the server SDK, as an app's webhook endpoint does.
  async validateWebhook({ app: id, headers, body }) {
    const a = app(id);
    const wh = new PusherServer({ appId: a.id, key: a.key, secret: a.secret }).webhook({ headers, rawBody: body });
    const valid = wh.isValid();
    return { valid, events: valid ? wh.getEvents() : [] };
  },
  // api calls a node's Pusher HTTP API through the server SDK: op is its method.
  async api({ app: id, api, op, args = [] }) {
    const s = server(id, api);
    try {
      const res = await s[op](...args);
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    } catch (err) {
      if (err.status) return { status: err.status, body: err.body };
      throw err;
    }
  },
};

async function waitState(c, is, timeoutMs) {
  await waitUntil(`connection state ${is}`, timeoutMs, () => (c.pusher.connection.state === is ? true : undefined))
    .catch((err) => { throw new Error(`${err.message}; state ${c.pusher.connection.state}`); });
}

await serveLines(commands, { failure: (cmd) => ({ log: cmd.client && clients.get(cmd.client)?.log.slice(-20) }) });
for (const c of clients.values()) c.pusher.disconnect();
backend.close();
process.exit(0);

