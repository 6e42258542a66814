package loop

import (
	"context"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"longlink/wsproto"
)

// handler adapts gnet's callbacks to the Server. Every method runs on the loop that
// owns the connection (OnTick excepted: gnet runs it on its ticker goroutine).
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.s.onBoot(eng)
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	sh := s.shardOf(gc.EventLoop())
	c := &Conn{gc: gc, sh: sh, state: stateHandshake}
	c.parser.MaxMessage = s.cfg.MaxMessage
	c.parser.Budget = s.pending
	now := s.clock.ticks()
	c.lastSeen = now
	c.deadline = now + s.handshakeTicks
	c.since = time.Now().UnixNano() // connect time; the handshake duration is measured from it
	gc.SetContext(c)
	sh.addConn(c)
	s.m.handshaking.Add(1)
	return nil, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.None
	}
	s := h.s
	sh := c.sh
	switch c.state {
	case stateHandshake:
		s.m.handshaking.Add(-1)
	case stateAdmitting:
		s.m.handshaking.Add(-1)
		sh.abandonAdmission(c)
	case stateOpen, stateClosing:
		s.m.open.Add(-1)
		sh.nOpen.Add(-1)
		s.unpublish(c)
	}
	c.state = stateClosed
	if c.announced && s.cfg.OnClose != nil {
		code, reason := c.closeCode, sh.closeReasons[c]
		delete(sh.closeReasons, c)
		if code == 0 {
			code = CloseAbnormal
		}
		s.cfg.OnClose(c, code, reason)
	}
	c.parser.Reset()
	sh.removeConn(c)
	gc.SetContext(nil)
	return gnet.None
}

func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	s := h.s
	buf, _ := gc.Peek(-1)
	if len(buf) == 0 {
		return gnet.None
	}
	c.lastSeen = s.clock.ticks()
	if c.w != nil || c.state == stateAdmitting {
		// A client that sends before its 101 is early; its bytes wait, bounded.
		if len(buf) > maxWaitingInbound {
			s.m.handshakeFailure("early_data")
			return gnet.Close
		}
		return gnet.None
	}
	off := 0
	if c.state == stateHandshake {
		n, action := s.handshake(c, buf)
		if action != gnet.None || n == 0 {
			if n > 0 {
				gc.Discard(n)
			}
			return action
		}
		off = n
		if c.state == stateClosed {
			return gnet.None // writing the 101 failed and gnet closed the socket
		}
		if c.w != nil || c.state == stateAdmitting {
			// Waiting for the hub or Admit: nothing may be written before the 101, so
			// frames sent early stay in the buffer until readEarly wakes c after it.
			gc.Discard(n)
			return gnet.None
		}
	}
	// Bytes left undiscarded last time (a frame header, a control frame) are offered
	// again; count each byte once.
	c.sh.bytesIn.Add(uint64(len(buf) - off - int(c.kept)))
	action := s.frames(c, buf, &off)
	if c.state != stateClosed {
		if off > 0 {
			gc.Discard(off)
		}
		// The parser leaves at most a header or a control frame (131 bytes) behind.
		c.kept = uint16(min(len(buf)-off, math.MaxUint16))
	}
	return action
}

