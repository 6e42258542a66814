package loop

import (
	"github.com/panjf2000/gnet/v2"
	"net/netip"

	"longlink/wsproto"
)

// Connection states. Only the owning loop changes them.
const (
	stateHandshake uint8 = iota
	stateAdmitting       // authenticated, waiting for Config.Admit (admit.go); not registered
	stateOpen
	stateClosing // close frame sent, waiting for the client's
	stateClosed
)

// maxDevice truncates the User-Agent kept per connection: it is shown in presence
// answers, and a hostile client must not make us hold kilobytes per connection.
const maxDevice = 96

// ConnKind is the protocol a connection speaks, fixed at its upgrade.
type ConnKind uint8

const (
	// KindPlain gets the pushed bytes as they are.
	KindPlain ConnKind = iota
	// KindV2 gets JSON envelopes with stream positions (streams.go, docs/protocol.md).
	KindV2
	// KindPusher speaks the Pusher Channels protocol v7 (pusher.go, docs/pusher.md):
	// it has no user (User is ""), belongs to one Pusher app and gets Pusher events
	// through the rooms of that app's channels only.
	KindPusher
)

// Conn is one client connection.
//
// The first group is written once before the connection is published in the registry
// and read-only afterwards, so any goroutine may read it after a registry lookup. The
// second group belongs to the owning loop. rooms is guarded by the registry shard of
// the connection's user.
type Conn struct {
	num    uint64 // the id is Server.idPrefix + num in base 36, built when asked for
	user   string
	remote netip.AddrPort
	device string
	meta   string // a JSON object's text from the connect hook; "" when none
	since  int64  // unix nanoseconds
	sh     *shard
	gc     gnet.Conn
	kind   ConnKind // the protocol it speaks: plain, v2 (JSON envelopes with stream positions) or Pusher

	// owned by the loop. The small fields come first so they share kind's word: the
	// struct is 256 bytes, a size class, and every idle connection pays for a byte
	// more with 32 (BenchmarkConnSize guards it).
	state    uint8          //
	kept     uint16         // bytes left in gnet's buffer by the last OnTraffic (counted in bytesIn)
	lastSeen uint32         // coarse clock ticks (see clock.go) of the last byte received
	deadline uint32         // handshake or close deadline in ticks; 0 = none
	expires  uint32         // token expiry in ticks; 0 = none
	idx      int32          // position in sh.conns
	pend     int32          // 1 + index in sh.pending while frames wait for this drain's flush
	parser   wsproto.Parser //
	seq      uint64         // sequence of the last delivery job written, to deliver once per job
	w        *waiting       // registered, 101 not sent yet (Config.OnUpgrade working)
	// replayed is, for a v2 connection, the heads its welcome announced: a live copy
	// at or below one (a retried append fanned out again) is not sent twice. An entry
	// goes at the stream's first newer message.
	replayed []streamHead // a slice, not a map: a few streams, and idle connections are many
	// ext is what the receiver of the client's messages keeps for it (ext.go): nil
	// until the token or a first message needs it.
	ext *Ext

	// guarded by the registry shard of user; one of the room structures doc.go lists
	rooms   []string
	evicted bool // chosen for eviction; no longer counts toward MaxConnsPerUser
	// owned by the loop, placed in evicted's padding so the struct stays 256 bytes.
	// announced: Config.OnOpen was called, so OnClose will be; closeCode is the code
	// the connection is ending with (0: none yet), its reason in shard.closeReasons.
	announced bool
	closeCode uint16
}

// ID is the cluster-unique connection id.
func (c *Conn) ID() string { return c.sh.srv.connID(c.num) }
