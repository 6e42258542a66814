// chromium.mjs starts the headless Chromium every e2e driver uses (browser.mjs,
// echo.mjs, jspackage/chromium.mjs): the system's binary (LONGLINK_CHROMIUM, default
// /usr/bin/chromium; playwright never downloads one), with nothing in the background
// that could reach the network.
import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.LONGLINK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}