// frames handles every complete frame in buf[*off:].
func (s *Server) frames(c *Conn, buf []byte, off *int) gnet.Action {
	sh := c.sh
	// Call Next until it reports n == 0, even with nothing left: that call returns the
	// reassembly buffer of a just-finished message to its pool, so an idle connection
	// holds none.
	for {
		n, ev, err := c.parser.Next(buf[*off:])
		if err != nil {
			ce, _ := err.(*wsproto.CloseError)
			code, reason := uint16(wsproto.CloseProtocolError), err.Error()
			if ce != nil {
				code, reason = ce.Code, ce.Reason
			}
			if code == wsproto.CloseTryAgainLater {
				s.m.pendingBudgetCloses.Inc()
			}
			*off = len(buf)
			if c.state == stateOpen {
				s.sendClose(c, code, reason)
			}
			return gnet.Close
		}
		if n == 0 {
			return gnet.None
		}
		*off += n
		if ev.Kind == wsproto.KindNone {
			continue
		}
		sh.framesIn.Add(1)
		switch ev.Kind {
		case wsproto.KindText, wsproto.KindBinary:
			if c.state != stateOpen {
				continue // after our close frame, data is discarded (RFC 6455 §5.5.1)
			}
			if c.kind == KindPusher {
				if !s.pusherMessage(c, ev.Kind == wsproto.KindBinary, ev.Payload) {
					return gnet.None
				}
			} else if s.cfg.Echo {
				sh.scratch = wsproto.AppendFrame(sh.scratch[:0], ev.Kind, ev.Payload)
				f := sh.scratch
				if c.parser.Deflate != 0 {
					// Compressed like a push would be (deflate.go): what Autobahn's
					// sections 12 and 13 check of the server's side.
					var z deflateCache
					f = sh.deflated(c, f, &z)
				}
				if !s.writeOwn(c, f) {
					return gnet.None
				}
			} else if s.cfg.OnMessage != nil {
				s.cfg.OnMessage(c, ev.Kind == wsproto.KindBinary, ev.Payload)
			}
		case wsproto.KindPing:
			if c.state != stateOpen {
				continue
			}
			sh.scratch = wsproto.AppendFrame(sh.scratch[:0], wsproto.KindPong, ev.Payload)
			if !s.writeOwn(c, sh.scratch) {
				return gnet.None
			}
		case wsproto.KindPong:
			// lastSeen is already updated; nothing else to do.
		case wsproto.KindClose:
			if c.state == stateOpen {
				c.recordClose(ev.CloseCode, string(ev.CloseReason))
				// Echo the peer's code, as RFC 6455 §5.5.1 asks; 1005 means it sent
				// none, so neither do we.
				if ev.CloseCode == wsproto.CloseNoStatus {
					sh.scratch = wsproto.AppendFrame(sh.scratch[:0], wsproto.KindClose, nil)
					s.m.closeCode(0)
					c.gc.Write(sh.scratch)
				} else {
					s.sendClose(c, ev.CloseCode, "")
				}
			}
			*off = len(buf)
			return gnet.Close
		}
	}
}

// overBound reports whether a frame of n bytes would push a connection with waiting
// bytes already queued past max. Nothing waiting means the frame is accepted whatever
// its size: the bound is about clients that do not read, not about message size.
func overBound(waiting, n, max int) bool {
	return waiting > 0 && waiting+n > max
}

// writeOwn writes a frame the loop built for c (pong, echo). It reports false when c
// was closed by the write or as a slow consumer.
func (s *Server) writeOwn(c *Conn, frame []byte) bool {
	if overBound(c.gc.OutboundBuffered(), len(frame), s.cfg.MaxOutbound) {
		s.slowConsumer(c)
		return false
	}
	if _, err := c.gc.Write(frame); err != nil || c.state == stateClosed {
		return false
	}
	c.sh.framesOut.Add(1)
	c.sh.bytesOut.Add(uint64(len(frame)))
	return true
}

// sendClose writes a close frame and counts its code. The caller closes the socket or
// waits for the peer's close (startClose).
func (s *Server) sendClose(c *Conn, code uint16, reason string) {
	sh := c.sh
	sh.scratch = wsproto.AppendClose(sh.scratch[:0], code, reason)
	if !overBound(c.gc.OutboundBuffered(), len(sh.scratch), s.cfg.MaxOutbound) {
		c.recordClose(code, reason)
		c.gc.Write(sh.scratch)
		s.m.closeCode(code)
	}
}

// recordClose keeps the first close code c ends with, for Config.OnClose: the one
// the server sent or the client's, whichever came first (0 with a reason: dropped
// without a close frame). Only announced connections are tracked.
func (c *Conn) recordClose(code uint16, reason string) {
	if !c.announced || c.closeCode != 0 || c.sh.srv.cfg.OnClose == nil {
		return
	}
	c.closeCode = code
	if reason != "" {
		c.sh.closeReasons[c] = reason
	}
}

