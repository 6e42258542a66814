package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/hub"
	"longlink/loop"
	"longlink/push"
	"longlink/pusher"
)

// The Pusher Channels protocol on a node (docs/pusher.md): the loop accepts
// /app/{key} and keeps the connection alive (loop/pusher.go), package pusher
// decodes, checks and encodes the protocol, and this file is what joins them to the
// node: the messages of a Pusher connection (subscribe, unsubscribe, signin, client
// events), the member events of presence channels, and the HTTP API's Backend
// (pusherapi.go).
//
// Channel c of app a is room loop.PusherRoom(a, c); a subscribe joins the room on
// the connection's loop and is answered pusher_internal:subscription_succeeded only
// once the room stream's owner knows this node holds it (hub.SubscribeRoom, as for a
// v2 subscribe), so every event published after the client sees the answer reaches
// it, on any node. Events travel as pushes with a push.PusherEvent: one stream
// append per trigger, ordered per channel, encoded once per (event, channel) by the
// loops.
//
// Who owns what: a connection's pusherConn (its channels, what it was told of each
// presence channel's members, its signed-in user, its client-event bucket) lives in
// its loop.Ext and is read and written only on its loop. pusherNode's fields are set
// by New and read-only after, but for users (signed-in connections, for terminate),
// guarded by usersMu, and the atomic counters.

// PusherConfig configures the node's Pusher Channels apps.
type PusherConfig struct {
	// Apps are the Pusher apps (tenants) this node serves (--pusher-app). None: the
	// node does not speak Pusher (/app/ is a 404, /apps/ is not mounted).
	Apps []pusher.App
	// ClientEventInflight bounds client events being stored at once on this node;
	// over it an event is refused with pusher:error and counted. Zero means 1024.
	ClientEventInflight int
}

const defaultClientEventInflight = 1024

// pusherNode is the node's Pusher side; nil when no app is configured.
type pusherNode struct {
	n        *Node
	byKey    map[string]*pusherApp
	byID     map[string]*pusherApp
	inflight chan struct{} // client events being stored (a semaphore)

	usersMu sync.Mutex
	users   map[userKey]map[*loop.Conn]struct{} // signed-in connections, for terminate
}

type userKey struct{ app, user string }

// pusherApp is one app and its per-app counters.
type pusherApp struct {
	pusher.App
	conns atomic.Int64 // open connections on this node

	mSubscribed     *metrics.Counter
	mSubErrors      map[string]*metrics.Counter // by reason
	mClientEvents   map[string]*metrics.Counter // by outcome
	mSignins        map[string]*metrics.Counter // by outcome
	mOverCapacity   *metrics.Counter
	mTerminated     *metrics.Counter
	mMemberEvents   *metrics.Counter
	mProtocolErrors *metrics.Counter
}

// Reasons and outcomes of the per-app counters (docs/metrics.md).
var (
	pusherSubErrorReasons    = []string{"auth", "invalid", "limit", "unavailable"}
	pusherClientEventResults = []string{"relayed", "refused", "rate_limited", "busy", "failed"}
	pusherSigninResults      = []string{"ok", "refused"}
)

// pusherConn is a Pusher connection's state, in its loop.Ext.
type pusherConn struct {
	app      *pusherApp
	socket   string
	user     *pusher.User // signed in; nil until pusher:signin
	chans    map[string]*pusherChan
	limiter  pusher.ClientEventLimiter
	released bool // closed: the channels' leaves are sent
}

// pusherChan is one channel of a connection.
type pusherChan struct {
	ready  bool           // subscription_succeeded sent (and the hub told of the join)
	member *pusher.Member // presence channels: this connection's member
	// told is, on presence channels, the members this client was told of (the
	// succeeded list, then member_added / member_removed), so a member event the
	// client's list already reflects is not sent again.
	told map[string]struct{}
}

