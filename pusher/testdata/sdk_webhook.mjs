// The official Pusher server SDK for Node (npm "pusher") as a webhook receiver:
// run by TestWebhookSDK (webhook_test.go). It reads one JSON object on stdin,
// {appId, key, secret, posts: [{name, headers, rawBody}]}, with the headers'
// names lowercased as Node's http module gives them, validates each POST with
// pusher.webhook({headers, rawBody}) exactly as an app's webhook endpoint does,
// and prints one JSON line: [{name, valid, events, timeMs}].
//
// Env: PUSHER_SDK_DIR (a dir with node_modules/pusher).
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.PUSHER_SDK_DIR, "node_modules", "x.js"));
const Pusher = require("pusher");

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { appId, key, secret, posts } = JSON.parse(input);
const pusher = new Pusher({ appId, key, secret });

const out = posts.map(({ name, headers, rawBody }) => {
  const wh = pusher.webhook({ headers, rawBody });
  const valid = wh.isValid();
  return {
    name,
    valid,
    events: valid ? wh.getEvents() : null,
    timeMs: valid ? wh.getTime().getTime() : null,
  };
});
process.stdout.write(JSON.stringify(out) + "\n");
