// chromium.mjs runs session.js in headless Chromium for e2e/jspackage_test.go: it
// opens the page the test serves (LONGLINK_PAGE_URL, index.html of the scratch
// project) and runs every other command as window.session[cmd](args) in the page,
// over the line protocol of e2e/lines.mjs. Page console output goes to stderr; an
// exception the page throws fails the next command.
//
// Environment: LONGLINK_PAGE_URL, LONGLINK_CHROMIUM (default /usr/bin/chromium).
import { serveLines } from '../lines.mjs';
import { launchChromium, watchPage } from '../chromium.mjs';

const pageURL = process.env.LONGLINK_PAGE_URL;
if (!pageURL) {
  console.error('chromium.mjs: LONGLINK_PAGE_URL is not set');
  process.exit(2);
}
const browser = await launchChromium();
const page = await browser.newPage();
const exceptions = watchPage(page);

const forward = (name) => (args) => page.evaluate(([n, a]) => window.session[n](a), [name, args]);

try {
  await serveLines(
    {
      async open({ timeoutMs }) {
        await page.goto(pageURL, { timeout: timeoutMs });
        await page.locator('body[data-ready]').waitFor({ state: 'attached', timeout: timeoutMs });
        return { userAgent: await page.evaluate(() => navigator.userAgent) };
      },
      connect: forward('connect'),
      expect: forward('expect'),
      closeWhileConnecting: forward('closeWhileConnecting'),
      close: forward('close'),
    },
    {
      check() {
        if (exceptions.length > 0) throw new Error(`the page threw: ${exceptions.join('; ')}`);
      },
    },
  );
} finally {
  await browser.close();
}
