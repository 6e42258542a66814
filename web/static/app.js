// The demo page: one LongLink connection, a live message list and a push form that
// posts through the node's same-origin proxy (the API key stays on the server).
// Query parameters override defaults: ?user=7&url=ws://host:8080/ws&autoconnect=0&minBackoffMs=100&maxBackoffMs=2000&heartbeatMs=25000&protocol=v2
//
// What the page shows is what it does: it connects to the URL in its box (GET
// /v1/endpoint only pre-fills the box, and is asked on every attempt only when the box
// is empty), the user it shows is the one its token is for, and when it cannot push
// it says why.
import { LongLink } from './longlink.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_ROWS = 200; // keep the DOM small on a long-running page
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

const cfg = await loadConfig();
let link = null;
let linkUser = ''; // the user of the running connection's token

$('user').value = params.get('user') || $('user').value;
// A node without dev tokens takes a pasted token, whose user is the one connected:
// the page shows that user instead of an input that would not matter.
$('user-row').hidden = !cfg.devToken;
$('token-row').hidden = cfg.devToken;
$('token-user').hidden = cfg.devToken;
$('push-form').hidden = !cfg.push;
$('push-off').hidden = cfg.push;
$('token').addEventListener('input', showTokenUser);
$('user').addEventListener('input', showPushCurl);
showTokenUser();
await prefillURL();
setStatus('idle');
document.body.dataset.ready = '1'; // the inputs are set up: tests and users may act

$('connect-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  start();
});
$('disconnect').addEventListener('click', () => link && link.close());
$('push-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendPush();
});

if (params.get('autoconnect') !== '0' && cfg.devToken && ($('url').value || cfg.endpointURL)) start();

