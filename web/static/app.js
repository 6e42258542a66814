// The demo page: one LongLink connection, a live message list and a push form that
// posts through the node's same-origin proxy (the API key stays on the server).
// Query parameters override defaults: ?user=7&autoconnect=0&minBackoffMs=100&maxBackoffMs=2000&heartbeatMs=25000&protocol=v2
import { LongLink } from './longlink.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_ROWS = 200; // keep the DOM small on a long-running page
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

const cfg = await loadConfig();
let link = null;

$('user').value = params.get('user') || $('user').value;
$('url').value = usableURL(cfg.clientURL);
$('token-row').hidden = cfg.devToken;
$('push-section').hidden = !cfg.push;
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

function numberParam(name) {
  const v = params.get(name);
  return v === null ? undefined : Number(v);
}

function start() {
  if (link) link.close();
  const user = $('user').value.trim();
  const url = $('url').value.trim() || undefined;
  const token = cfg.devToken
    ? async () => {
      const res = await fetch(`token?user=${encodeURIComponent(user)}`, { cache: 'no-store' });
      const body = await res.json();
      if (!res.ok) throw new Error(`token: ${body.error || res.status}`);
      return body.token;
    }
    : () => {
      const t = $('token').value.trim();
      if (!t) throw new Error('paste a token first');
      return t;
    };
  try {
    link = new LongLink({
      url,
      endpointURL: cfg.endpointURL ? usableURL(cfg.endpointURL) : undefined,
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
  link.on('state', setStatus);
  link.on('open', (ev) => { $('where').textContent = ev.url.replace(/\?.*$/, ''); log(`open ${ev.url}`); });
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
  const user = $('user').value.trim();
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
