// browser.mjs drives a headless Chromium for e2e/browser_test.go over a line protocol:
// the Go test writes one JSON command per line on stdin, this script answers one JSON
// line per command on stdout ({"ok":true} or {"ok":false,"error":...}). Browser
// console output and page errors go to stderr, which the Go test logs.
//
// Environment: LONGLINK_DEMO_URL (page to open), LONGLINK_CHROMIUM (browser binary;
// default /usr/bin/chromium). It never downloads a browser.
import { serveLines } from './lines.mjs';
import { launchChromium, watchPage } from './chromium.mjs';

const demoURL = process.env.LONGLINK_DEMO_URL;
if (!demoURL) {
  console.error('browser.mjs: LONGLINK_DEMO_URL is not set');
  process.exit(2);
}

const browser = await launchChromium();
const page = await browser.newPage();
const exceptions = watchPage(page);

// statusText reads #status; pages that have not loaded yet count as ''.
const statusText = () => page.locator('#status').textContent({ timeout: 1000 }).catch(() => '');

// snapshot tells a failing test what the page saw.
async function snapshot() {
  const text = async (sel) => page.locator(sel).innerText({ timeout: 1000 }).catch((e) => `<${e.message}>`);
  return { status: await statusText(), log: await text('#log'), messages: await text('#messages'), pushResult: await text('#push-result') };
}

const commands = {
  // open loads the demo page and connects as user with token (pasted, as a user of a
  // production node without dev tokens would), to url when given (typed into the box).
  async open({ user = '42', token, url, timeoutMs }) {
    await load({ timeoutMs });
    await fillIn({ user, token, url, timeoutMs });
    await page.click('#connect', { timeout: timeoutMs });
    await waitStatus({ is: 'open', timeoutMs });
  },
  // load loads the demo page without connecting.
  async load({ timeoutMs }) {
    await load({ timeoutMs });
  },
  // fill types into the page's inputs what open would, without connecting.
  async fill(cmd) {
    await fillIn(cmd);
  },
  async connect({ timeoutMs }) {
    await page.click('#connect', { timeout: timeoutMs });
  },
  // read reports an element's text, input value and visibility.
  async read({ sel, timeoutMs }) {
    const el = page.locator(sel);
    await el.waitFor({ state: 'attached', timeout: timeoutMs });
    const visible = await el.isVisible();
    const value = await el.evaluate((e) => ('value' in e ? e.value : null));
    return { text: await el.innerText(), value, visible };
  },
  async screenshot({ path }) {
    await page.setViewportSize({ width: 1000, height: 720 });
    await page.screenshot({ path });
  },
  async status(cmd) {
    await waitStatus(cmd);
  },
  async expect({ text, timeoutMs }) {
    await page.locator('#messages li', { hasText: text }).first().waitFor({ timeout: timeoutMs });
  },
  async expectLog({ text, timeoutMs }) {
    await page.locator('#log li', { hasText: text }).first().waitFor({ timeout: timeoutMs });
  },
  async push({ text, target = 'user', timeoutMs }) {
    await page.selectOption('#push-target', target, { timeout: timeoutMs });
    await page.fill('#push-text', text, { timeout: timeoutMs });
    await page.click('#push-send', { timeout: timeoutMs });
    // #push-result shows "<status> <body>" once the proxy answered.
    await page.waitForFunction(() => /^\d{3} /.test(document.getElementById('push-result').textContent), null, { timeout: timeoutMs });
    const result = (await page.locator('#push-result').textContent()).trim();
    if (!result.startsWith('202 ')) throw new Error(`push form answered ${result}`);
    return { result };
  },
};

async function load({ timeoutMs }) {
  await page.goto(demoURL, { timeout: timeoutMs });
  // app.js marks the body once it has read config.json and shown the right inputs.
  await page.locator('body[data-ready]').waitFor({ state: 'attached', timeout: timeoutMs });
}

async function fillIn({ user, token, url, timeoutMs }) {
  // With dev tokens the page mints a token for the user typed; without, the user is
  // the pasted token's and the user input is hidden.
  if (user && await page.locator('#user-row').isVisible()) {
    await page.fill('#user', user, { timeout: timeoutMs });
  }
  if (token && await page.locator('#token-row').isVisible()) {
    await page.fill('#token', token, { timeout: timeoutMs });
  }
  if (url !== undefined) await page.fill('#url', url, { timeout: timeoutMs });
}

async function waitStatus({ is, not, timeoutMs }) {
  await page.waitForFunction(
    ([is, not]) => {
      const s = document.getElementById('status')?.textContent;
      return is ? s === is : s !== not;
    },
    [is, not],
    { timeout: timeoutMs, polling: 50 },
  );
}

await serveLines(commands, {
  check: () => {
    if (exceptions.length > 0) throw new Error(`page threw: ${exceptions.join('; ')}`);
  },
  failure: async () => ({ page: await snapshot() }),
});
await browser.close();

