// longlink.js: a dependency-free browser (and Node >= 22) client for the longlink
// WebSocket gateway. It connects with `?token=JWT`, reconnects with full-jitter
// exponential backoff, follows the gateway's close-code policy, optionally asks
// `GET /v1/endpoint` which node to use, and sends an application heartbeat.
//
// By default it speaks protocol v2 (subprotocol `longlink.v2`): every server message
// is a JSON envelope, the client tracks a position per stream and resumes with
// `?since=` after a reconnect, so pushes missed while it was away are replayed; it
// drops duplicates (by stream offset and by message id) and reports what history
// could not cover as 'lost'. `protocol: 'plain'` keeps the old mode, in which each
// push is one message of exactly the pushed bytes.
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

const DEFAULTS = Object.freeze({
  heartbeatMs: 25000,
  minBackoffMs: 500,
  maxBackoffMs: 30000,
  connectTimeoutMs: 10000,
  stableMs: 10000,
});

const EVENTS = ['open', 'message', 'close', 'reconnecting', 'error', 'state', 'welcome', 'lost', 'push'];

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
      throw new TypeError('longlink: no WebSocket implementation; pass options.WebSocket');
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
   * send sends data on the open socket and reports whether it could. What the
   * gateway does with client messages depends on its configuration; by default it
   * counts them as activity and drops them.
   */
  send(data) {
    if (this._state !== 'open' || !this._ws) return false;
    this._ws.send(data);
    return true;
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
    this._retryTimer = this._connectTimer = this._heartbeatTimer = null;
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
    // Streams missing from the welcome are no longer this connection's: forget them.
    this._positions = next;
    this._emit('welcome', m);
    for (const ev of lost) this._emit('lost', ev);
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
    if (!fresh) return; // already delivered: by offset, or by id through another stream

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
    this._emit('message', message);
    const ev = { id, data };
    if (typeof m.stream === 'string') ev.stream = m.stream;
    if (pos) {
      ev.epoch = pos.epoch;
      ev.offset = pos.offset;
    }
    this._emit('push', ev);
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
    this._seen.delete(id);
    this._seen.add(id);
    if (this._seen.size > SEEN_IDS) this._seen.delete(this._seen.values().next().value);
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

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
}

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
