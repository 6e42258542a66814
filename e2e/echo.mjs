// echo.mjs drives Laravel Echo (over pusher-js's web build) in headless Chromium for
// e2e/echo_test.go, over the line protocol browser.mjs speaks: one JSON command per
// line on stdin, one JSON reply per line on stdout ({"ok":true,...} or
// {"ok":false,"error":...}). Page console output goes to stderr.
//
// Each client is a page of one browser, named by the test, opened on the test's page
// (served by the Go test: it loads pusher-js and laravel-echo from e2e/node_modules,
// makes window.echo and logs what Echo's callbacks receive in window.t.log). The
// commands call the page's window.t functions and wait on its log.
//
// Environment: LONGLINK_CHROMIUM (browser binary; default /usr/bin/chromium). It never
// downloads a browser.
import { serveLines } from './lines.mjs';
import { launchChromium, watchPage } from './chromium.mjs';

const browser = await launchChromium();
const context = await browser.newContext();

// pages by client name, with the exceptions each has thrown.
const pages = new Map();

function client(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no client ${name}`);
  if (p.exceptions.length > 0) throw new Error(`page ${name} threw: ${p.exceptions.join('; ')}`);
  return p.page;
}

// find is run in the page: the first log entry matching want, or null.
const find = (want) => window.t.log.find((e) => e.seq >= (want.since || 0) && e.channel === want.channel &&
  e.event === want.event && (want.data === undefined || JSON.stringify(e.data) === JSON.stringify(want.data))) || null;

const commands = {
  async open({ client: name, url, timeoutMs }) {
    if (pages.has(name)) throw new Error(`client ${name} exists`);
    const page = await context.newPage();
    pages.set(name, { page, exceptions: watchPage(page, name) });
    await page.goto(url, { timeout: timeoutMs });
    await page.locator('body[data-ready]').waitFor({ state: 'attached', timeout: timeoutMs });
    await waitState(page, 'connected', timeoutMs);
    return { socketId: await page.evaluate(() => window.echo.socketId()) };
  },
  // call runs window.t[fn](...args) in the page and returns its result.
  async call({ client: name, fn, args = [] }) {
    const result = await client(name).evaluate(([fn, args]) => window.t[fn](...args), [fn, args]);
    return { result: result ?? null };
  },
  async state({ client: name, is, timeoutMs }) {
    const page = client(name);
    await waitState(page, is, timeoutMs);
    return { socketId: await page.evaluate(() => window.echo.socketId()) };
  },
  async mark({ client: name }) {
    return { seq: await client(name).evaluate(() => window.t.log.length) };
  },
  async expect({ client: name, timeoutMs, ...want }) {
    const page = client(name);
    const h = await page.waitForFunction(find, want, { timeout: timeoutMs, polling: 20 })
      .catch(async (err) => {
        const log = await page.evaluate(() => window.t.log.slice(-20)).catch(() => []);
        throw new Error(`${err.message.split('\n')[0]}: ${JSON.stringify(want)}; last seen ${JSON.stringify(log)}`);
      });
    return { entry: await h.jsonValue() };
  },
  async absent({ client: name, ...want }) {
    const e = await client(name).evaluate(find, want);
    if (e) throw new Error(`unexpected ${JSON.stringify(e)}`);
  },
  async close({ client: name }) {
    await client(name).close();
    pages.delete(name);
  },
};

async function waitState(page, is, timeoutMs) {
  await page.waitForFunction((is) => window.echo?.connector.pusher.connection.state === is, is, { timeout: timeoutMs, polling: 50 })
    .catch(async (err) => {
      const s = await page.evaluate(() => window.echo?.connector.pusher.connection.state).catch(() => '?');
      throw new Error(`${err.message.split('\n')[0]}: waiting for state ${is}, have ${s}`);
    });
}

await serveLines(commands, {
  check: (cmd) => {
    if (cmd.client && pages.get(cmd.client)?.exceptions.length) {
      throw new Error(`page threw: ${pages.get(cmd.client).exceptions.join('; ')}`);
    }
  },
});
await browser.close();

