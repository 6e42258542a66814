// Package wsproto owns the bytes of the client WebSocket port: parsing the HTTP
// upgrade request head and writing the responses (101, or an error), decoding
// client frames with a push-style incremental parser (unmasking, reassembly,
// UTF-8 and close-code checks), and encoding server frames.
//
// It does no I/O. Every function takes bytes and returns bytes or a count of bytes
// consumed; nothing blocks and nothing reads from a connection, so a gnet loop can
// call it from OnTraffic with the bytes of c.Peek(-1) and c.Discard(n) afterwards.
// For the same reason it never calls gobwas/ws's ws.Upgrade, ws.ReadHeader or
// wsutil readers: those expect a blocking io.Reader and, on a loop, either block
// every connection of that loop or fail on half a frame. gobwas/ws is used for its
// opcodes and its (SIMD) ws.Cipher only. The one extension is permessage-deflate
// (RFC 7692, deflate.go), always without context takeover either way:
// NegotiateDeflate picks an offer, Parser.Deflate inflates compressed client messages
// within MaxMessage, DeflateFrame compresses a server frame once for any number of
// recipients. Compressors and decompressors are pooled, never per connection.
//
// # Concurrency and lifetime
//
// Functions are safe for concurrent use, a Budget included. A Parser is not: one
// per connection, used only by the loop that owns the connection. Event.Payload and
// Event.CloseReason alias the bytes passed to Parser.Next (unmasked in place) or
// the parser's reassembly chunks: they are valid only until the next Next or Reset
// call, so copy what must outlive that. A Parser holds no memory while no message
// is in progress. A fragmented message, or a frame whose payload is still arriving,
// is moved out of the caller's buffer into ChunkSize chunks as it arrives (so the
// caller discards it and never copies it again), charged to the Parser's Budget,
// and the chunks go back on the Next call after the message completes (the loop
// calls Next until it returns n == 0), on error, and on Reset (call it when the
// connection closes). What a connection holds is what it sent, rounded up to a
// chunk; never what a frame header announces.
//
// # Close codes
//
// The gateway sends these codes (RFC 6455 §7.4.1):
//
//   - CloseNormal (1000): orderly close, e.g. echoing a client's close.
//   - CloseGoingAway (1001): the node is shutting down or draining.
//   - CloseProtocolError (1002): the client broke RFC 6455 framing: unmasked
//     frame, RSV bits (RSV1 is allowed on a message's first frame once deflate is
//     negotiated), reserved opcode, fragmented or oversized control frame,
//     bad continuation, 64-bit length with its top bit set, 1-byte close payload,
//     invalid close code.
//   - CloseUnsupported (1003): a data type the gateway does not accept.
//   - CloseNoStatus (1005): never sent; reported as Event.CloseCode when the
//     client's close frame had no code. AppendClose turns it into an empty close.
//   - CloseInvalidPayload (1007): text message or close reason not valid UTF-8, or
//     a compressed message that is not valid deflate data.
//   - ClosePolicyViolation (1008): authorization lost, evicted, or similar policy.
//   - CloseTooBig (1009): a frame or reassembled message over Parser.MaxMessage,
//     detected from the header before the payload is buffered, or a compressed
//     message that inflates past it (detected at the first byte over).
//   - CloseInternalError (1011): the server failed unexpectedly.
//   - CloseTryAgainLater (1013): the node-wide Budget for unfinished messages is
//     used up; the client may retry later (elsewhere).
package wsproto