// announce marks c open for its client, after its 101, and tells Config.OnOpen.
func (s *Server) announce(c *Conn) {
	if c.state != stateOpen || s.cfg.OnOpen == nil {
		return // the write of the 101 failed and closed c
	}
	c.announced = true
	s.cfg.OnOpen(c)
}

// startClose begins the closing handshake from the server side: send our close frame,
// then wait up to CloseTimeout for the client's before dropping TCP.
func (sh *shard) startClose(c *Conn, code uint16, reason string) {
	s := sh.srv
	if c.state == stateHandshake || c.state == stateAdmitting || c.w != nil {
		s.closeNow(c)
		return
	}
	if c.state != stateOpen {
		return
	}
	s.sendClose(c, code, reason)
	if c.state == stateClosed {
		return
	}
	c.state = stateClosing
	c.deadline = s.clock.ticks() + s.closeTicks
}

// closeNow drops the TCP connection (OnClose runs before it returns).
func (s *Server) closeNow(c *Conn) {
	if c.state != stateClosed {
		c.sh.el.Close(c.gc)
	}
}

func (s *Server) slowConsumer(c *Conn) {
	s.m.slowConsumers.Inc()
	if c.announced && c.closeCode == 0 && s.cfg.OnClose != nil {
		c.sh.closeReasons[c] = "slow consumer"
	}
	s.m.closeCode(0)
	s.closeNow(c)
}

// handshake parses the upgrade request at the start of buf. It returns the bytes the
// request used (0: incomplete) and gnet.Close when the connection must end.
func (s *Server) handshake(c *Conn, buf []byte) (int, gnet.Action) {
	// The header lines are copied only for Admit (the connect hook): a node without
	// one parses without that allocation.
	req := wsproto.Request{KeepHeader: s.cfg.Admit != nil}
	n, err := wsproto.ParseRequest(buf, s.cfg.MaxRequestBytes, &req)
	if err != nil {
		he, _ := err.(*wsproto.HTTPError)
		if he == nil {
			he = &wsproto.HTTPError{Status: 400, Reason: err.Error()}
		}
		reason := "bad_request"
		if he.Status == 431 {
			reason = "too_large"
		}
		return len(buf), s.reject(c, reason, he)
	}
	if n == 0 {
		return 0, gnet.None
	}
	switch {
	case req.Path == "/v1/endpoint" && s.cfg.Endpoint != nil && req.Method == "GET":
		body := s.cfg.Endpoint()
		c.gc.Write(wsproto.AppendHTTPResponse(nil, 200, "application/json",
			"Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n", body))
		return n, gnet.Close
	case s.cfg.PusherApp != nil && strings.HasPrefix(req.Path, pusherPathPrefix):
		return n, s.pusherHandshake(c, &req) // pusher.go
	case req.Path != "/ws":
		return n, s.reject(c, "bad_request", &wsproto.HTTPError{Status: 404, Reason: "not found: WebSocket clients connect to /ws"})
	}
	if he := req.ValidateUpgrade(); he != nil {
		return n, s.reject(c, "bad_request", he)
	}
	if !s.originAllowed(req.Origin) {
		return n, s.reject(c, "forbidden", &wsproto.HTTPError{Status: 403, Reason: "origin not allowed"})
	}
	if s.draining.Load() {
		return n, s.reject(c, "draining", &wsproto.HTTPError{Status: 503, Reason: "server is shutting down", Header: "Retry-After: 1\r\n"})
	}
	if s.cfg.MaxConns > 0 && int(s.m.open.Load()) >= s.cfg.MaxConns {
		return n, s.reject(c, "over_capacity", s.capacityError())
	}
	token, protocol := tokenOf(&req)
	id, aerr := s.cfg.Authenticate(token)
	if aerr != nil {
		st := aerr.Status
		if st == 0 {
			st = 401
		}
		hdr := ""
		if st == 401 {
			hdr = "WWW-Authenticate: Bearer\r\n"
		}
		return n, s.reject(c, "unauthorized", &wsproto.HTTPError{Status: st, Reason: aerr.Reason, Header: hdr})
	}
	c.num = s.connSeq.Add(1)
	c.user = id.User
	c.remote = remoteOf(c)
	c.device = req.UserAgent
	if len(c.device) > maxDevice {
		c.device = strings.ToValidUTF8(c.device[:maxDevice], "")
	}
	if len(id.Subscribe) > 0 {
		c.ext = &Ext{Subscribe: id.Subscribe}
	}
	if protocol == subprotocolV2 || wsproto.QueryValue(req.RawQuery, "protocol") == "v2" {
		c.kind = KindV2
	}
	s.negotiateDeflate(c, &req) // deflate.go
	if s.cfg.Admit != nil {
		s.admit(c, &req, id, token, protocol) // admit.go: upgrade follows its decision
		return n, gnet.None
	}
	s.upgrade(c, id.Rooms, id.Expires, req.Key, protocol, wsproto.QueryValue(req.RawQuery, "since"))
	return n, gnet.None
}

