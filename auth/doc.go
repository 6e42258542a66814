// Package auth verifies and mints the client tokens the gateway accepts: HS256 JWTs
// whose "sub" is the user id, with a required "exp" and an optional "rooms" claim.
//
// It owns no state beyond the secret; a Verifier is safe for concurrent use and is
// called on the event loops during handshakes, so it does no I/O. golang-jwt does the
// verifying (algorithm, signature, exp/nbf with leeway); the package makes it cheap
// for connect storms with pooled HMAC states (hs256.go), pooled claims and a fast
// path for decoding the common claims shape (claims_json.go) that falls back to
// encoding/json for anything else. Claims returned by Verify share nothing with the
// pools.
package auth
