// longlink.js: a dependency-free browser (and Node >= 22) client for the longlink
// WebSocket gateway. It connects with `?token=JWT`, reconnects with full-jitter
// exponential backoff, follows the gateway's close-code policy, optionally asks
// `GET /v1/endpoint` which node to use, and sends an application heartbeat.
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

const DEFAULTS = Object.freeze({
  heartbeatMs: 25000,
  minBackoffMs: 500,
  maxBackoffMs: 30000,
  connectTimeoutMs: 10000,
  stableMs: 10000,
});

const EVENTS = ['open', 'message', 'close', 'reconnecting', 'error', 'state'];

/**
 * LongLink is one logical connection to the gateway that survives reconnects.
 * Events: 'open' ({url}), 'message' (data: string | ArrayBuffer),
 * 'close' ({code, reason, wasClean, willReconnect}), 'reconnecting'
 * ({attempt, delayMs, code}), 'error' (Error), 'state' (new state string).
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
      ws = new this._WebSocket(url);
    } catch (err) {
      // A malformed URL throws synchronously; retrying cannot fix it.
      this._emit('error', asError(err, 'cannot create WebSocket'));
      this._stop(0, 'invalid url');
      return;
    }
    this._ws = ws;
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      this._openedAt = Date.now();
      this._expired = false;
      this._setState('open');
      this._startHeartbeat(ws);
      this._emit('open', { url: redact(url) });
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._staleBeats = 0;
      this._emit('message', ev.data);
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