// capacityError is the 503 of a node at MaxConns, with the Endpoint hint.
func (s *Server) capacityError() *wsproto.HTTPError {
	he := &wsproto.HTTPError{Status: 503, Reason: "node at capacity", Header: "Retry-After: 1\r\n"}
	if s.cfg.Endpoint != nil {
		he.Reason = "node at capacity; try " + string(s.cfg.Endpoint())
	}
	return he
}

// upgrade registers an accepted connection (identity fields set) and writes its 101,
// or hands it to Config.OnUpgrade. since is the ?since= value, decoded. Runs on c's
// loop.
func (s *Server) upgrade(c *Conn, rooms []string, expires time.Time, key, protocol, since string) {
	c.expires = s.clock.tickAt(expires)
	c.state = stateOpen
	c.deadline = s.clock.ticks() + s.keepaliveTicks(c)
	s.m.handshaking.Add(-1)
	s.m.open.Add(1)
	c.sh.nOpen.Add(1)
	s.m.handshakes.Inc()
	s.m.handshakeTime.Observe(float64(time.Now().UnixNano()-c.since) / 1e9)
	// Registered before the 101 leaves: a client that has its 101 is reachable by
	// pushes, and a second connection it opens next is newer in the per-user order,
	// however long this loop is descheduled between the two steps. Deliveries and
	// closes for c run on this loop after this callback, so nothing overtakes the 101.
	if s.cfg.OnUpgrade == nil {
		s.publish(c, rooms)
		c.sh.scratch = wsproto.AppendUpgradeResponseExt(c.sh.scratch[:0], key, protocol, c.extensions())
		if c.kind == KindPusher {
			c.sh.scratch = append(c.sh.scratch, s.pusherEstablished(c)...)
		}
		c.gc.Write(c.sh.scratch) // on failure gnet closes c now; OnClose unpublishes it
		s.announce(c)
		return
	}
	// The hub makes the streams' owners aware of c before its 101 (see streams.go):
	// c is registered first and holds what arrives meanwhile.
	u := &Upgrade{User: c.user, V2: c.kind == KindV2, Kind: c.kind, s: s, c: c, key: key, protocol: protocol, loopSide: true}
	if c.kind == KindPusher {
		u.PusherApp = c.ext.PusherApp
	}
	u.Since = since
	c.w = &waiting{u: u}
	c.deadline = s.clock.ticks() + s.handshakeTicks
	u.Rooms = s.publish(c, rooms)
	u.ConnID = c.ID()
	s.cfg.OnUpgrade(u)
	u.mu.Lock()
	u.loopSide = false
	res := u.result
	u.mu.Unlock()
	if res != nil {
		s.finishUpgrade(u, res)
	}
}