func newPusherNode(n *Node, cfg PusherConfig) (*pusherNode, error) {
	if len(cfg.Apps) == 0 {
		return nil, nil
	}
	if err := pusher.CheckApps(cfg.Apps); err != nil {
		return nil, err
	}
	if cfg.ClientEventInflight <= 0 {
		cfg.ClientEventInflight = defaultClientEventInflight
	}
	p := &pusherNode{n: n, byKey: map[string]*pusherApp{}, byID: map[string]*pusherApp{},
		inflight: make(chan struct{}, cfg.ClientEventInflight), users: map[userKey]map[*loop.Conn]struct{}{}}
	for _, app := range cfg.Apps {
		a := &pusherApp{App: app}
		if a.MaxChannels <= 0 {
			a.MaxChannels = pusher.DefaultMaxChannels
		}
		if a.MaxPresenceMembers <= 0 {
			a.MaxPresenceMembers = pusher.DefaultMaxPresenceMembers
		}
		if a.MaxClientEventsPerSecond <= 0 {
			a.MaxClientEventsPerSecond = pusher.DefaultClientEventRate
		}
		p.newAppMetrics(a, n.set)
		p.byKey[a.Key], p.byID[a.ID] = a, a
	}
	return p, nil
}

func (p *pusherNode) newAppMetrics(a *pusherApp, set *metrics.Set) {
	l := `app="` + a.ID + `"`
	set.NewGauge(`longlink_pusher_connections{`+l+`}`, func() float64 { return float64(a.conns.Load()) })
	a.mSubscribed = set.NewCounter(`longlink_pusher_subscriptions_total{` + l + `}`)
	a.mSubErrors = map[string]*metrics.Counter{}
	for _, r := range pusherSubErrorReasons {
		a.mSubErrors[r] = set.NewCounter(`longlink_pusher_subscription_errors_total{` + l + `,reason="` + r + `"}`)
	}
	a.mClientEvents = map[string]*metrics.Counter{}
	for _, r := range pusherClientEventResults {
		a.mClientEvents[r] = set.NewCounter(`longlink_pusher_client_events_total{` + l + `,outcome="` + r + `"}`)
	}
	a.mSignins = map[string]*metrics.Counter{}
	for _, r := range pusherSigninResults {
		a.mSignins[r] = set.NewCounter(`longlink_pusher_signins_total{` + l + `,outcome="` + r + `"}`)
	}
	a.mOverCapacity = set.NewCounter(`longlink_pusher_refused_total{` + l + `,reason="max_connections"}`)
	a.mTerminated = set.NewCounter(`longlink_pusher_terminated_total{` + l + `}`)
	a.mMemberEvents = set.NewCounter(`longlink_pusher_member_events_total{` + l + `}`)
	a.mProtocolErrors = set.NewCounter(`longlink_pusher_protocol_errors_total{` + l + `}`)
}

// appOfKey is loop.Config.PusherApp.
func (p *pusherNode) appOfKey(key string) (string, bool) {
	a := p.byKey[key]
	if a == nil {
		return "", false
	}
	return a.ID, true
}

// activityTimeout is the one activity timeout the loop announces: every app must
// agree (the loop's keepalive is per node).
func activityTimeout(apps []pusher.App) (time.Duration, error) {
	var d time.Duration
	for _, a := range apps {
		t := a.ActivityTimeout
		if t <= 0 {
			t = pusher.DefaultActivityTimeout
		}
		if d != 0 && t != d {
			return 0, fmt.Errorf("node: every --pusher-app must have the same activity-timeout (%v and %v given): a node keeps its Pusher clients alive on one schedule", d, t)
		}
		d = t
	}
	return d, nil
}

// state is c's pusherConn, made at its first message or open; nil for a connection
// that is not a Pusher one. On c's loop.
func (p *pusherNode) state(c *loop.Conn) *pusherConn {
	e := c.Ext()
	if e == nil || e.PusherApp == "" {
		return nil
	}
	if pc, ok := e.Pusher.(*pusherConn); ok {
		return pc
	}
	a := p.byID[e.PusherApp]
	if a == nil {
		return nil
	}
	pc := &pusherConn{app: a, socket: c.SocketID(), chans: map[string]*pusherChan{}}
	pc.limiter.Reset(a.MaxClientEventsPerSecond, time.Now().UnixMilli())
	e.Pusher = pc
	return pc
}

