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

// watchPage sends page's console output to stderr, labelled, and returns the list
// its uncaught exceptions go to: a driver fails its next command while the list is
// not empty, since the page may look fine while its state machine is broken.
export function watchPage(page, label = 'page') {
  const exceptions = [];
  page.on('console', (m) => console.error(`[${label} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => {
    exceptions.push(e.message);
    console.error(`[${label} exception] ${e.message}`);
  });
  return exceptions;
}
