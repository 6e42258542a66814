// Computes the auth vectors of vectors_test.go with the official Pusher server SDK.
//
//   mkdir /tmp/pv && cd /tmp/pv && npm install pusher@5
//   cp /path/to/longlink/pusher/testdata/vectors.mjs . && node vectors.mjs
//
// (ESM resolves "pusher" next to the script, hence the copy.) Output of pusher 5.3.4,
// Node 20.20.
//
// Paste the output's lines into vectorsFromSDK in vectors_test.go.
import Pusher from "pusher";

const pusher = new Pusher({
  appId: "4242",
  key: "278d425bdf160c739803",
  secret: "7ad3773142a6692b25b8",
  encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString("base64"),
});

const out = [];
const channel = (socketId, name, data) => {
  const r = pusher.authorizeChannel(socketId, name, data);
  // frame: what pusher-js sends with that auth response (send_event in
  // src/core/connection/connection.ts, the data object of Channel.subscribe in
  // src/core/channels/channel.ts: JSON.stringify drops an undefined channel_data).
  const frame = JSON.stringify({ event: "pusher:subscribe", data: { auth: r.auth, channel_data: r.channel_data, channel: name } });
  out.push({ kind: "channel", socket_id: socketId, channel: name, channel_data: r.channel_data ?? "", auth: r.auth, frame });
};
const user = (socketId, data) => {
  const r = pusher.authenticateUser(socketId, data);
  // frame: pusher-js's pusher:signin (UserFacade._onAuthorize in src/core/user.ts).
  const frame = JSON.stringify({ event: "pusher:signin", data: { auth: r.auth, user_data: r.user_data } });
  out.push({ kind: "user", socket_id: socketId, user_data: r.user_data, auth: r.auth, frame });
};

channel("1234.1234", "private-foobar");
channel("123.456", "private-chat.room=1;a@b,c");
channel("98765.4321", "private-encrypted-secrets");
channel("1234.1234", "presence-foobar", { user_id: "10", user_info: { name: "Mr. Channels" } });
channel("1.2", "presence-room", { user_id: 42 });
channel("5.6", "presence-unicode", { user_id: "ünï", user_info: { quote: "say \"hi\"\n" } });
user("1234.1234", { id: "10", user_info: { name: "Mr. Channels" } });
user("7.8", { id: "alice@example.com", watchlist: ["bob", "carol"] });

for (const v of out) console.log(JSON.stringify(v));
