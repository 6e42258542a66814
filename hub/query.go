package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"longlink/loop"
	"longlink/push"
)

// Queries to peers travel as cluster requests (Remote.Ask): the body is one op
// byte and the op's argument, the answer is JSON.
const (
	opUser     byte = 'u' // arg: user id            -> []push.ConnInfo
	opRoom     byte = 'r' // arg: room               -> roomAnswer
	opStats    byte = 's' // arg: empty              -> nodeStats
	opKickConn byte = 'k' // arg: kickBody           -> int
	opKickUser byte = 'K' // arg: kickBody           -> int
	opOnline   byte = 'o' // arg: []string users     -> []string offline here
	opJoin     byte = 'j' // arg: roomBody           -> int
	opLeave    byte = 'l' // arg: roomBody           -> int
)

func query(op byte, arg []byte) []byte { return append([]byte{op}, arg...) }

type kickBody struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

type roomBody struct {
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

type roomAnswer struct {
	Members     []string `json:"members"`
	Connections int      `json:"connections"`
}

type nodeStats struct {
	Node        string `json:"node"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Rooms       int    `json:"rooms"`
	Draining    bool   `json:"draining"`
}

// ask runs a query on peers, bounded by QueryTimeout.
func (h *Hub) ask(peers []string, op byte, arg []byte) (map[string][]byte, []string) {
	if len(peers) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.QueryTimeout)
	defer cancel()
	return h.remote.Ask(ctx, peers, query(op, arg))
}

// OnRequest is the cluster's OnRequest: it runs a peer's query here and returns
// the JSON answer, or nil (no answer: the asker times out) for a malformed one.
// It runs on one of the cluster's bounded answering goroutines and may wait for
// the local loops, up to QueryTimeout.
func (h *Hub) OnRequest(from string, body []byte) []byte {
	if len(body) == 0 {
		return nil
	}
	op, arg := body[0], body[1:]
	switch op {
	case opAppend:
		return h.st.onAppend(from, arg)
	case opReplicate:
		return h.st.onReplicate(arg)
	case opSync:
		return h.st.onSync(arg)
	case opSubscribe:
		return h.st.onSubscribe(arg)
	case opHandoff:
		return h.st.onHandoff(arg)
	case opReceipt:
		return h.onReceiptQuery(arg)
	case opFeed:
		return h.pr.onFeed(from, arg)
	case opPusherTerminate:
		return h.onPusherTerminate(arg)
	case opPusherFeed:
		return h.ps.onFeed(from, arg)
	case opPusherCounts:
		return h.ps.onCounts(arg)
	}
	var out any
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.QueryTimeout)
	defer cancel()
	switch op {
	case opUser:
		out = h.localUser(string(arg))
	case opRoom:
		ri := h.local.RoomMembers(string(arg))
		out = roomAnswer{Members: ri.Users, Connections: ri.Connections}
	case opStats:
		out = h.localStats()
	case opKickConn, opKickUser:
		var kb kickBody
		if json.Unmarshal(arg, &kb) != nil {
			return nil
		}
		var n int
		if op == opKickConn {
			n, _ = h.local.KickConnection(ctx, kb.ID, kb.Reason)
		} else {
			n, _ = h.local.KickUser(ctx, kb.ID, kb.Reason)
		}
		out = n
	case opOnline:
		var users []string
		if json.Unmarshal(arg, &users) != nil {
			return nil
		}
		out = h.local.Offline(users)
	case opJoin, opLeave:
		var rb roomBody
		if json.Unmarshal(arg, &rb) != nil {
			return nil
		}
		var n int
		if op == opJoin {
			n, _, _ = h.local.JoinRoom(ctx, rb.Room, rb.Users)
			if n > 0 && h.st.barrier(skey{loop.KeyRoom, rb.Room}) != nil {
				return nil // the asker reports this node as not answering
			}
		} else {
			n, _, _ = h.local.LeaveRoom(ctx, rb.Room, rb.Users)
		}
		out = n
	default:
		return nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic("BUG: hub: cannot encode query answer: " + err.Error())
	}
	return b
}

func (h *Hub) localUser(id string) []push.ConnInfo {
	infos := h.local.UserConnections(id)
	out := make([]push.ConnInfo, 0, len(infos))
	for _, ci := range infos {
		out = append(out, push.ConnInfo{ID: ci.ID, User: ci.User, Node: h.cfg.NodeName, Remote: ci.Remote,
			Device: ci.Device, Since: time.Unix(0, ci.Since).UTC(), Rooms: ci.Rooms, Meta: metaJSON(ci.Meta)})
	}
	return out
}

// metaJSON is a connection's metadata for its listing: nil (left out) when none.
func metaJSON(meta string) json.RawMessage {
	if meta == "" {
		return nil
	}
	return json.RawMessage(meta)
}

// User lists the user's connections on every node that may hold them.
func (h *Hub) User(id string) ([]push.ConnInfo, error) {
	out := h.localUser(id)
	answers, missing := h.ask(h.remote.NodesForUsers([]string{id}), opUser, []byte(id))
	for _, b := range answers {
		var cs []push.ConnInfo
		if json.Unmarshal(b, &cs) == nil {
			out = append(out, cs...)
		}
	}
	if len(out) == 0 && len(missing) > 0 {
		return nil, &statusError{503, fmt.Sprintf("nodes %s did not answer; the user may be connected there", strings.Join(missing, ", "))}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// Room counts a room across nodes: members are distinct users.
func (h *Hub) Room(room string) (push.RoomInfo, error) {
	local := h.local.RoomMembers(room)
	ri := push.RoomInfo{Room: room, Nodes: map[string]int{}}
	users := map[string]struct{}{}
	add := func(node string, a roomAnswer) {
		if a.Connections == 0 {
			return
		}
		ri.Nodes[node] = a.Connections
		ri.Connections += a.Connections
		for _, u := range a.Members {
			users[u] = struct{}{}
		}
	}
	add(h.cfg.NodeName, roomAnswer{Members: local.Users, Connections: local.Connections})
	answers, _ := h.ask(h.remote.NodesForRooms([]string{room}), opRoom, []byte(room))
	for p, b := range answers {
		var a roomAnswer
		if json.Unmarshal(b, &a) == nil {
			add(p, a)
		}
	}
	ri.Members = len(users)
	return ri, nil
}

func (h *Hub) localStats() nodeStats {
	return nodeStats{Node: h.cfg.NodeName, Connections: h.local.Connections(), Users: h.local.Users(),
		Rooms: h.local.Rooms(), Draining: h.draining()}
}

// Stats sums every node's counts. Users connected to several nodes count once per
// node in the total (the per-node figures are exact).
func (h *Hub) Stats() (any, error) {
	self := h.localStats()
	nodes := []nodeStats{self}
	answers, missing := h.ask(h.remote.AliveNodes(), opStats, nil)
	for _, b := range answers {
		var s nodeStats
		if json.Unmarshal(b, &s) == nil {
			nodes = append(nodes, s)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	total := nodeStats{Node: "total"}
	for _, s := range nodes {
		total.Connections += s.Connections
		total.Users += s.Users
		total.Rooms += s.Rooms
	}
	return map[string]any{
		"node":        self.Node,
		"connections": total.Connections,
		"users":       total.Users,
		"rooms":       total.Rooms,
		"nodes":       nodes,
		"unreachable": missing,
	}, nil
}

func (h *Hub) kick(op byte, id, reason string, peers []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.QueryTimeout)
	defer cancel()
	var n int
	var err error
	if op == opKickConn {
		n, err = h.local.KickConnection(ctx, id, reason)
	} else {
		n, err = h.local.KickUser(ctx, id, reason)
	}
	if err != nil {
		return n, hubErr(err)
	}
	body, _ := json.Marshal(kickBody{ID: id, Reason: reason})
	answers, missing := h.ask(peers, op, body)
	for _, b := range answers {
		var k int
		if json.Unmarshal(b, &k) == nil {
			n += k
		}
	}
	if n == 0 && len(missing) > 0 {
		return 0, &statusError{503, fmt.Sprintf("nodes %s did not answer", strings.Join(missing, ", "))}
	}
	return n, nil
}

// KickConnection closes one connection here or on the node its id names.
func (h *Hub) KickConnection(id, reason string) (int, error) {
	var peers []string
	if node := nodeOfConn(id); node != "" && node != h.cfg.NodeName && slices.Contains(h.remote.AliveNodes(), node) {
		peers = []string{node}
	}
	return h.kick(opKickConn, id, reason, peers)
}

// KickUser closes the user's connections on every node that may hold them.
func (h *Hub) KickUser(id, reason string) (int, error) {
	return h.kick(opKickUser, id, reason, h.remote.NodesForUsers([]string{id}))
}

// Online asks the nodes that may hold users which of them they do not hold.
func (h *Hub) Online(users []string) ([]string, error) {
	offline := h.local.Offline(users)
	if len(offline) == 0 {
		return offline, nil
	}
	body, _ := json.Marshal(offline)
	answers, missing := h.ask(h.remote.NodesForUsers(offline), opOnline, body)
	if len(missing) > 0 {
		return nil, &statusError{503, fmt.Sprintf("nodes %s did not answer", strings.Join(missing, ", "))}
	}
	still := offline
	for _, b := range answers {
		var off []string
		if json.Unmarshal(b, &off) != nil {
			continue
		}
		still = slices.DeleteFunc(still, func(u string) bool { return !slices.Contains(off, u) })
	}
	return still, nil
}

func (h *Hub) room(op byte, room string, users []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.QueryTimeout)
	defer cancel()
	var n int
	var err error
	if op == opJoin {
		n, _, err = h.local.JoinRoom(ctx, room, users)
		if err == nil && n > 0 {
			err = h.st.barrier(skey{loop.KeyRoom, room})
		}
	} else {
		n, _, err = h.local.LeaveRoom(ctx, room, users)
	}
	if err != nil {
		return n, hubErr(err)
	}
	body, _ := json.Marshal(roomBody{Room: room, Users: users})
	answers, missing := h.ask(h.remote.NodesForUsers(users), op, body)
	for _, b := range answers {
		var k int
		if json.Unmarshal(b, &k) == nil {
			n += k
		}
	}
	if len(missing) > 0 {
		return n, &statusError{503, fmt.Sprintf("nodes %s did not answer; the room change may be partial", strings.Join(missing, ", "))}
	}
	return n, nil
}

// JoinRoom subscribes the users' connections here and on the nodes that may hold them.
func (h *Hub) JoinRoom(room string, users []string) (int, error) { return h.room(opJoin, room, users) }

// LeaveRoom is the reverse of JoinRoom.
func (h *Hub) LeaveRoom(room string, users []string) (int, error) {
	return h.room(opLeave, room, users)
}