// onOpen counts c in its app and closes it (4100) when the app is over its
// connections on this node. On c's loop.
func (p *pusherNode) onOpen(c *loop.Conn) {
	pc := p.state(c)
	if pc == nil {
		return
	}
	a := pc.app
	if n := a.conns.Add(1); a.MaxConnections > 0 && n > int64(a.MaxConnections) {
		a.mOverCapacity.Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, pusher.CodeOverCapacity, "Over capacity: app "+a.ID+" has "+strconv.Itoa(a.MaxConnections)+" connections on this node"))
		p.n.loop.CloseConn(c, pusher.CodeOverCapacity, "Over capacity")
	}
}

// onClose undoes c's channels and sign-in. On c's loop.
func (p *pusherNode) onClose(c *loop.Conn) {
	e := c.Ext()
	if e == nil {
		return
	}
	pc, ok := e.Pusher.(*pusherConn)
	if !ok || pc.released {
		return
	}
	pc.released = true
	pc.app.conns.Add(-1)
	for ch, pch := range pc.chans {
		p.left(c, pc, ch, pch)
	}
	if pc.user != nil {
		p.signedOut(c, pc.app.ID, pc.user.ID)
	}
}

// onMessage is loop.Config.OnPusherMessage: every message but pusher:ping. On c's
// loop.
func (p *pusherNode) onMessage(c *loop.Conn, payload []byte) {
	pc := p.state(c)
	if pc == nil {
		return
	}
	f, err := pusher.ParseFrame(payload)
	if err != nil {
		pc.app.mProtocolErrors.Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Invalid message: "+err.Error()))
		return
	}
	switch string(f.Event) {
	case pusher.EventSubscribe:
		p.subscribe(c, pc, f.Data)
	case pusher.EventUnsubscribe:
		p.unsubscribe(c, pc, f.Data)
	case pusher.EventSignin:
		p.signin(c, pc, f.Data)
	case pusher.EventPong:
		// Activity; the loop counted it.
	default:
		if pusher.IsClientEvent(f.Event) {
			p.clientEvent(c, pc, &f)
			return
		}
		pc.app.mProtocolErrors.Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Unsupported event "+strconv.Quote(clip(string(f.Event)))))
	}
}

// clip shortens a client's string for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (p *pusherNode) subError(c *loop.Conn, a *pusherApp, channel, reason, typ, msg string, status int) {
	a.mSubErrors[reason].Inc()
	p.n.loop.SendText(c, pusher.AppendSubscriptionError(nil, channel, typ, msg, status))
}