func (s *Server) reject(c *Conn, reason string, he *wsproto.HTTPError) gnet.Action {
	s.m.handshakeFailure(reason)
	c.sh.scratch = wsproto.AppendHTTPError(c.sh.scratch[:0], he)
	c.gc.Write(c.sh.scratch)
	return gnet.Close
}

func (s *Server) originAllowed(origin string) bool {
	if len(s.cfg.AllowedOrigins) == 0 || origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// subprotocol is the protocol name a client offers in Sec-WebSocket-Protocol;
// subprotocolV2 asks for the v2 protocol (streams.go).
const (
	subprotocol   = "longlink"
	subprotocolV2 = "longlink.v2"
)

// tokenOf finds the client's token: ?token=, then Authorization: Bearer, then
// Sec-WebSocket-Protocol (browsers cannot set headers, so they offer
// ["longlink", "<token>"] and the server selects "longlink"). There the token is
// the first entry that is not a protocol name we speak: what the client offers is
// the contract, not the shape of the token (any format Authenticate accepts). It
// returns the subprotocol to select.
func tokenOf(req *wsproto.Request) (token, protocol string) {
	if t := wsproto.QueryValue(req.RawQuery, "token"); t != "" {
		token = t
	} else if a := req.Authorization; len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		token = strings.TrimSpace(a[7:])
	}
	offered := false
	for _, p := range req.Protocols {
		switch {
		case p == subprotocolV2 || p == subprotocol && protocol == "":
			protocol = p
		case token == "" && !offered:
			token, offered = p, true
		}
	}
	if protocol == "" && offered {
		// Without our protocol name the entries are some other client's
		// subprotocols, not a token.
		token = ""
	}
	return token, protocol
}

// remoteOf is the peer address. X-Forwarded-For is not trusted: a gateway behind a
// proxy sees the proxy, as operators expect unless they configure trust explicitly.
func remoteOf(c *Conn) netip.AddrPort {
	if a, ok := c.gc.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// connID formats a connection number as its cluster-unique id,
// "<NodeID>.<incarnation>-<num>" (the last two in base 36). The part after the last
// '.' holds no '.', so the cluster still finds the node as everything before it.
func (s *Server) connID(num uint64) string {
	return s.idPrefix + strconv.FormatUint(num, 36)
}

// connNum parses an id of this run of the node back into its number. An id from an
// earlier run (another incarnation) or another node is not ours: false.
func (s *Server) connNum(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, s.idPrefix)
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 36, 64)
	return n, err == nil
}

// publish adds an upgraded connection to the registry and the loop's room index, and
// evicts the user's oldest connection when the user is over MaxConnsPerUser.
func (s *Server) publish(c *Conn, tokenRooms []string) []string {
	evict, rooms := s.reg.add(c, tokenRooms, s.cfg.MaxConnsPerUser)
	for _, room := range rooms {
		c.sh.joinRoom(room, c)
	}
	if evict != nil {
		s.m.evictions.Inc()
		s.closeOn(evict, CloseReplaced, "replaced: too many connections for this user")
	}
	return rooms
}

func (s *Server) unpublish(c *Conn) {
	us := s.reg.lockOf(c)
	us.mu.Lock()
	rooms := append([]string(nil), c.rooms...)
	us.mu.Unlock()
	for _, room := range rooms {
		c.sh.leaveRoom(room, c)
	}
	s.reg.remove(c)
}

// closeOn closes c with code on its own loop, through that loop's inbox so it is
// ordered after messages already accepted for c.
func (s *Server) closeOn(c *Conn, code uint16, reason string) {
	s.deliverMu.Lock()
	c.sh.enqueue(&job{kind: jobClose, conns: []*Conn{c}, code: code, reason: reason})
	s.deliverMu.Unlock()
}

func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	s.clock.advance()
	for _, sh := range s.shardList() {
		sh.el.Execute(context.Background(), sh.sweepFn)
	}
	s.reclaim.tick(s.pending, time.Now())
	return clockTick, gnet.None
}