async function loadConfig() {
  const res = await fetch('config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  return res.json();
}

// prefillURL fills the URL box: ?url= if given, else the node GET /v1/endpoint names
// (the least loaded), else the node's own client URL. The box is then the truth: the
// page connects to whatever it holds when Connect is pressed.
async function prefillURL() {
  const note = $('url-note');
  if (params.get('url')) {
    $('url').value = params.get('url');
    return;
  }
  $('url').value = usableURL(cfg.clientURL);
  if (!cfg.endpointURL) return;
  const endpoint = usableURL(cfg.endpointURL);
  try {
    const res = await fetch(endpoint, { cache: 'no-store', signal: AbortSignal.timeout(3000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    if (typeof body.endpoint !== 'string' || !body.endpoint) throw new Error('no endpoint in the answer');
    $('url').value = usableURL(body.endpoint);
    note.textContent = `Filled in by ${endpoint} (the least loaded node${body.node ? `: ${body.node}` : ''}). ` +
      'Connect uses the URL in the box; empty it to ask the node on every attempt.';
  } catch (err) {
    note.textContent = `${endpoint} did not answer (${err.message}); the box holds this node's own client URL.`;
  }
}

// tokenUser returns the user (the sub claim) a pasted token is for, or throws. It reads
// the token without verifying it: the node verifies it at the handshake, this only
// shows who the page will be.
function tokenUser(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a JWT (three dot-separated parts)');
  let claims;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    throw new Error('its payload is not base64url JSON');
  }
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new Error('it has no sub (user) claim');
  return claims.sub;
}

function showTokenUser() {
  const el = $('token-user');
  const t = $('token').value.trim();
  el.className = '';
  if (!t) {
    el.textContent = 'user: from the token';
  } else {
    try {
      el.textContent = `user ${tokenUser(t)} (from the token)`;
    } catch (err) {
      el.textContent = `token: ${err.message}`;
      el.className = 'err';
    }
  }
  showPushCurl();
}

// currentUser is who the page is, or will be once connected: the dev user it mints a
// token for, or the pasted token's.
function currentUser() {
  if (link && linkUser) return linkUser;
  if (cfg.devToken) return $('user').value.trim();
  try {
    return tokenUser($('token').value.trim());
  } catch {
    return '';
  }
}

// showPushCurl keeps the shell line of the push-off note aimed at the current user.
function showPushCurl() {
  if (cfg.push) return;
  const user = currentUser() || '<user>';
  const body = JSON.stringify({ to: { users: [user] }, data: 'hello' }).replace(/'/g, "'\\''");
  $('push-curl').textContent = `curl -H 'Authorization: Bearer <api key>' -d '${body}' ${location.origin}/v1/push`;
}

function numberParam(name) {
  const v = params.get(name);
  return v === null ? undefined : Number(v);
}

// usableURL makes a configured URL dialable from this browser: a wildcard or empty
// listen host (0.0.0.0, [::], ":8080") becomes the page's own host name, and so does a
// loopback host when the page itself was not loaded over loopback (the node printed
// 127.0.0.1 but the browser is on another machine).
function usableURL(raw) {
  if (!raw) return '';
  const m = /^(wss?|https?):\/\/(\[[^\]]*\]|[^/:]*)(.*)$/.exec(raw);
  if (!m) return raw;
  const [, scheme, host, rest] = m;
  const wildcard = host === '' || host === '0.0.0.0' || host === '[::]';
  const foreignLoopback = LOOPBACK.test(host) && !LOOPBACK.test(location.hostname);
  return wildcard || foreignLoopback ? `${scheme}://${location.host.replace(/:\d+$/, '')}${rest}` : raw;
}

function start() {
  if (link) link.close();
  link = null;
  let user;
  let token;
  if (cfg.devToken) {
    user = $('user').value.trim();
    token = async () => {
      const res = await fetch(`token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
      const body = await res.json();
      if (!res.ok) throw new Error(`token: ${body.error || res.status}`);
      return body.token;
    };
  } else {
    const t = $('token').value.trim();
    if (!t) {
      log('cannot connect: paste a token first (mint one with: longlink token --secret <token secret> --user <id>)');
      return;
    }
    try {
      user = tokenUser(t);
    } catch (err) {
      log(`cannot connect: the token is ${err.message}`);
      return;
    }
    token = () => t;
  }
  // The box is what the page connects to; only an empty box asks the node each time.
  const url = $('url').value.trim();
  try {
    link = new LongLink({
      url: url || undefined,
      endpointURL: !url && cfg.endpointURL ? usableURL(cfg.endpointURL) : undefined,
      token,
      heartbeatMs: numberParam('heartbeatMs'),
      minBackoffMs: numberParam('minBackoffMs'),
      maxBackoffMs: numberParam('maxBackoffMs'),
      // v2 (positions, recovery on reconnect) unless ?protocol=plain.
      protocol: params.get('protocol') || 'v2',
    });
  } catch (err) {
    log(`cannot start: ${err.message}`);
    return;
  }
  linkUser = user;
  showPushCurl();
  log(`connecting as user ${user} to ${url || `the node ${usableURL(cfg.endpointURL)} names`}`);
  link.on('state', setStatus);
  link.on('open', (ev) => { $('where').textContent = `user ${user} at ${ev.url.replace(/\?.*$/, '')}`; log(`open ${ev.url.replace(/([?&]token=)[^&]*/, '$1…')}`); });
  link.on('message', (data) => addRow($('messages'), render(data)));
  link.on('close', (ev) => log(`close code=${ev.code}${ev.reason ? ` reason=${ev.reason}` : ''} reconnect=${ev.willReconnect}`));
  link.on('reconnecting', (ev) => log(`reconnecting attempt=${ev.attempt} in ${ev.delayMs} ms`));
  link.on('error', (err) => log(`error ${err.message}`));
  link.on('welcome', (w) => log(`welcome connection=${w.connection} node=${w.node} streams=${Object.keys(w.streams || {}).join(',')}`));
  link.on('lost', (ev) => log(`lost stream=${ev.stream}: messages were missed, now at ${ev.epoch}/${ev.offset}`));
  link.connect();
}

function render(data) {
  if (typeof data === 'string') return data;
  const bytes = new Uint8Array(data);
  const hex = Array.from(bytes.slice(0, 32), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `[binary ${bytes.length} B] ${hex}${bytes.length > 32 ? ' …' : ''}`;
}

async function sendPush() {
  const text = $('push-text').value;
  const user = currentUser();
  const to = $('push-target').value === 'all' ? { all: true } : { users: [user] };
  const out = $('push-result');
  out.textContent = '…';
  out.className = '';
  try {
    const res = await fetch(cfg.pushPath, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ to, data: text }),
    });
    out.textContent = `${res.status} ${(await res.text()).trim()}`;
    if (!res.ok) out.className = 'err';
  } catch (err) {
    out.textContent = err.message;
    out.className = 'err';
  }
}

function setStatus(state) {
  const el = $('status');
  el.textContent = state;
  el.dataset.state = state;
}

function log(text) {
  addRow($('log'), text);
}

function addRow(list, text) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour12: false }) + '.' + String(now.getMilliseconds()).padStart(3, '0');
  const span = document.createElement('span');
  span.className = 'data';
  span.textContent = text; // textContent, never innerHTML: pushes are untrusted
  li.append(time, span);
  list.append(li);
  while (list.children.length > MAX_ROWS) list.firstElementChild.remove();
  li.scrollIntoView({ block: 'nearest' });
}
