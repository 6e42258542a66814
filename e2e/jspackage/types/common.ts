// common.ts uses the package's types the way an application does; it is compiled in
// each of the three settings below (browser.ts, node.ts, bare.ts import it), so the
// declarations must hold without the DOM library and without @types/node.
import {
  LongLink, CloseCode, Policy, closePolicy, backoffDelay, HEARTBEAT, SUBPROTOCOL_V2, RequestError,
  type LongLinkOptions, type PushEvent, type WelcomeEvent, type Positions, type ClosePolicy,
  type WebSocketConstructor, type Reply, type SubscribePosition, type LongLinkState,
} from 'longlink-client';

export function use(WebSocket?: WebSocketConstructor): LongLink {
  const options: LongLinkOptions = {
    url: 'ws://localhost:8080/ws',
    token: async ({ expired }) => (expired ? 'fresh' : 'first'),
    WebSocket,
    heartbeatMs: 25000,
    protocol: 'v2',
  };
  const link = new LongLink(options);
  const off: () => void = link.on('push', async (p: PushEvent) => {
    const id: string = p.id;
    if (p.ack) link.ack(p);
    return id;
  });
  off();
  link.on('welcome', (w: WelcomeEvent) => {
    const connection: string = w.connection;
    return void connection;
  });
  link.on('message', (data) => {
    if (typeof data !== 'string') {
      const n: number = data.byteLength;
      return void n;
    }
  });
  link.on('close', (e) => {
    const again: boolean = e.willReconnect && e.code !== CloseCode.KICKED;
    return void again;
  });
  link.connect();
  const state: LongLinkState = link.state;
  const positions: Positions = link.positions();
  const policy: ClosePolicy = closePolicy(CloseCode.TOKEN_EXPIRED);
  const expired: 4003 = CloseCode.TOKEN_EXPIRED;
  const stop: 'stop' = Policy.STOP;
  const v2: 'longlink.v2' = SUBPROTOCOL_V2;
  void [state, positions, policy, expired, stop, v2, HEARTBEAT.length, backoffDelay(3, 500, 30000)];
  const raw: boolean = link.send('{"type":"ping"}') && link.sendRaw(new Uint8Array([1, 2]));
  void raw;
  return link;
}

export async function requests(link: LongLink): Promise<void> {
  try {
    const reply: Reply<{ ok: boolean }> = await link.send<{ ok: boolean }>('chat', { text: 'hi' }, { timeout: 5000 });
    const ok: boolean = reply.data.ok;
    const sub: Reply<SubscribePosition> = await link.subscribe('chat/lobby');
    const offset: number = sub.data.offset;
    await link.unsubscribe('chat/lobby');
    void [ok, offset, link.subscriptions()];
  } catch (e) {
    if (e instanceof RequestError) {
      const code: 'status' | 'timeout' | 'disconnected' | 'overloaded' = e.code;
      void [code, e.status, e.reason];
    }
  }
}

// What the declarations must refuse.
export function refused(link: LongLink): void {
  // @ts-expect-error: not an event
  link.on('nope', () => {});
  // @ts-expect-error: the token is required
  new LongLink({ url: 'ws://localhost:8080/ws' });
  // @ts-expect-error: protocol is 'v2' or 'plain'
  new LongLink({ url: 'ws://localhost:8080/ws', token: 't', protocol: 'v3' });
  // @ts-expect-error: a WebSocket option must construct a socket
  new LongLink({ url: 'ws://localhost:8080/ws', token: 't', WebSocket: 42 });
}
