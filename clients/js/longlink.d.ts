// Type declarations for longlink.js. See docs/client-js.md.
// They name no DOM or Node.js global type, so they compile with lib "dom" (browsers)
// as with @types/node (Node.js, where the ws package's WebSocket is accepted).

/** Close codes the gateway sends. */
export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  ABNORMAL: 1006;
  INVALID_DATA: 1007;
  POLICY_VIOLATION: 1008;
  TOO_BIG: 1009;
  REPLACED: 4000;
  KICKED: 4001;
  TOKEN_EXPIRED: 4003;
  SLOW_CONSUMER: 4008;
}>;

export type ClosePolicy = 'reconnect' | 'refresh-token' | 'stop';

export declare const Policy: Readonly<{
  RECONNECT: 'reconnect';
  REFRESH_TOKEN: 'refresh-token';
  STOP: 'stop';
}>;

/** What the client does after the socket closes with code. */
export declare function closePolicy(code: number): ClosePolicy;

/** Full-jitter backoff: uniform in [0, min(maxMs, minMs * 2^attempt)). */
export declare function backoffDelay(
  attempt: number,
  minMs: number,
  maxMs: number,
  random?: () => number,
): number;

/** The heartbeat text message: {"type":"ping"}. */
export declare const HEARTBEAT: string;

/** The WebSocket subprotocol offered for protocol v2: 'longlink.v2'. */
export declare const SUBPROTOCOL_V2: 'longlink.v2';

/** A position in one stream: the offset of the last message seen in that epoch. */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

/** Positions by stream ("user:42", "room:lobby", "all"), as positions() returns them. */
export type Positions = Record<string, StreamPosition>;

export interface TokenContext {
  /** True when the previous connection was closed with 4003 (token expired). */
  expired: boolean;
}

/** Called before every connection attempt; must return a currently valid token. */
export type TokenProvider = (ctx: TokenContext) => string | Promise<string>;

/** What sendRaw writes as it is: text, bytes, or a Blob (described by what a Blob has). */
export type RawData =
  | string
  | ArrayBufferLike
  | ArrayBufferView
  | { readonly size: number; readonly type: string; arrayBuffer(): Promise<ArrayBuffer> };

/**
 * What the client uses of a WebSocket. The browser's, Node.js >= 22's (and Node 20's
 * with --experimental-websocket) and the ws package's all fit. The client sets
 * binaryType to 'arraybuffer' and the onopen, onmessage, onerror and onclose handlers.
 */