func (p *pusherNode) subscribe(c *loop.Conn, pc *pusherConn, data []byte) {
	a := pc.app
	s, err := pusher.ParseSubscribe(data)
	if err != nil {
		a.mProtocolErrors.Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Invalid pusher:subscribe: "+err.Error()))
		return
	}
	ch := string(s.Channel)
	if pch := pc.chans[ch]; pch != nil {
		// Subscribed already (or on the way): answer again once ready, as Pusher does.
		if pch.ready {
			p.succeeded(c, pc, ch, pch)
		}
		return
	}
	m, err := a.CheckSubscribe(pc.socket, &s, pc.user)
	if err != nil {
		var se *pusher.SubscribeError
		if errors.As(err, &se) {
			reason := "auth"
			if se.Status == 400 {
				reason = "invalid"
			}
			p.subError(c, a, ch, reason, se.Type, se.Message, se.Status)
			return
		}
		p.subError(c, a, ch, "invalid", "InvalidChannel", err.Error(), 400)
		return
	}
	if len(pc.chans) >= a.MaxChannels {
		p.subError(c, a, ch, "limit", "LimitReached", "This connection is subscribed to "+strconv.Itoa(len(pc.chans))+" channels, the app's limit", 403)
		return
	}
	pch := &pusherChan{}
	if pusher.KindOf(ch) == pusher.KindPresence {
		pch.member = &m
		if members := p.n.hub.PusherMembers(a.ID, ch); len(members) >= a.MaxPresenceMembers && !hasMember(members, m.ID) {
			p.subError(c, a, ch, "limit", "LimitReached", "Presence channel "+strconv.Quote(ch)+" has "+strconv.Itoa(a.MaxPresenceMembers)+" members, the app's limit", 403)
			return
		}
	}
	room := loop.PusherRoom(a.ID, ch)
	joined, err := p.n.loop.JoinConn(c, room)
	if err != nil {
		return // closed, or not this app's room (cannot happen: the name was checked)
	}
	pc.chans[ch] = pch
	if _, ok := p.n.hub.RoomHeadLocal(room); ok {
		p.ready(c, pc, ch, pch)
		return
	}
	ok := p.n.up.GoRoom(func() {
		_, err := p.n.hub.SubscribeRoom(room)
		_ = p.n.loop.Do(c, func(open bool) {
			if !open || pc.chans[ch] != pch {
				return // closed or unsubscribed meanwhile
			}
			if err != nil {
				delete(pc.chans, ch)
				if joined {
					p.n.loop.LeaveConn(c, room)
				}
				p.subError(c, a, ch, "unavailable", "Unavailable", "could not reach the owner of "+hub.RoomStream(room)+": "+err.Error()+"; retry", 503)
				return
			}
			p.ready(c, pc, ch, pch)
		})
	})
	if !ok {
		delete(pc.chans, ch)
		if joined {
			p.n.loop.LeaveConn(c, room)
		}
		p.subError(c, a, ch, "unavailable", "Unavailable", "too many subscribes waiting on this node; retry", 503)
	}
}

// hasMember reports whether members (sorted by id, as the hub gives them) holds user.
func hasMember(members []pusher.Member, user string) bool {
	_, found := slices.BinarySearchFunc(members, user, func(m pusher.Member, id string) int { return strings.Compare(m.ID, id) })
	return found
}

// ready completes a subscribe on c's loop once the room's owner routes the channel
// here: the hub learns of the member, the client of its subscription.
func (p *pusherNode) ready(c *loop.Conn, pc *pusherConn, ch string, pch *pusherChan) {
	pch.ready = true
	pc.app.mSubscribed.Inc()
	if pusher.KindOf(ch) != pusher.KindServerToUser {
		// A user's own channel is no channel of the app's: not listed, no webhooks.
		p.n.hub.PusherJoin(pc.app.ID, ch, pc.socket, pch.member)
	}
	p.succeeded(c, pc, ch, pch)
}

// succeeded sends subscription_succeeded; on a presence channel with the members as
// this node knows them, the connection's own always among them.
func (p *pusherNode) succeeded(c *loop.Conn, pc *pusherConn, ch string, pch *pusherChan) {
	if pch.member == nil {
		p.n.loop.SendText(c, pusher.AppendSubscriptionSucceeded(nil, ch))
		return
	}
	members := p.n.hub.PusherMembers(pc.app.ID, ch)
	if i, found := slices.BinarySearchFunc(members, pch.member.ID, func(m pusher.Member, id string) int { return strings.Compare(m.ID, id) }); !found {
		members = slices.Insert(members, i, *pch.member)
	}
	pch.told = make(map[string]struct{}, len(members))
	for _, m := range members {
		pch.told[m.ID] = struct{}{}
	}
	p.n.loop.SendText(c, pusher.AppendPresenceSucceeded(nil, ch, members))
}

func (p *pusherNode) unsubscribe(c *loop.Conn, pc *pusherConn, data []byte) {
	chb, err := pusher.ParseUnsubscribe(data)
	if err != nil {
		pc.app.mProtocolErrors.Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Invalid pusher:unsubscribe: "+err.Error()))
		return
	}
	ch := string(chb)
	pch := pc.chans[ch]
	if pch == nil {
		return // not subscribed: nothing to undo (Pusher does not answer either)
	}
	delete(pc.chans, ch)
	p.n.loop.LeaveConn(c, loop.PusherRoom(pc.app.ID, ch))
	p.left(c, pc, ch, pch)
}

