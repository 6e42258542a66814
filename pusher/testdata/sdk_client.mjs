// The official Pusher server SDK for Node (npm "pusher") as a publisher against
// longlink's Pusher HTTP API; run by TestSDKClient (sdk_test.go), which reads the one
// JSON line this prints: [{step, status, body}, ...]. Nothing here signs by hand
// except the "tampered" step, which changes one character of an SDK-made signature.
//
// Env: PUSHER_SDK_DIR (a dir with node_modules/pusher), PUSHER_PORT, PUSHER_APP_ID,
// PUSHER_KEY, PUSHER_SECRET.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.PUSHER_SDK_DIR, "node_modules", "x.js"));
const Pusher = require("pusher");

const opts = {
  appId: process.env.PUSHER_APP_ID,
  key: process.env.PUSHER_KEY,
  secret: process.env.PUSHER_SECRET,
  host: "127.0.0.1",
  port: Number(process.env.PUSHER_PORT),
  useTLS: false,
  timeout: 10000,
};
const pusher = new Pusher(opts);
const out = [];

// run records what a call answered: the status and the parsed body, or the
// status of the RequestError the SDK rejected with.
async function run(step, fn) {
  try {
    const res = await fn();
    const text = await res.text();
    const json = (res.headers.get("content-type") ?? "").startsWith("application/json");
    out.push({ step, status: res.status, body: json ? JSON.parse(text) : text });
  } catch (e) {
    out.push({ step, status: e.status ?? -1, error: String(e.message ?? e), body: e.body ?? null });
  }
}

await run("trigger", () =>
  pusher.trigger(["news", "presence-room"], "ev", { a: 1 }, { socket_id: "123.456" }));
await run("trigger_info", () =>
  pusher.trigger("presence-room", "ev2", "plain string", { info: "user_count,subscription_count" }));
await run("batch", () =>
  pusher.triggerBatch([
    { channel: "news", name: "b1", data: { x: 1 } },
    { channel: "presence-room", name: "b2", data: "s", info: "user_count" },
  ]));
await run("channels", () =>
  pusher.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } }));
await run("channel", () =>
  pusher.get({ path: "/channels/news", params: { info: "subscription_count" } }));
await run("users", () => pusher.get({ path: "/channels/presence-x/users" }));
await run("terminate", () => pusher.terminateUserConnections("u1"));
await run("send_to_user", () => pusher.sendToUser("u2", "hello", { hi: true }));

// The SDK with the wrong secret: refused with 401, nothing published.
const wrong = new Pusher({ ...opts, secret: "not-the-secret" });
await run("wrong_secret", () => wrong.trigger("news", "nope", "x"));

// An SDK-signed request whose signature is changed by one hex digit: 401.
await run("tampered", () => {
  const body = JSON.stringify({ name: "nope", channels: ["news"], data: "x" });
  const reqPath = `/apps/${opts.appId}/events`;
  let qs = pusher.createSignedQueryString({ method: "POST", path: reqPath, body });
  const last = qs[qs.length - 1];
  qs = qs.slice(0, -1) + (last === "0" ? "1" : "0");
  return fetch(`http://127.0.0.1:${opts.port}${reqPath}?${qs}`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json" },
  });
});

console.log(JSON.stringify(out));
