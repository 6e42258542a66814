package push

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"
)

// fakeHub records every call and answers from its tables.
type fakeHub struct {
	mu        sync.Mutex
	delivered []*Message
	calls     []string // "deliver", "online", "join ROOM [users]", ...
	online    map[string][]ConnInfo
	rooms     map[string]RoomInfo
	result    Result
	err       error // returned by every method when set
	kicked    []string
}

func newFakeHub() *fakeHub {
	since := time.Date(2026, 11, 23, 3, 0, 0, 123456789, time.UTC)
	return &fakeHub{
		online: map[string][]ConnInfo{
			"42": {{ID: "c1", User: "42", Node: "n1", Remote: "10.0.0.1:5000", Device: "ios", Since: since, Rooms: []string{"lobby"}}},
			"43": {{ID: "c2", User: "43", Node: "n2", Since: since}},
		},
		rooms:  map[string]RoomInfo{"lobby": {Room: "lobby", Members: 1, Connections: 1, Nodes: map[string]int{"n1": 1}}},
		result: Result{Delivered: 3, Forwarded: 1},
	}
}

func (h *fakeHub) record(call string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
	return h.err
}

func (h *fakeHub) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func (h *fakeHub) Delivered() []*Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.delivered)
}

func (h *fakeHub) Deliver(m *Message) (Result, error) {
	if err := h.record("deliver"); err != nil {
		return Result{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := *m // the Hub contract: m.Data may alias a reused request buffer
	kept.Data = bytes.Clone(m.Data)
	h.delivered = append(h.delivered, &kept)
	res := h.result
	for _, u := range m.To.Users {
		if _, ok := h.online[u]; !ok {
			res.OfflineUsers = append(res.OfflineUsers, u)
		}
	}
	return res, nil
}

func (h *fakeHub) User(id string) ([]ConnInfo, error) {
	if err := h.record("user " + id); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.online[id]), nil
}

func (h *fakeHub) Room(room string) (RoomInfo, error) {
	if err := h.record("room " + room); err != nil {
		return RoomInfo{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[room], nil
}

func (h *fakeHub) Stats() (any, error) {
	if err := h.record("stats"); err != nil {
		return nil, err
	}
	return map[string]int{"connections": 2, "users": 2}, nil
}

func (h *fakeHub) kick(id, reason string, match func(ConnInfo) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, conns := range h.online {
		for _, c := range conns {
			if match(c) {
				n++
				h.kicked = append(h.kicked, c.ID+":"+reason)
			}
		}
	}
	return n
}

func (h *fakeHub) KickConnection(id, reason string) (int, error) {
	if err := h.record("kickconn " + id); err != nil {
		return 0, err
	}
	return h.kick(id, reason, func(c ConnInfo) bool { return c.ID == id }), nil
}

func (h *fakeHub) KickUser(id, reason string) (int, error) {
	if err := h.record("kickuser " + id); err != nil {
		return 0, err
	}
	return h.kick(id, reason, func(c ConnInfo) bool { return c.User == id }), nil
}

func (h *fakeHub) Online(users []string) ([]string, error) {
	if err := h.record("online"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var off []string
	for _, u := range users {
		if _, ok := h.online[u]; !ok {
			off = append(off, u)
		}
	}
	return off, nil
}

func (h *fakeHub) membership(op, room string, users []string) (int, error) {
	call := op + " " + room
	for _, u := range users {
		call += " " + u
	}
	if err := h.record(call); err != nil {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, u := range users {
		n += len(h.online[u])
	}
	return n, nil
}

func (h *fakeHub) JoinRoom(room string, users []string) (int, error) {
	return h.membership("join", room, users)
}

func (h *fakeHub) LeaveRoom(room string, users []string) (int, error) {
	return h.membership("leave", room, users)
}

// statusError is a hub error carrying an HTTP status.
type statusError struct{ status int }

func (e statusError) Error() string   { return http.StatusText(e.status) + " from hub" }
func (e statusError) HTTPStatus() int { return e.status }

var errBoom = errors.New("boom")

func (h *fakeHub) Receipt(id string) (*Receipt, error) { return nil, nil }
