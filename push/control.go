package push

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

type roomRequest struct {
	Users []string `json:"users"`
}

type kickRequest struct {
	Reason string `json:"reason"`
}

func (a *API) handleJoin(w http.ResponseWriter, r *http.Request) int {
	return a.roomMembership(w, r, "join", a.hub.JoinRoom)
}

func (a *API) handleLeave(w http.ResponseWriter, r *http.Request) int {
	return a.roomMembership(w, r, "leave", a.hub.LeaveRoom)
}

// roomMembership checks everything, then asks the hub which users are
// offline, and applies the change only when every user is connected, so a
// 404 leaves the room exactly as it was.
func (a *API) roomMembership(w http.ResponseWriter, r *http.Request, op string, apply func(string, []string) (int, error)) int {
	room := r.PathValue("room")
	if e := checkID("room", -1, room); e != nil {
		return a.failErr(w, e)
	}
	var req roomRequest
	if e := a.decodeJSON(w, r, &req, "users", false); e != nil {
		return a.failErr(w, e)
	}
	switch {
	case len(req.Users) == 0:
		return a.failErr(w, badRequest("users must name at least one user"))
	case len(req.Users) > a.maxTargets:
		return a.failErr(w, badRequest("users names %d users, the limit is %d", len(req.Users), a.maxTargets))
	}
	if e := checkIDs("users", req.Users); e != nil {
		return a.failErr(w, e)
	}
	users := dedupe(req.Users)
	offline, err := a.hub.Online(users)
	if err != nil {
		return a.failErr(w, a.hubError("online check", err))
	}
	if len(offline) > 0 {
		return a.failErr(w, &apiError{
			status: http.StatusNotFound, reason: reasonNotFound, users: offline,
			msg: "cannot " + op + " room " + strconv.Quote(room) + ": " + strconv.Itoa(len(offline)) +
				" users are not connected: " + quoteList(offline, 10) + "; nothing was changed",
		})
	}
	conns, err := apply(room, users)
	if err != nil {
		return a.failErr(w, a.hubError(op+" room "+strconv.Quote(room), err))
	}
	return a.writeJSON(w, http.StatusOK, struct {
		Room        string `json:"room"`
		Users       int    `json:"users"`
		Connections int    `json:"connections"`
	}{room, len(users), conns})
}

func (a *API) handleRoom(w http.ResponseWriter, r *http.Request) int {
	room := r.PathValue("room")
	if e := checkID("room", -1, room); e != nil {
		return a.failErr(w, e)
	}
	info, err := a.hub.Room(room)
	if err != nil {
		return a.failErr(w, a.hubError("room "+strconv.Quote(room), err))
	}
	// Rooms are ephemeral: an unknown room is an empty one, not a 404.
	info.Room = room
	if info.Nodes == nil {
		info.Nodes = map[string]int{}
	}
	return a.writeJSON(w, http.StatusOK, info)
}

func (a *API) handleUser(w http.ResponseWriter, r *http.Request) int {
	id := r.PathValue("id")
	if e := checkID("user id", -1, id); e != nil {
		return a.failErr(w, e)
	}
	conns, err := a.hub.User(id)
	if err != nil {
		return a.failErr(w, a.hubError("user "+strconv.Quote(id), err))
	}
	if len(conns) == 0 {
		return a.fail(w, http.StatusNotFound, reasonNotFound, "user "+strconv.Quote(id)+" is not connected")
	}
	for i := range conns {
		if conns[i].Rooms == nil {
			conns[i].Rooms = []string{}
		}
	}
	return a.writeJSON(w, http.StatusOK, struct {
		User        string     `json:"user"`
		Connections []ConnInfo `json:"connections"`
	}{id, conns})
}

func (a *API) handleStats(w http.ResponseWriter, r *http.Request) int {
	st, err := a.hub.Stats()
	if err != nil {
		return a.failErr(w, a.hubError("stats", err))
	}
	return a.writeJSON(w, http.StatusOK, st)
}

func (a *API) handleKickUser(w http.ResponseWriter, r *http.Request) int {
	return a.kick(w, r, "user", a.hub.KickUser)
}

func (a *API) handleKickConnection(w http.ResponseWriter, r *http.Request) int {
	return a.kick(w, r, "connection", a.hub.KickConnection)
}

// kick closes a user's or a connection's sockets. The reason comes from the
// JSON body, else the "reason" query parameter, else "kicked"; it must fit
// in a close frame.
func (a *API) kick(w http.ResponseWriter, r *http.Request, what string, apply func(id, reason string) (int, error)) int {
	id := r.PathValue("id")
	if e := checkID(what+" id", -1, id); e != nil {
		return a.failErr(w, e)
	}
	var req kickRequest
	if e := a.decodeJSON(w, r, &req, "reason", true); e != nil {
		return a.failErr(w, e)
	}
	reason := req.Reason
	if reason == "" {
		reason = r.URL.Query().Get("reason")
	}
	if reason == "" {
		reason = "kicked"
	}
	if len(reason) > maxReasonLen {
		return a.failErr(w, badRequest("reason is %d bytes long, a close frame holds at most %d", len(reason), maxReasonLen))
	}
	if !utf8.ValidString(reason) {
		return a.failErr(w, badRequest("reason is not valid UTF-8"))
	}
	n, err := apply(id, reason)
	if err != nil {
		return a.failErr(w, a.hubError("kick "+what+" "+strconv.Quote(id), err))
	}
	if n == 0 {
		msg := "connection " + strconv.Quote(id) + " not found"
		if what == "user" {
			msg = "user " + strconv.Quote(id) + " is not connected"
		}
		return a.fail(w, http.StatusNotFound, reasonNotFound, msg)
	}
	return a.writeJSON(w, http.StatusOK, struct {
		Closed int `json:"closed"`
	}{n})
}

// writeJSON encodes v with encoding/json; for the control routes, which are
// not on the hot path.
func (a *API) writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		a.log.Error("push: cannot encode response", "err", err)
		return a.fail(w, http.StatusInternalServerError, reasonHub, "cannot encode the response: "+err.Error())
	}
	return writeRaw(w, status, b)
}

// dedupe returns ids without repeats, in first-seen order; ids itself when
// it has none.
func dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	if len(out) == len(ids) {
		return ids
	}
	return out
}

// quoteList quotes up to max items and says how many more there are.
func quoteList(items []string, max int) string {
	var sb strings.Builder
	for i, s := range items {
		if i == max {
			sb.WriteString(" and " + strconv.Itoa(len(items)-max) + " more")
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Quote(s))
	}
	return sb.String()
}
