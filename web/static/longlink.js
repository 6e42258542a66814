// longlink.js: a dependency-free client for the longlink WebSocket gateway, for
// browsers and Node.js (>= 22 as it is; Node 20 needs the `ws` package passed as
// options.WebSocket, or --experimental-websocket: docs/client-js.md, "Install"). It connects with `?token=JWT`, reconnects with full-jitter
// exponential backoff, follows the gateway's close-code policy, optionally asks
// `GET /v1/endpoint` which node to use, and sends an application heartbeat.
//
// By default it speaks protocol v2 (subprotocol `longlink.v2`): every server message
// is a JSON envelope, the client tracks a position per stream and resumes with
// `?since=` after a reconnect, so pushes missed while it was away are replayed; it
// drops duplicates (by stream offset and by message id) and reports what history
// could not cover as 'lost'. It acknowledges pushes that ask for it once the
// application's handlers are done, sends upstream requests (send) and subscribes to
// rooms (subscribe), re-subscribing after reconnects. `protocol: 'plain'` keeps the
// old mode, in which each push is one message of exactly the pushed bytes.
//
// Docs and a copy-paste example: docs/client-js.md. Types: longlink.d.ts.
// web/static/longlink.js is a generated copy of this file (go generate ./web/).

/** Close codes the gateway sends, and what each means for the client. */
export const CloseCode = Object.freeze({
  NORMAL: 1000, // the client closed (or a server closed cleanly): see closePolicy
  GOING_AWAY: 1001, // the node is shutting down: reconnect, preferably elsewhere
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006, // never on the wire: the browser's "connection lost / refused"
  INVALID_DATA: 1007,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  REPLACED: 4000, // too many connections for this user; this, the oldest, was evicted
  KICKED: 4001, // closed through the API on purpose
  TOKEN_EXPIRED: 4003, // the token's exp passed while connected: get a new one
  SLOW_CONSUMER: 4008, // the client did not read fast enough
});

/** Policy values returned by closePolicy. */
export const Policy = Object.freeze({
  RECONNECT: 'reconnect',
  REFRESH_TOKEN: 'refresh-token',
  STOP: 'stop',
});

/**
 * closePolicy maps a close code to what the client does next. Codes the gateway
 * does not document (including 1000 from the server and 1006 for lost or refused
 * connections) reconnect with backoff: a transient failure must not leave a page
 * silently offline, and backoff bounds the cost of being wrong.
 * @param {number} code
 * @returns {'reconnect' | 'refresh-token' | 'stop'}
 */
export function closePolicy(code) {
  switch (code) {
    case CloseCode.REPLACED: // reconnecting would evict the newer connection in turn
    case CloseCode.KICKED:
      return Policy.STOP;
    case CloseCode.TOKEN_EXPIRED:
      return Policy.REFRESH_TOKEN;
    default:
      return Policy.RECONNECT;
  }
}

/**
 * backoffDelay is "full jitter" exponential backoff: a uniform random delay in
 * [0, min(maxMs, minMs * 2^attempt)). Full jitter spreads the reconnect storm that
 * follows a node shutdown (every client sees 1001 at the same instant) across the
 * whole window instead of synchronising it into waves.
 * @param {number} attempt zero-based count of consecutive failures
 * @param {number} minMs
 * @param {number} maxMs
 * @param {() => number} [random] returns [0, 1)
 */
export function backoffDelay(attempt, minMs, maxMs, random = Math.random) {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** HEARTBEAT is the text message the client sends every heartbeatMs. */
export const HEARTBEAT = '{"type":"ping"}';

/** SUBPROTOCOL_V2 is the WebSocket subprotocol the client offers for protocol v2. */
export const SUBPROTOCOL_V2 = 'longlink.v2';

// SEEN_IDS bounds the set of message ids remembered to drop a message that arrives
// again through another stream (typically replayed on a stream whose position had
// not caught up yet when the connection dropped).
const SEEN_IDS = 1000;

// MAX_ACK_PENDING bounds, per stream and connection, the pushes waiting for their
// handlers (or, with autoAck off, for ack()) that the cumulative ack has to wait
// for. Past it the stream's later pushes are not acknowledged on this connection;
// the server delivers them again on the next one, and they are acknowledged then.
const MAX_ACK_PENDING = 10000;

const DEFAULTS = Object.freeze({
  heartbeatMs: 25000,
  minBackoffMs: 500,
  maxBackoffMs: 30000,
  connectTimeoutMs: 10000,
  stableMs: 10000,
  requestTimeoutMs: 10000,
  ackDelayMs: 10,
});

// NO_WEBSOCKET is the error of a runtime without a global WebSocket (Node 20 and
// older; Node >= 22 and browsers have one): it names both ways out.
const NO_WEBSOCKET =
  'longlink: no WebSocket implementation: this runtime has no globalThis.WebSocket (Node.js < 22). ' +
  "Either `npm install ws` and pass it: import WebSocket from 'ws'; new LongLink({ WebSocket, ... }), " +
  'or run node with --experimental-websocket (Node 20.10+)';

const EVENTS = ['open', 'message', 'close', 'reconnecting', 'error', 'state', 'welcome', 'lost', 'push', 'servererror'];

// TRACK is where a push event that asks for an ack keeps its place in the ack state.
const TRACK = Symbol('longlink.ack');

/**
 * RequestError rejects the promises of send, subscribe and unsubscribe. code is
 * 'status' (the server answered with status >= 400; reason is its reason),
 * 'timeout' (no reply within the timeout), 'disconnected' (not open, or the
 * connection ended before the reply: the server may or may not have acted on it),
 * or 'overloaded' (maxPendingRequests requests are already waiting). status is 0
 * unless code is 'status'.
 */
export class RequestError extends Error {
  constructor(message, { code, status = 0, reason = '' }) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
    this.status = status;
    this.reason = reason;
  }
}

