package loop

import (
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"longlink/wsproto"
)

// Admissions: a decision taken off the loop before a connection is registered (the
// node's connect hook, an HTTP call).
//
// With Config.Admit set, an upgrade that passed Authenticate is not registered at
// once: the connection enters stateAdmitting, shard.admitting holds its Admission,
// and Admit starts the decision. Until Admission.Done comes back through the loop's
// task queue the connection is in no registry (no push, kick or room reaches it),
// still counts as handshaking, is closed by the sweep at its handshake deadline, and
// what it sends stays unread in gnet's buffer (at most maxWaitingInbound, or it is
// dropped as early_data). A connection that closes meanwhile cancels the Admission's
// context, so the decision's goroutine can give up; a Done that arrives after the
// close finds the connection no longer admitting and does nothing. An allowing Done
// goes on exactly as an upgrade without Admit does, with the extra rooms and the
// metadata: registered, then Config.OnUpgrade.

// Admission is an authenticated upgrade waiting for Config.Admit's decision. Its
// exported fields are set before Admit is called and never change.
type Admission struct {
	// ConnID is the id the connection will have.
	ConnID string
	User   string
	// Token is the token the client sent, as Authenticate verified it.
	Token string
	V2    bool
	// Remote is the client's address (the TCP peer; proxies are not trusted).
	Remote netip.AddrPort
	// Header is the request's header lines as received (wsproto.Request.Header).
	Header []byte

	ctx      context.Context
	cancel   context.CancelFunc
	s        *Server
	c        *Conn
	id       Identity
	key      string
	protocol string
	since    string
	done     atomic.Bool
}

// AdmitResult is Admit's decision.
type AdmitResult struct {
	// Err refuses the connection with this status and reason as the upgrade's HTTP
	// response. 4xx are counted as hook_refused, 5xx as hook_failed.
	Err *AuthError
	// RetryAfter, with Err, adds "Retry-After: <seconds>" to the response (0: none).
	RetryAfter int
	// Rooms are joined besides the token's (validated by the caller).
	Rooms []string
	// Meta is the connection's metadata, a JSON object's text (Conn.Meta); the caller
	// bounds its size, since every open connection holds it.
	Meta string
}

// Context is canceled when the connection closes before the decision arrives, or
// once it has been applied.
func (a *Admission) Context() context.Context { return a.ctx }

// Done applies the decision on the connection's loop. Any goroutine may call it,
// once; later calls are ignored. After Stop it does nothing.
func (a *Admission) Done(r AdmitResult) {
	if !a.done.CompareAndSwap(false, true) {
		return
	}
	err := a.c.sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		a.s.finishAdmission(a, &r)
		return nil
	}))
	if err != nil {
		a.cancel() // the loops are gone, and the connection with them
	}
}

// admit parks an authenticated connection and asks Config.Admit. Runs on c's loop.
func (s *Server) admit(c *Conn, req *wsproto.Request, id Identity, token, protocol string) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &Admission{
		ConnID: c.ID(), User: c.user, Token: token, V2: c.kind == KindV2, Remote: c.remote, Header: req.Header,
		ctx: ctx, cancel: cancel, s: s, c: c, id: id, key: req.Key, protocol: protocol,
		since: wsproto.QueryValue(req.RawQuery, "since"),
	}
	c.state = stateAdmitting
	c.sh.admitting[c] = a
	s.cfg.Admit(a)
}

// finishAdmission runs on c's loop with Admit's decision.
func (s *Server) finishAdmission(a *Admission, r *AdmitResult) {
	c := a.c
	if c.state != stateAdmitting {
		return // closed (timeout, drain, the client left) while the decision was taken
	}
	delete(c.sh.admitting, c)
	a.cancel()
	var he *wsproto.HTTPError
	reason := ""
	switch {
	case r.Err != nil:
		st := r.Err.Status
		if st < 400 || st > 599 {
			st = 503
		}
		reason = "hook_refused"
		if st >= 500 {
			reason = "hook_failed"
		}
		he = &wsproto.HTTPError{Status: st, Reason: r.Err.Reason}
		if r.RetryAfter > 0 {
			he.Header = "Retry-After: " + strconv.Itoa(r.RetryAfter) + "\r\n"
		}
	case s.draining.Load():
		// Both checks again: many connections may have waited for their hooks at once.
		reason, he = "draining", &wsproto.HTTPError{Status: 503, Reason: "server is shutting down", Header: "Retry-After: 1\r\n"}
	case s.cfg.MaxConns > 0 && int(s.m.open.Load()) >= s.cfg.MaxConns:
		reason, he = "over_capacity", s.capacityError()
	}
	if he != nil {
		s.reject(c, reason, he)
		s.closeNow(c)
		return
	}
	c.meta = r.Meta
	rooms := a.id.Rooms
	if len(r.Rooms) > 0 {
		rooms = append(append(make([]string, 0, len(rooms)+len(r.Rooms)), rooms...), r.Rooms...)
	}
	s.upgrade(c, rooms, a.id.Expires, a.key, a.protocol, a.since)
	if c.w == nil {
		s.readEarly(c)
	}
}

// readEarly has the loop read what c sent before its 101 was written: those bytes
// wait in gnet's buffer, and nothing else would wake the connection for them until
// the client sends again.
func (s *Server) readEarly(c *Conn) {
	if c.state == stateOpen && c.gc.InboundBuffered() > 0 {
		_ = c.gc.Wake(nil)
	}
}

// abandonAdmission forgets c's pending decision when c closes. Runs on c's loop.
func (sh *shard) abandonAdmission(c *Conn) {
	if a := sh.admitting[c]; a != nil {
		delete(sh.admitting, c)
		a.cancel()
	}
}
