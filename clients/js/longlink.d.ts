// Type declarations for longlink.js. See docs/client-js.md.

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

export interface TokenContext {
  /** True when the previous connection was closed with 4003 (token expired). */
  expired: boolean;
}

/** Called before every connection attempt; must return a currently valid token. */
export type TokenProvider = (ctx: TokenContext) => string | Promise<string>;

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
  /** WebSocket constructor; defaults to globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocket;
  /** fetch implementation for endpointURL; defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  /** Random source in [0, 1) for the backoff jitter (tests). Defaults to Math.random. */
  random?: () => number;
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

export interface LongLinkEventMap {
  open: OpenEvent;
  message: string | ArrayBuffer;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  error: Error;
  state: LongLinkState;
}

export declare class LongLink {
  constructor(options: LongLinkOptions);
  readonly state: LongLinkState;
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof LongLinkEventMap>(type: K, fn: (ev: LongLinkEventMap[K]) => void): () => void;
  off<K extends keyof LongLinkEventMap>(type: K, fn: (ev: LongLinkEventMap[K]) => void): void;
  /** Starts connecting; no-op while connecting, open or reconnecting. */
  connect(): void;
  /** Closes with code (default 1000) and stops reconnecting. */
  close(code?: number, reason?: string): void;
  /** Sends on the open socket; false when not open. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
}