// left tells the hub c no longer holds ch (when it was told of the join).
func (p *pusherNode) left(c *loop.Conn, pc *pusherConn, ch string, pch *pusherChan) {
	if !pch.ready || pusher.KindOf(ch) == pusher.KindServerToUser {
		return
	}
	user := ""
	if pch.member != nil {
		user = pch.member.ID
	}
	p.n.hub.PusherLeave(pc.app.ID, ch, pc.socket, user)
}

// onMember is hub's PusherHooks.Member: a user joined or left presence channel ch
// of app cluster-wide. Every local subscriber of the channel is told, on its loop,
// unless its list already says so.
func (p *pusherNode) onMember(app, ch string, m pusher.Member, added bool) {
	a := p.byID[app]
	if a == nil {
		return
	}
	var frame []byte
	if added {
		frame = pusher.AppendMemberAdded(nil, ch, m)
	} else {
		frame = pusher.AppendMemberRemoved(nil, ch, m.ID)
	}
	_ = p.n.loop.EachInRoom(loop.PusherRoom(app, ch), func(c *loop.Conn) {
		e := c.Ext()
		if e == nil {
			return
		}
		pc, ok := e.Pusher.(*pusherConn)
		if !ok {
			return
		}
		pch := pc.chans[ch]
		if pch == nil || pch.told == nil || pch.member.ID == m.ID {
			// Not ready yet (its list will say), or its own user: a connection is
			// a member while it is subscribed, whatever a late table says.
			return
		}
		_, knows := pch.told[m.ID]
		if added == knows {
			return
		}
		if added {
			pch.told[m.ID] = struct{}{}
		} else {
			delete(pch.told, m.ID)
		}
		a.mMemberEvents.Inc()
		p.n.loop.SendText(c, frame)
	})
}

// onWebhook is hub's PusherHooks.Webhook: this node decided a channel or member
// event cluster-wide (it owns the channel's stream); the app's webhooks get it.
func (p *pusherNode) onWebhook(app, name, channel, userID string) {
	p.n.pusherHooks.Emit(app, pusher.WebhookEvent{Name: name, Channel: channel, UserID: userID})
}

func (p *pusherNode) signin(c *loop.Conn, pc *pusherConn, data []byte) {
	a := pc.app
	refuse := func(why string) {
		a.mSignins["refused"].Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, pusher.CodeUnauthorized, "Invalid pusher:signin: "+why))
		p.n.loop.CloseConn(c, pusher.CodeUnauthorized, "Unauthorized")
	}
	s, err := pusher.ParseSignin(data)
	if err != nil {
		refuse(err.Error())
		return
	}
	if err := a.CheckUserAuth(pc.socket, s.Auth, s.UserData); err != nil {
		refuse(err.Error())
		return
	}
	u, err := pusher.ParseUserData(s.UserData)
	if err != nil {
		refuse(err.Error())
		return
	}
	if pc.user != nil {
		if pc.user.ID != u.ID {
			refuse("this connection is signed in as " + strconv.Quote(pc.user.ID) + " already")
			return
		}
	} else {
		p.signedIn(c, a.ID, u.ID)
	}
	pc.user = &u
	c.Ext().PusherUser = u.ID
	a.mSignins["ok"].Inc()
	p.n.loop.SendText(c, pusher.AppendSigninSuccess(nil, s.UserData))
}

func (p *pusherNode) signedIn(c *loop.Conn, app, user string) {
	k := userKey{app, user}
	p.usersMu.Lock()
	set := p.users[k]
	if set == nil {
		set = map[*loop.Conn]struct{}{}
		p.users[k] = set
	}
	set[c] = struct{}{}
	p.usersMu.Unlock()
}

func (p *pusherNode) signedOut(c *loop.Conn, app, user string) {
	k := userKey{app, user}
	p.usersMu.Lock()
	if set := p.users[k]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(p.users, k)
		}
	}
	p.usersMu.Unlock()
}

