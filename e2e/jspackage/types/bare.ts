// bare.ts: lib es2022 only, no DOM and no @types: the declarations stand alone, and
// an application's own WebSocket-like class fits the option.
import type { WebSocketLike, RawData } from 'longlink-client';
import { use, requests, refused } from './common.js';

class Fake implements WebSocketLike {
  readonly protocol = 'longlink.v2';
  readonly bufferedAmount = 0;
  binaryType = 'blob';
  constructor(readonly url: string, readonly protocols?: string | string[]) {}
  send(data: RawData): void {
    void data;
  }
  close(code?: number, reason?: string): void {
    void [code, reason];
  }
}

const link = use(Fake);
void requests(link);
refused(link);
use();