export interface WebSocketLike {
  /** The subprotocol the server selected ('' for none). */
  readonly protocol: string;
  /** Bytes queued but not yet sent: a heartbeat still queued two beats later means a dead path. */
  readonly bufferedAmount: number;
  binaryType: string;
  /** The client sends text; sendRaw(data) hands its argument to send as it is. */
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: called as new WebSocket(url, ['longlink.v2']) in v2, new WebSocket(url) in plain. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/**
 * What the client uses of fetch (for endpointURL): it GETs url with init
 * {cache: 'no-store'}, then reads ok, status and json(). init is typed object so
 * that Node's fetch, whose RequestInit has no cache, fits as the browser's does.
 */
export type FetchLike = (
  url: string,
  init: object,
) => Promise<{ readonly ok: boolean; readonly status: number; json(): Promise<unknown> }>;

export interface LongLinkOptions {
  /** WebSocket URL, e.g. wss://push.example.com/ws. Fallback when endpointURL fails. */
  url?: string;
  /** GET endpoint returning {"endpoint": "ws://..."}; asked before every attempt. */
  endpointURL?: string;
  /** A JWT, or a function returning one (required to survive 4003 token expiry). */
  token: string | TokenProvider;
  /** Interval of the {"type":"ping"} heartbeat in ms. 0 disables. Default 25000. */
  heartbeatMs?: number;
  /** Backoff base in ms. Default 500. */
  minBackoffMs?: number;
  /** Backoff cap in ms. Default 30000. */
  maxBackoffMs?: number;
  /** Give up on a connection attempt that has not opened after this many ms. 0 disables. Default 10000. */
  connectTimeoutMs?: number;
  /** A connection open at least this long resets the backoff. Default 10000. */
  stableMs?: number;
  /**
   * 'v2' (default): JSON envelopes, resume after reconnects, duplicates dropped.
   * 'plain': every push is one message of exactly the pushed bytes (servers without v2).
   */
  protocol?: 'v2' | 'plain';
  /**
   * v2: positions to resume from on the first connection, e.g. what positions()
   * returned on the previous page load. Ignored with protocol 'plain'.
   */
  since?: Positions;
  /**
   * WebSocket constructor; defaults to globalThis.WebSocket. Node 20 has none: pass
   * the ws package's (import WebSocket from 'ws') or run node with --experimental-websocket.
   */
  WebSocket?: WebSocketConstructor;
  /** fetch implementation for endpointURL; defaults to globalThis.fetch. */
  fetch?: FetchLike;
  /** Random source in [0, 1) for the backoff jitter (tests). Defaults to Math.random. */
  random?: () => number;
  /**
   * v2: acknowledge pushes that ask for it ("ack": true) once the 'message' and 'push'
   * handlers have returned (or their promises resolved). false: call ack(push). Default true.
   */
  autoAck?: boolean;
  /** v2: acks decided within this many ms go out together (one per stream). 0: in a microtask. Default 10. */
  ackDelayMs?: number;
  /** v2: default timeout of send, subscribe and unsubscribe in ms. Default 10000. */
  requestTimeoutMs?: number;
  /** v2: requests that may wait for their replies at once; more reject with code 'overloaded'. Default 256. */
  maxPendingRequests?: number;
}

export type LongLinkState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface OpenEvent {
  /** The URL connected to, with the token replaced by REDACTED. */
  url: string;
}

export interface CloseEvent {
  /** Close code; 1006 when the connection was lost or refused, 0 when none was opened. */
  code: number;
  reason: string;
  wasClean: boolean;
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** 1-based count of consecutive attempts. */
  attempt: number;
  delayMs: number;
  /** The close code that caused the reconnect (0 when no socket was created). */
  code: number;
}

/** v2: a stream of the connection as the welcome reports it. */
export interface WelcomeStream {
  epoch: string;
  /** The position once the replayed messages that follow the welcome are done. */
  offset: number;
  /** Present for streams the client asked to resume; false: messages were lost. */
  recovered?: boolean;
}

/** v2: the server's first message on every connection. */
export interface WelcomeEvent {
  type: 'welcome';
  connection: string;
  node: string;
  streams: Record<string, WelcomeStream>;
  [key: string]: unknown;
}

/** v2: messages of stream were missed and will not come (history did not cover the gap). */
export interface LostEvent {
  stream: string;
  /** Where the stream is now: the next message has a later offset (or a new epoch). */
  epoch: string;
  offset: number;
  /** The position the client asked to resume from. */
  since: StreamPosition | null;
}

/** v2: the envelope of a push, after duplicates are dropped. */
export interface PushEvent {
  /** The message id (the same on every connection and stream it reaches). */
  id: string;
  /** Absent for a push sent to connection ids. */
  stream?: string;
  /** Absent for a push sent with history off. */
  epoch?: string;
  offset?: number;
  /** The pushed JSON value (data), or its bytes (data_base64). */
  data: unknown | ArrayBuffer;
  /** True when the push asks for an acknowledgement (see autoAck and ack()). */
  ack?: true;
}

/** v2: an error message of the server about a client message without an id. */
export interface ServerErrorEvent {
  status: number;
  reason: string;
}

/** v2: a successful reply (status 2xx or 3xx) to send, subscribe or unsubscribe. */
export interface Reply<T = unknown> {
  status: number;
  /** The back-end's answer (send); for subscribe, the room stream's position. */
  data: T;
}

/** v2: the data of a subscribe reply. */
export interface SubscribePosition {
  stream: string;
  epoch: string;
  offset: number;
}

export interface RequestOptions {
  /** Reject with code 'timeout' after this many ms. Default: options.requestTimeoutMs. */
  timeout?: number;
}

/** Rejects send, subscribe and unsubscribe. */
export declare class RequestError extends Error {
  readonly name: 'RequestError';
  /** 'status': the reply's status was >= 400; 'timeout'; 'disconnected' (not open, or closed before the reply); 'overloaded'. */
  readonly code: 'status' | 'timeout' | 'disconnected' | 'overloaded';
  /** The reply's status with code 'status', else 0. */
  readonly status: number;
  readonly reason: string;
}

export interface LongLinkEventMap {
  open: OpenEvent;
  /** Exactly what plain mode delivers: a text push as a string, a binary one as an ArrayBuffer. */
  message: string | ArrayBuffer;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  error: Error;
  state: LongLinkState;
  welcome: WelcomeEvent;
  lost: LostEvent;
  /** Handlers of 'push' (and 'message') may return a promise: a push asking for an ack is acked once it resolves. */
  push: PushEvent;
  servererror: ServerErrorEvent;
}

export declare class LongLink {
  constructor(options: LongLinkOptions);
  readonly state: LongLinkState;
  /** v2: a copy of the position reached on each stream (always {} in plain). Persist it and pass it as since. */
  positions(): Positions;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof LongLinkEventMap>(type: K, fn: (ev: LongLinkEventMap[K]) => void | Promise<unknown>): () => void;
  off<K extends keyof LongLinkEventMap>(type: K, fn: (ev: LongLinkEventMap[K]) => void | Promise<unknown>): void;
  /** Starts connecting; no-op while connecting, open or reconnecting. */
  connect(): void;
  /** Closes with code (default 1000) and stops reconnecting. */
  close(code?: number, reason?: string): void;
  /** v2: an upstream message to business's back-end; resolves with its reply, rejects with RequestError. */
  send<T = unknown>(business: string, data: unknown, options?: RequestOptions): Promise<Reply<T>>;
  /** The raw form (one argument): sendRaw(data). */
  send(data: RawData): boolean;
  /** Writes data on the open socket as it is; false when not open. */
  sendRaw(data: RawData): boolean;
  /** v2: joins room on this connection and again after every reconnect. */
  subscribe(room: string, options?: RequestOptions): Promise<Reply<SubscribePosition>>;
  /** v2: leaves a room joined with subscribe; it is not joined again after reconnects. */
  unsubscribe(room: string, options?: RequestOptions): Promise<Reply>;
  /** v2: the rooms joined with subscribe. */
  subscriptions(): string[];
  /** v2, autoAck false: acknowledges a 'push' event that asked for it (cumulative per stream). */
  ack(push: PushEvent): void;
}