// terminate is hub.Config.PusherTerminate: it closes this node's connections of
// app signed in as user (pusher:error 4009, then close 4009, which Pusher clients
// do not reconnect after) and returns how many.
func (p *pusherNode) terminate(app, user string) int {
	a := p.byID[app]
	if a == nil {
		return 0
	}
	p.usersMu.Lock()
	conns := make([]*loop.Conn, 0, len(p.users[userKey{app, user}]))
	for c := range p.users[userKey{app, user}] {
		conns = append(conns, c)
	}
	p.usersMu.Unlock()
	frame := pusher.AppendError(nil, pusher.CodeUnauthorized, "Connection terminated by the app")
	for _, c := range conns {
		// On the loop: the error is written at once and the close queued after it.
		_ = p.n.loop.Do(c, func(open bool) {
			if open {
				p.n.loop.SendText(c, frame)
				p.n.loop.CloseConn(c, pusher.CodeUnauthorized, "Terminated")
			}
		})
	}
	a.mTerminated.Add(len(conns))
	return len(conns)
}

// clientEvent relays a client-* event to the channel's other subscribers, on every
// node, through the channel's stream like a trigger (so it is ordered with them).
func (p *pusherNode) clientEvent(c *loop.Conn, pc *pusherConn, f *pusher.Frame) {
	a := pc.app
	ev, ch := string(f.Event), string(f.Channel)
	pch := pc.chans[ch]
	if err := pusher.CheckClientEvent(&a.App, ev, ch, pch != nil && pch.ready); err != nil {
		a.mClientEvents["refused"].Inc()
		code := 0
		var ce *pusher.ClientEventError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		p.n.loop.SendText(c, pusher.AppendError(nil, code, err.Error()))
		return
	}
	if max := a.MaxEventBytes; len(f.Data) > max && max > 0 || len(f.Data) > pusher.DefaultMaxEventBytes && max <= 0 {
		a.mClientEvents["refused"].Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Client event rejected: data over the app's event size"))
		return
	}
	if !pc.limiter.Allow(time.Now().UnixMilli()) {
		a.mClientEvents["rate_limited"].Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, pusher.CodeClientEventRateExceeded, pusher.ErrClientEventRate.Message))
		return
	}
	select {
	case p.inflight <- struct{}{}:
	default:
		a.mClientEvents["busy"].Inc()
		p.n.loop.SendText(c, pusher.AppendError(nil, 0, "Client event rejected: server busy, retry"))
		return
	}
	data := f.Data
	if len(data) == 0 {
		// pusher-js sends none for trigger(name) without data.
		data = []byte("null")
	}
	user := ""
	if pch.member != nil {
		user = pch.member.ID
	}
	m := push.NewPusherMessage(p.n.api.NewID(), []string{loop.PusherRoom(a.ID, ch)}, slices.Clone(data),
		push.PusherEvent{Event: ev, ExcludeSocket: pc.socket, UserID: user, Raw: true})
	m.Accepted = time.Now().UnixNano()
	p.n.bg.Add(1)
	go func() {
		defer p.n.bg.Done()
		defer func() { <-p.inflight }()
		if _, err := p.n.hub.Deliver(m); err != nil {
			a.mClientEvents["failed"].Inc()
			p.n.log.Debug("pusher: client event not stored", "app", a.ID, "channel", ch, "err", err)
			return
		}
		a.mClientEvents["relayed"].Inc()
		if p.n.pusherHooks.Wants(a.ID, pusher.WebhookClientEvent) {
			p.n.pusherHooks.Emit(a.ID, pusher.WebhookEvent{Name: pusher.WebhookClientEvent, Channel: ch, Event: ev,
				Data: webhookData(m.Data), SocketID: pc.socket, UserID: user})
		}
	}()
}

// webhookData is a client event's data as the client_event webhook's string: a
// string's characters, any other JSON value's text.
func webhookData(raw []byte) string {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}