/**
 * LongLink is one logical connection to the gateway that survives reconnects.
 * Events: 'open' ({url}), 'message' (data: string | ArrayBuffer),
 * 'close' ({code, reason, wasClean, willReconnect}), 'reconnecting'
 * ({attempt, delayMs, code}), 'error' (Error), 'state' (new state string);
 * v2 only: 'welcome' (the welcome message), 'lost' ({stream, epoch, offset, since}),
 * 'push' ({id, stream, epoch, offset, data}).
 */
export class LongLink {
  /** @param {import('./longlink').LongLinkOptions} options */
  constructor(options = {}) {
    if (!options.url && !options.endpointURL) {
      throw new TypeError('longlink: options.url or options.endpointURL is required');
    }
    const t = typeof options.token;
    if (t !== 'string' && t !== 'function') {
      throw new TypeError('longlink: options.token must be a string or a function returning one');
    }
    this._opts = { ...DEFAULTS };
    for (const [k, v] of Object.entries(options)) {
      if (v !== undefined) this._opts[k] = v;
    }
    for (const k of Object.keys(DEFAULTS)) {
      const v = this._opts[k];
      if (typeof v !== 'number' || !(v >= 0)) {
        throw new TypeError(`longlink: options.${k} must be a non-negative number of milliseconds`);
      }
    }
    if (this._opts.minBackoffMs > this._opts.maxBackoffMs) {
      throw new TypeError('longlink: options.minBackoffMs must not exceed options.maxBackoffMs');
    }
    const protocol = this._opts.protocol === undefined ? 'v2' : this._opts.protocol;
    if (protocol !== 'v2' && protocol !== 'plain') {
      throw new TypeError("longlink: options.protocol must be 'v2' or 'plain'");
    }
    this._v2 = protocol === 'v2';
    this._autoAck = this._opts.autoAck === undefined ? true : this._opts.autoAck;
    if (typeof this._autoAck !== 'boolean') throw new TypeError('longlink: options.autoAck must be a boolean');
    const maxReq = this._opts.maxPendingRequests === undefined ? 256 : this._opts.maxPendingRequests;
    if (!Number.isSafeInteger(maxReq) || maxReq < 1) {
      throw new TypeError('longlink: options.maxPendingRequests must be a positive integer');
    }
    this._maxRequests = maxReq;
    // Requests (send, subscribe, unsubscribe) waiting for their reply, by id.
    this._requests = new Map();
    this._nextId = 1;
    // Rooms subscribed with subscribe(): subscribed again on every new connection.
    this._subscriptions = new Set();
    // Acks, per connection (reset by each welcome): per stream, the pushes asking for
    // an ack in offset order, and how far the cumulative ack may go and has gone.
    this._acks = new Map();
    this._msgAcks = new Set(); // ids to ack by message (pushes without a position)
    this._ackTimer = null;
    this._ackScheduled = false;
    this._conn = 0; // bumped per welcome: an ack decided for an older connection is not sent
    // Ids of pushes asking for an ack, across connections (at most SEEN_IDS each):
    // acked (a redelivery is acked again, not handled again), and handed to the
    // application but not acked (a handler threw, or ack() was not called yet): a
    // redelivery of those is handled again.
    this._acked = new Set();
    this._unacked = new Set();
    /** @type {Map<string, {epoch: string, offset: number}>} stream -> last position seen */
    this._positions = this._v2 && options.since != null ? parsePositions(options.since) : new Map();
    this._seen = new Set(); // ids of emitted messages, oldest first, at most SEEN_IDS
    // _tails, per connection: streams a welcome reported lost, with the offsets up to
    // its position that may still arrive (what history kept after the gap), see _onWelcome.
    this._tails = new Map();
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._fetch = options.fetch || (globalThis.fetch && globalThis.fetch.bind(globalThis));
    this._random = options.random || Math.random;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError(NO_WEBSOCKET);
    }
    if (options.endpointURL && typeof this._fetch !== 'function') {
      throw new TypeError('longlink: endpointURL needs fetch; pass options.fetch');
    }

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map(EVENTS.map((e) => [e, new Set()]));
    this._state = 'idle';
    this._ws = null; // the current socket; handlers of any other socket are ignored
    this._gen = 0; // bumped by connect/close so a stale async attempt can tell it lost
    this._attempt = 0; // consecutive failures, drives the backoff
    this._openedAt = 0;
    this._expired = false; // the last close was 4003: tell the token callback
    this._retryTimer = null;
    this._connectTimer = null;
    this._heartbeatTimer = null;
    this._staleBeats = 0;
    this._onOnline = () => {
      // The network came back: waiting out the rest of the backoff only delays
      // recovery, so retry now.
      if (this._state === 'reconnecting') this._retryNow();
    };
  }

  /** state is 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'. */
  get state() {
    return this._state;
  }

  /**
   * positions returns a copy of the position reached on each stream, as
   * {"user:42": {epoch, offset}, ...}: what the client sends as ?since= when it
   * reconnects. Persist it (e.g. in sessionStorage) and pass it as options.since to
   * resume on a new page load. Always {} with protocol 'plain'.
   * @returns {Record<string, {epoch: string, offset: number}>}
   */
  positions() {
    const out = {};
    for (const [stream, p] of this._positions) out[stream] = { epoch: p.epoch, offset: p.offset };
    return out;
  }

  /**
   * on adds a listener and returns a function that removes it.
   * @param {string} type
   * @param {Function} fn
   */
  on(type, fn) {
    const set = this._listeners.get(type);
    if (!set) throw new TypeError(`longlink: unknown event ${JSON.stringify(type)}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  /** off removes a listener added with on. */
  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /**
   * connect starts connecting (and reconnecting) until close() is called or the
   * gateway says not to come back. Calling it while connecting or open does nothing.
   */
  connect() {
    if (this._state === 'connecting' || this._state === 'open' || this._state === 'reconnecting') {
      return;
    }
    this._attempt = 0;
    this._expired = false;
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
    this._dial();
  }

  /**
   * close closes the connection with code 1000 and stops reconnecting. The 'close'
   * event fires synchronously with willReconnect false.
   */
  close(code = CloseCode.NORMAL, reason = '') {
    if (this._state === 'closed' || this._state === 'idle') return;
    const ws = this._ws;
    this._shutdown();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch (err) {
        this._emit('error', asError(err, 'close failed'));
      }
    }
    this._emit('close', { code, reason, wasClean: true, willReconnect: false });
  }

  /**
   * send(business, data, {timeout}) sends an upstream message to the business's
   * back-end (v2) and resolves with its reply, {status, data}; it rejects with a
   * RequestError on a status >= 400, on timeout (options.requestTimeoutMs unless
   * timeout is given) and when the connection is not open or ends first.
   *
   * send(data), with one argument, is the raw form: it writes data on the open
   * socket and returns whether it could (sendRaw).
   * @param {string} business
   * @param {unknown} [data] any JSON value
   * @param {{timeout?: number}} [options]
   */
  send(business, data, options) {
    if (arguments.length <= 1) return this.sendRaw(business);
    if (typeof business !== 'string' || business === '') {
      return Promise.reject(new TypeError('longlink: send: business must be a non-empty string'));
    }
    return this._request({ type: 'send', business, data: data === undefined ? null : data }, options);
  }

  /**
   * sendRaw writes data on the open socket as it is and reports whether it could.
   * A v2 server answers what is not one of its messages with an error
   * ('servererror'); a plain one counts it as activity.
   */
  sendRaw(data) {
    if (this._state !== 'open' || !this._ws) return false;
    this._ws.send(data);
    return true;
  }

  /**
   * subscribe joins room on this connection (v2) and keeps it joined across
   * reconnects: it is subscribed again after each welcome, resuming from its
   * position (a gap the server cannot fill is reported as 'lost'). It resolves
   * with the reply, whose data is the room stream's position
   * {stream, epoch, offset}; it rejects with a RequestError as send does (a
   * refusal has status and reason).
   * @param {string} room
   * @param {{timeout?: number}} [options]
   */
  subscribe(room, options) {
    if (typeof room !== 'string' || room === '') {
      return Promise.reject(new TypeError('longlink: subscribe: room must be a non-empty string'));
    }
    return this._request({ type: 'subscribe', room }, options).then((reply) => {
      this._subscriptions.add(room);
      this._subscribed(room, reply.data, undefined);
      return reply;
    });
  }

  /**
   * unsubscribe leaves a room joined with subscribe (v2); it is no longer
   * subscribed again after reconnects, and its position is forgotten.
   * @param {string} room
   * @param {{timeout?: number}} [options]
   */
  unsubscribe(room, options) {
    if (typeof room !== 'string' || room === '') {
      return Promise.reject(new TypeError('longlink: unsubscribe: room must be a non-empty string'));
    }
    return this._request({ type: 'unsubscribe', room }, options).then((reply) => {
      this._subscriptions.delete(room);
      const d = reply.data;
      this._positions.delete(d && typeof d.stream === 'string' ? d.stream : `room:${room}`);
      return reply;
    });
  }

  /** subscriptions lists the rooms joined with subscribe, in the order joined. */
  subscriptions() {
    return [...this._subscriptions];
  }

  /**
   * ack acknowledges a push that asked for it ('push' event with ack: true), for
   * autoAck: false. Acks are cumulative per stream: a push is acknowledged to the
   * server once it and every earlier push of its stream asking for one are. An
   * event of an earlier connection, or one acked already, is ignored.
   * @param {{id: string, ack?: boolean}} push the 'push' event
   */
  ack(push) {
    const t = push && push[TRACK];
    if (!t) throw new TypeError("longlink: ack: not a 'push' event that asked for an ack");
    this._ackDone(t);
  }

  // ---- internals -------------------------------------------------------------

  _setState(s) {
    if (this._state === s) return;
    this._state = s;
    this._emit('state', s);
  }

  _emit(type, arg) {
    for (const fn of [...this._listeners.get(type)]) {
      try {
        fn(arg);
      } catch (err) {
        // A throwing listener must not break the connection state machine.
        if (type !== 'error') this._emit('error', asError(err, `${type} listener threw`));
        else setTimeout(() => { throw err; }, 0);
      }
    }
  }

  // _shutdown stops everything and forgets the socket without emitting 'close'.
  _shutdown() {
    this._gen++;
    this._clearTimers();
    this._failRequests('closed');
    const ws = this._ws;
    this._ws = null;
    if (ws) detach(ws);
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
    this._setState('closed');
  }

  _clearTimers() {
    clearTimeout(this._retryTimer);
    clearTimeout(this._connectTimer);
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._ackTimer);
    this._retryTimer = this._connectTimer = this._heartbeatTimer = this._ackTimer = null;
    this._ackScheduled = false;
  }

  async _dial() {
    const gen = ++this._gen;
    this._setState('connecting');
    let url;
    try {
      url = await this._resolveURL();
      if (gen !== this._gen) return; // close() or another dial won while we waited
      const token = await this._token();
      if (gen !== this._gen) return;
      url = withToken(url, token);
      // Every connection but the very first (unless options.since was given) has
      // positions: ask the server to replay what was missed since then.
      if (this._v2 && this._positions.size > 0) url = withSince(url, this.positions());
    } catch (err) {
      if (gen !== this._gen) return;
      this._emit('error', asError(err, 'cannot prepare connection'));
      if (err && err.fatal) {
        this._stop(0, String(err.message));
        return;
      }
      this._scheduleRetry(0);
      return;
    }

    let ws;
    try {
      ws = this._v2 ? new this._WebSocket(url, [SUBPROTOCOL_V2]) : new this._WebSocket(url);
    } catch (err) {
      // A malformed URL throws synchronously; retrying cannot fix it.
      this._emit('error', asError(err, 'cannot create WebSocket'));
      this._stop(0, 'invalid url');
      return;
    }
    this._ws = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    let v2 = this._v2; // this connection's protocol, settled at open
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      // Browsers refuse a handshake that selects none of the offered subprotocols; a
      // laxer WebSocket implementation may not. Such a server speaks plain: deliver
      // its messages as they are (reported below, once the connection is set up).
      const notV2 = v2 && typeof ws.protocol === 'string' && ws.protocol !== SUBPROTOCOL_V2;
      if (notV2) v2 = false;
      this._tails = new Map();
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._openedAt = Date.now();
      this._expired = false;
      this._setState('open');
      this._startHeartbeat(ws);
      this._emit('open', { url: redact(url) });
      if (notV2 && this._ws === ws) {
        this._emit('error', new Error(`longlink: the server did not select ${SUBPROTOCOL_V2} (selected ${JSON.stringify(ws.protocol)}); this connection is plain, without recovery`));
      }
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._staleBeats = 0;
      if (v2) this._onV2Message(ev.data);
      else this._emit('message', ev.data);
    };
    ws.onerror = () => {
      if (this._ws !== ws) return;
      // Browsers deliberately hide the cause; the close event that follows has the code.
      this._emit('error', new Error('longlink: websocket error'));
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onSocketClose(ev.code, ev.reason || '', !!ev.wasClean, opened);
    };
    if (this._opts.connectTimeoutMs > 0) {
      this._connectTimer = setTimeout(() => {
        if (this._ws !== ws || opened) return;
        // Some networks black-hole SYNs; the browser's own timeout can be minutes.
        detach(ws);
        try {
          ws.close();
        } catch (_) {
          // closing a CONNECTING socket may throw in some implementations; it is dropped anyway
        }
        this._onSocketClose(CloseCode.ABNORMAL, 'connect timeout', false, false);
      }, this._opts.connectTimeoutMs);
    }
  }

  // ---- protocol v2 ----------------------------------------------------------

  _onV2Message(raw) {
    if (typeof raw !== 'string') {
      this._emit('error', new Error('longlink: v2 server sent a binary message; ignored'));
      return;
    }
    let m;
    try {
      m = JSON.parse(raw);
    } catch (err) {
      this._emit('error', new Error(`longlink: v2 server sent a message that is not JSON; ignored: ${err.message}`));
      return;
    }
    if (m === null || typeof m !== 'object') {
      this._emit('error', new Error('longlink: v2 server sent a message that is not a JSON object; ignored'));
      return;
    }
    switch (m.type) {
      case 'welcome':
        this._onWelcome(m);
        break;
      case 'push':
        this._onPush(m, raw);
        break;
      case 'reply':
        this._onReply(m);
        break;
      case 'error':
        // A message of ours without an id that the server could not handle.
        this._emit('servererror', { status: m.status, reason: typeof m.reason === 'string' ? m.reason : '' });
        break;
      case 'position': {
        // The message with this id reached us through another stream: it also
        // counts as seen on this one. Nothing for the application. Its id is left
        // alone: the push that carried it already went into the set, and should a
        // server send the position first, the push must still be delivered.
        const pos = positionOf(m);
        if (pos) this._advance(pos.stream, pos.epoch, pos.offset);
        break;
      }
      default:
        // Unknown types are ignored so a newer server can add some.
    }
  }

  // _onWelcome takes the connection's streams. The welcome gives each stream's
  // position as it will be once the replayed messages that follow are done, so a
  // stream that is being resumed keeps the position actually reached: the replay
  // advances it, and a connection lost halfway through the replay resumes from
  // where it really got to.
  _onWelcome(m) {
    const streams = m.streams !== null && typeof m.streams === 'object' ? m.streams : {};
    const next = new Map();
    const lost = [];
    this._tails = new Map();
    for (const [stream, w] of Object.entries(streams)) {
      if (w === null || typeof w !== 'object' || typeof w.epoch !== 'string' || !isOffset(w.offset)) {
        this._emit('error', new Error(`longlink: welcome has an invalid position for stream ${JSON.stringify(stream)}; ignored`));
        continue;
      }
      const cur = this._positions.get(stream); // sent in ?since= for this connection
      if (cur && w.recovered !== false && cur.epoch === w.epoch
        && (w.recovered === true ? cur.offset <= w.offset : cur.offset === w.offset)) {
        next.set(stream, cur); // the replay that follows brings it to w.offset
        continue;
      }
      // recovered:false, or a resumed stream the server did not answer for although
      // it is elsewhere now: what lies between will not come.
      if (w.recovered === false || (cur && w.recovered !== true)) {
        lost.push({ stream, epoch: w.epoch, offset: w.offset, since: cur ? { epoch: cur.epoch, offset: cur.offset } : null });
      }
      // A stream new to this client, or one whose missed messages will not come:
      // start from the server's position. Should the server still replay what its
      // history kept after the gap (offsets up to w.offset), accept that too.
      next.set(stream, { epoch: w.epoch, offset: w.offset });
      if (cur) this._tails.set(stream, { epoch: w.epoch, after: cur.epoch === w.epoch ? cur.offset : -Infinity, upTo: w.offset });
    }
    // Streams missing from the welcome are no longer this connection's: forget them,
    // but for the rooms subscribed with subscribe(), which are subscribed again now.
    const resubscribe = [];
    for (const room of this._subscriptions) {
      const stream = `room:${room}`;
      if (next.has(stream)) continue; // the server resumed it with the connection
      const before = this._positions.get(stream);
      if (before) next.set(stream, before);
      resubscribe.push([room, before]);
    }
    this._positions = next;
    // Acks belong to a connection: what the last one did not acknowledge, the
    // server delivers again on this one.
    this._conn++;
    this._acks = new Map();
    this._msgAcks = new Set();
    this._emit('welcome', m);
    for (const ev of lost) this._emit('lost', ev);
    for (const [room, before] of resubscribe) this._resubscribe(room, before);
  }

  // _resubscribe subscribes room again on a new connection. A refusal (4xx) drops it
  // from the subscriptions; a timeout or another failure leaves it for the next
  // connection. Either is reported as an 'error'.
  _resubscribe(room, before) {
    this._request({ type: 'subscribe', room }).then(
      (reply) => {
        if (this._subscriptions.has(room)) this._subscribed(room, reply.data, before);
      },
      (err) => {
        if (err.code === 'status' && err.status < 500) this._subscriptions.delete(room);
        this._emit('error', new Error(`longlink: subscribing to ${JSON.stringify(room)} again failed: ${err.message}`));
      },
    );
  }

  // _subscribed takes the room stream's position from a subscribe reply. before is
  // the position the client had reached when it subscribed again after a
  // reconnect: the reply's is later, so what lies between was missed.
  _subscribed(room, data, before) {
    if (data === null || typeof data !== 'object' || typeof data.epoch !== 'string' || !isOffset(data.offset)) return;
    const stream = typeof data.stream === 'string' ? data.stream : `room:${room}`;
    if (before && (before.epoch !== data.epoch || data.offset > before.offset)) {
      this._emit('lost', { stream, epoch: data.epoch, offset: data.offset, since: { epoch: before.epoch, offset: before.offset } });
    }
    const cur = this._positions.get(stream);
    // A stream the client already follows in this epoch keeps its position: pushes
    // after it may be on their way (or came before the reply). Only a stream
    // subscribed again after a gap, with nothing newer seen, jumps to the reply's.
    if (!cur || cur.epoch !== data.epoch || (before && cur === before)) {
      this._positions.set(stream, { epoch: data.epoch, offset: data.offset });
    }
  }

  _onPush(m, raw) {
    const pos = positionOf(m);
    let fresh = pos ? this._advance(pos.stream, pos.epoch, pos.offset) : true;
    if (!fresh && pos) {
      const tail = this._tails.get(pos.stream);
      if (tail && tail.epoch === pos.epoch && pos.offset > tail.after && pos.offset <= tail.upTo) {
        tail.after = pos.offset;
        fresh = true;
      }
    }
    const id = typeof m.id === 'string' ? m.id : undefined;
    if (id !== undefined) {
      if (this._seen.has(id)) fresh = false;
      this._remember(id);
    }
    const wantsAck = m.ack === true;
    if (!fresh) {
      // Already delivered: by offset, or by id through another stream. One that
      // asked for an ack comes again after a welcome until the server has an ack:
      // if this client acknowledged it (the ack was lost with the connection), ack
      // it again without handling it again. Otherwise it was never handled here (a
      // new page or device starts at the head, which such a message is behind) or
      // a handler failed: handle it, without moving the position back.
      if (!wantsAck) return;
      if (id !== undefined && this._acked.has(id)) {
        this._ackDone(this._track(pos, id));
        return;
      }
    }

    let message;
    let data;
    if (typeof m.data_base64 === 'string') {
      try {
        message = data = base64ToArrayBuffer(m.data_base64);
      } catch (err) {
        this._emit('error', new Error(`longlink: push ${id} has invalid data_base64; dropped`));
        return;
      }
    } else if ('data' in m) {
      data = m.data;
      // Exactly what plain mode delivers: a JSON string's characters, or any other
      // value's JSON text as pushed, byte for byte (the envelope carries it verbatim;
      // JSON.stringify would respace it and round numbers beyond 2^53).
      message = typeof data === 'string' ? data : memberText(raw, 'data') ?? JSON.stringify(data);
    } else {
      this._emit('error', new Error(`longlink: push ${id} has neither data nor data_base64; dropped`));
      return;
    }
    const ev = { id, data };
    if (typeof m.stream === 'string') ev.stream = m.stream;
    if (pos) {
      ev.epoch = pos.epoch;
      ev.offset = pos.offset;
    }
    if (!wantsAck) {
      this._emit('message', message);
      this._emit('push', ev);
      return;
    }
    ev.ack = true;
    const t = this._track(pos, id);
    Object.defineProperty(ev, TRACK, { value: t });
    if (id !== undefined) remember(this._unacked, id);
    const a = this._call('message', message);
    const b = this._call('push', ev);
    if (a.threw || b.threw || !this._autoAck) return; // no ack (autoAck off: ack(ev) does it)
    const pending = [...a.promises, ...b.promises];
    if (pending.length === 0) {
      this._ackDone(t);
      return;
    }
    Promise.all(pending).then(
      () => this._ackDone(t),
      (err) => this._emit('error', asError(err, `push ${id} handler rejected; not acknowledged`)),
    );
  }

  // _call runs type's listeners like _emit and reports whether one threw and the
  // promises they returned (a handler that returns one is done when it settles).
  _call(type, arg) {
    let threw = false;
    const promises = [];
    for (const fn of [...this._listeners.get(type)]) {
      try {
        const r = fn(arg);
        if (r && typeof r.then === 'function') promises.push(r);
      } catch (err) {
        threw = true;
        this._emit('error', asError(err, `${type} listener threw`));
      }
    }
    return { threw, promises };
  }

  // ---- acks -------------------------------------------------------------------

  // _track registers a push that asks for an ack in this connection's ack state:
  // in its stream's offset order when it has a position, else to be acked by id.
  _track(pos, id) {
    const t = { conn: this._conn, id, stream: null, entry: null };
    if (!pos) return t;
    let st = this._acks.get(pos.stream);
    if (!st || st.epoch !== pos.epoch) {
      st = { epoch: pos.epoch, pending: [], want: -1, sent: -1, full: false };
      this._acks.set(pos.stream, st);
    }
    t.stream = pos.stream;
    if (st.full) return t; // past MAX_ACK_PENDING: left to the next connection
    if (st.pending.length >= MAX_ACK_PENDING) {
      st.full = true;
      return t;
    }
    const entry = { offset: pos.offset, done: false };
    let i = st.pending.length;
    while (i > 0 && st.pending[i - 1].offset > entry.offset) i--;
    st.pending.splice(i, 0, entry);
    t.entry = entry;
    return t;
  }

  // _ackDone records that the push t tracks was handled, and schedules the acks it
  // makes possible.
  _ackDone(t) {
    if (t.id !== undefined) {
      this._unacked.delete(t.id);
      remember(this._acked, t.id);
    }
    if (t.conn !== this._conn) return; // that connection is gone; the server redelivers
    if (t.stream === null) {
      if (t.id !== undefined) this._msgAcks.add(t.id);
    } else {
      const st = this._acks.get(t.stream);
      if (!t.entry || !st || t.entry.done) return;
      t.entry.done = true;
      // Cumulative: up to the first push of the stream not handled yet.
      while (st.pending.length > 0 && st.pending[0].done) st.want = st.pending.shift().offset;
      if (st.want <= st.sent) return;
    }
    this._scheduleAcks();
  }

  // _scheduleAcks sends the acks decided within ackDelayMs together: one per stream
  // (its latest offset) and one per message without a position.
  _scheduleAcks() {
    if (this._ackScheduled) return;
    this._ackScheduled = true;
    const flush = () => {
      this._ackScheduled = false;
      this._ackTimer = null;
      this._flushAcks();
    };
    if (this._opts.ackDelayMs > 0) this._ackTimer = setTimeout(flush, this._opts.ackDelayMs);
    else queueMicrotask(flush);
  }

  _flushAcks() {
    const ws = this._ws;
    if (!ws || this._state !== 'open') return; // the next connection gets them again
    try {
      for (const [stream, st] of this._acks) {
        if (st.want > st.sent) {
          // The epoch makes sure an ack cannot cover messages of a newer history.
          ws.send(JSON.stringify({ type: 'ack', stream, epoch: st.epoch, offset: st.want }));
          st.sent = st.want;
        }
      }
      for (const id of this._msgAcks) ws.send(JSON.stringify({ type: 'ack', message: id }));
      this._msgAcks.clear();
    } catch (err) {
      this._emit('error', asError(err, 'sending acks failed'));
    }
  }

  // ---- requests ---------------------------------------------------------------

  // _request sends msg with a new id and settles with its reply (see send).
  _request(msg, options) {
    return new Promise((resolve, reject) => {
      if (!this._v2) {
        reject(new TypeError("longlink: send, subscribe and unsubscribe need protocol 'v2'"));
        return;
      }
      if (this._state !== 'open' || !this._ws) {
        reject(new RequestError(`longlink: ${msg.type}: not connected`, { code: 'disconnected' }));
        return;
      }
      if (this._requests.size >= this._maxRequests) {
        reject(new RequestError(`longlink: ${msg.type}: ${this._maxRequests} requests are already waiting for replies`, { code: 'overloaded' }));
        return;
      }
      const timeout = options && options.timeout !== undefined ? options.timeout : this._opts.requestTimeoutMs;
      if (typeof timeout !== 'number' || !(timeout > 0)) {
        reject(new TypeError('longlink: timeout must be a positive number of milliseconds'));
        return;
      }
      const id = this._nextId++;
      let text;
      try {
        text = JSON.stringify({ ...msg, id });
      } catch (err) {
        reject(asError(err, `${msg.type}: data is not JSON`));
        return;
      }
      const req = { type: msg.type, resolve, reject, timer: null };
      req.timer = setTimeout(() => {
        this._requests.delete(id);
        reject(new RequestError(`longlink: ${msg.type}: no reply within ${timeout} ms`, { code: 'timeout' }));
      }, timeout);
      this._requests.set(id, req);
      try {
        this._ws.send(text);
      } catch (err) {
        clearTimeout(req.timer);
        this._requests.delete(id);
        reject(new RequestError(`longlink: ${msg.type}: ${asError(err, 'send failed').message}`, { code: 'disconnected' }));
      }
    });
  }

  _onReply(m) {
    const req = this._requests.get(m.id);
    if (!req) return; // timed out already, or not ours
    this._requests.delete(m.id);
    clearTimeout(req.timer);
    const status = Number.isSafeInteger(m.status) ? m.status : 0;
    if (status >= 200 && status < 400) {
      req.resolve({ status, data: m.data });
      return;
    }
    const reason = typeof m.reason === 'string' ? m.reason : '';
    req.reject(new RequestError(`longlink: ${req.type}: ${status} ${reason}`, { code: 'status', status, reason }));
  }

  // _failRequests rejects every request waiting for a reply: the connection that
  // would carry it is gone.
  _failRequests(why) {
    if (this._requests.size === 0) return;
    const reqs = [...this._requests.values()];
    this._requests.clear();
    for (const req of reqs) {
      clearTimeout(req.timer);
      req.reject(new RequestError(`longlink: ${req.type}: ${why} before the reply`, { code: 'disconnected' }));
    }
  }

  // _advance records that offset on stream was seen and reports whether it is new:
  // a later offset of the same epoch, or any offset of an epoch not seen before (the
  // server has announced the loss in a welcome, or the stream is new to us).
  _advance(stream, epoch, offset) {
    const cur = this._positions.get(stream);
    if (cur && cur.epoch === epoch && offset <= cur.offset) return false;
    this._positions.set(stream, { epoch, offset });
    return true;
  }

  _remember(id) {
    remember(this._seen, id);
  }

  async _resolveURL() {
    const { endpointURL, url } = this._opts;
    if (!endpointURL) return url;
    try {
      const res = await this._fetch(endpointURL, { cache: 'no-store' });
      if (!res.ok) throw new Error(`GET ${endpointURL}: HTTP ${res.status}`);
      const body = await res.json();
      if (!body || typeof body.endpoint !== 'string' || body.endpoint === '') {
        throw new Error(`GET ${endpointURL}: response has no endpoint`);
      }
      return body.endpoint;
    } catch (err) {
      // A fixed url is the fallback when discovery is down; without one, retry later.
      if (url) return url;
      throw err;
    }
  }

  async _token() {
    const { token } = this._opts;
    if (typeof token === 'string') {
      if (this._expired) {
        const err = new Error('longlink: token expired and options.token is a fixed string; pass a function to refresh it');
        err.fatal = true;
        throw err;
      }
      return token;
    }
    const t = await token({ expired: this._expired });
    if (typeof t !== 'string' || t === '') throw new Error('longlink: token callback returned no token');
    return t;
  }

  _onSocketClose(code, reason, wasClean, opened) {
    clearTimeout(this._connectTimer);
    clearInterval(this._heartbeatTimer);
    this._connectTimer = this._heartbeatTimer = null;
    this._ws = null;
    this._failRequests(`connection closed (${code})`);
    if (opened && Date.now() - this._openedAt >= this._opts.stableMs) {
      // The connection was healthy for a while, so this is a fresh failure, not the
      // next in a streak. Resetting only after stableMs keeps a server that accepts
      // and immediately closes from causing a tight reconnect loop.
      this._attempt = 0;
    }
    const policy = closePolicy(code);
    if (policy === Policy.STOP) {
      this._stop(code, reason, wasClean);
      return;
    }
    if (policy === Policy.REFRESH_TOKEN) {
      if (typeof this._opts.token === 'string') {
        this._emit('error', new Error('longlink: token expired and options.token is a fixed string; pass a function to refresh it'));
        this._stop(code, reason, wasClean);
        return;
      }
      this._expired = true;
    }
    this._emit('close', { code, reason, wasClean, willReconnect: true });
    this._scheduleRetry(code);
  }

  _stop(code, reason, wasClean = false) {
    this._shutdown();
    this._emit('close', { code, reason, wasClean, willReconnect: false });
  }

  _scheduleRetry(code) {
    const { minBackoffMs, maxBackoffMs } = this._opts;
    const delayMs = backoffDelay(this._attempt, minBackoffMs, maxBackoffMs, this._random);
    this._attempt++;
    const gen = ++this._gen;
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs, code });
    if (gen !== this._gen) return; // a listener called close() or connect()
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (gen === this._gen) this._dial();
    }, delayMs);
  }

  _retryNow() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._dial();
  }

  // The gateway closes connections it has not heard from in ~90 s, and browsers
  // cannot send ping frames, so the client sends a small text message instead; the
  // gateway counts any client message as activity. It also keeps NAT and proxy idle
  // timers from firing. If the previous heartbeat is still unsent two beats later
  // (bufferedAmount > 0), the path is dead even though the browser has not noticed:
  // close and reconnect instead of waiting minutes for TCP to give up.
  _startHeartbeat(ws) {
    const { heartbeatMs } = this._opts;
    this._staleBeats = 0;
    if (heartbeatMs <= 0) return;
    this._heartbeatTimer = setInterval(() => {
      if (this._ws !== ws) return;
      if (ws.bufferedAmount > 0) {
        if (++this._staleBeats >= 2) {
          detach(ws);
          try {
            ws.close(CloseCode.NORMAL, 'heartbeat timeout');
          } catch (_) {
            // the socket is being replaced; a failing close changes nothing
          }
          this._onSocketClose(CloseCode.ABNORMAL, 'heartbeat timeout', false, true);
          return;
        }
      } else {
        this._staleBeats = 0;
      }
      try {
        ws.send(HEARTBEAT);
      } catch (err) {
        this._emit('error', asError(err, 'heartbeat send failed'));
      }
    }, heartbeatMs);
  }
}

// remember adds id to set as its newest member, keeping at most SEEN_IDS.
function remember(set, id) {
  set.delete(id);
  set.add(id);
  if (set.size > SEEN_IDS) set.delete(set.values().next().value);
}

// detach stops a socket the client has let go of from reaching it. It keeps an error
// handler: the ws package (Node 20) emits 'error' when a socket closed while
// connecting aborts its handshake, and an EventEmitter 'error' without a listener
// is thrown, which would crash the process.
function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = ignore;
}

function ignore() {}

function withToken(url, token) {
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

// withSince adds since=<positions as JSON>, percent-encoded with encodeURIComponent.
function withSince(url, positions) {
  const u = new URL(url);
  u.searchParams.delete('since');
  const rest = u.search.length > 1 ? `${u.search.slice(1)}&` : '';
  u.search = `?${rest}since=${encodeURIComponent(JSON.stringify(positions))}`;
  return u.toString();
}

// parsePositions validates options.since: {"user:42": {"epoch": "e", "offset": 18}}.
function parsePositions(since) {
  if (typeof since !== 'object' || Array.isArray(since)) {
    throw new TypeError('longlink: options.since must be an object of {epoch, offset} by stream, as positions() returns');
  }
  const out = new Map();
  for (const [stream, p] of Object.entries(since)) {
    if (p === null || typeof p !== 'object' || typeof p.epoch !== 'string' || !isOffset(p.offset)) {
      throw new TypeError(`longlink: options.since[${JSON.stringify(stream)}] must be {epoch: string, offset: non-negative integer}`);
    }
    out.set(stream, { epoch: p.epoch, offset: p.offset });
  }
  return out;
}

// positionOf is the {stream, epoch, offset} a push or position message carries, or
// null (a push with history off, or one sent to connection ids).
function positionOf(m) {
  if (typeof m.stream !== 'string' || typeof m.epoch !== 'string' || !isOffset(m.offset)) return null;
  return { stream: m.stream, epoch: m.epoch, offset: m.offset };
}

// memberText returns the text of the last top-level member key of the JSON object in
// text, which JSON.parse has accepted, or undefined when there is none.
function memberText(text, key) {
  let found;
  let i = skipSpace(text, 0) + 1; // past '{'
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] !== '"') return found; // '}'
    const k = i;
    i = endOfValue(text, i);
    const name = JSON.parse(text.slice(k, i));
    i = skipSpace(text, i) + 1; // past ':'
    i = skipSpace(text, i);
    const v = i;
    i = endOfValue(text, i);
    if (name === key) found = text.slice(v, i);
    i = skipSpace(text, i) + 1; // past ',' or '}'
  }
}

function skipSpace(text, i) {
  while (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r') i++;
  return i;
}

// endOfValue returns the index just past the JSON value that starts at i.
function endOfValue(text, i) {
  const c = text[i];
  if (c === '"') {
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    return i + 1;
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    for (;;) {
      const d = text[i];
      if (d === '"') {
        i = endOfValue(text, i);
        continue;
      }
      if (d === '{' || d === '[') depth++;
      else if (d === '}' || d === ']') {
        if (--depth === 0) return i + 1;
      }
      i++;
    }
  }
  while (i < text.length && !',}] \t\n\r'.includes(text[i])) i++; // number, true, false, null
  return i;
}

function isOffset(v) {
  return Number.isSafeInteger(v) && v >= 0;
}

// base64ToArrayBuffer decodes standard base64 (padding optional) as a browser would
// deliver a binary message with binaryType 'arraybuffer'.
function base64ToArrayBuffer(s) {
  const bin = atob(s);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

// redact keeps the token out of events that applications tend to log.
function redact(url) {
  const u = new URL(url);
  if (u.searchParams.has('token')) u.searchParams.set('token', 'REDACTED');
  return u.toString();
}

function asError(err, context) {
  if (err instanceof Error) return err;
  return new Error(`longlink: ${context}: ${String(err)}`);
}
