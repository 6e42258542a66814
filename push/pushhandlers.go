package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"longlink/internal/jsonstr"
)

// pushRequest is the body of POST /v1/push and one element of a batch. Data
// and DataBase64 stay raw so the payload is copied at most once on its way
// into Message.Data.
type pushRequest struct {
	To         Target          `json:"to"`
	Data       json.RawMessage `json:"data"`
	DataBase64 json.RawMessage `json:"data_base64"`
	TTL        string          `json:"ttl"`
	ID         string          `json:"id"`
	History    *bool           `json:"history"`
	Ack        bool            `json:"ack"`
	Receipt    bool            `json:"receipt"`
	Wait       string          `json:"wait"`
}

// pushFields and batchFields name the accepted fields in unknown-field errors.
const (
	pushFields  = "to (users, connections, rooms, all), data, data_base64, ttl, history, id, ack, receipt, wait"
	batchFields = "messages"
)

type batchRequest struct {
	Messages []json.RawMessage `json:"messages"`
}

// servePushHTTP adapts POST /v1/push on net/http to ServePush, the route's one entry
// point. It reads at most one byte past the limit, so ServePush answers an
// unauthenticated caller 401 and an oversized body 413, in that order, as it does
// for the API server.
func (a *API) servePushHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, a.maxBody+1))
	if err != nil {
		status, answer := a.errorAnswer(badRequest("cannot read the request body: %v", err), nil)
		a.pushRoute.counter(status).Inc()
		writeRaw(w, status, answer)
		return
	}
	status, www, answer := a.ServePush(r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body, nil)
	if www != "" {
		w.Header()["Www-Authenticate"] = []string{www}
	}
	writeRaw(w, status, answer)
}

// handleBatch validates every message first, then delivers the valid ones
// in order. Invalid messages get their own error in results; only a body
// that is not a JSON object with a "messages" array fails as a whole.
func (a *API) handleBatch(w http.ResponseWriter, r *http.Request) int {
	var req batchRequest
	if e := a.decodeJSON(w, r, &req, batchFields, false); e != nil {
		return a.failErr(w, e)
	}
	switch n := len(req.Messages); {
	case n == 0:
		return a.failErr(w, badRequest("messages must hold at least one message"))
	case n > a.maxBatch:
		return a.failErr(w, badRequest("messages holds %d messages, the limit is %d", n, a.maxBatch))
	}
	msgs := make([]*Message, len(req.Messages))
	errs := make([]*apiError, len(req.Messages))
	for i, raw := range req.Messages {
		var pr pushRequest
		e := decodeBody(raw, &pr, pushFields)
		if e == nil && pr.Wait != "" {
			// The messages of a batch are delivered in turn: their waits would add up.
			e = badRequest("wait is for POST /v1/push, not a batch (its messages are delivered in turn, so their waits would add up); use receipt and GET /v1/messages/{id}")
		}
		if e == nil {
			msgs[i], e = a.message(&pr)
		}
		if e != nil {
			e.msg = "messages[" + strconv.Itoa(i) + "]: " + e.msg
			a.m.errors[e.reason].Inc()
			errs[i] = e
		}
	}
	b := append([]byte(nil), `{"results":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		if m != nil {
			res, e := a.deliver(m)
			if e != nil {
				e.msg = "messages[" + strconv.Itoa(i) + "]: " + e.msg
				a.m.errors[e.reason].Inc()
				errs[i] = e
			} else {
				b = appendResult(b, m.ID, &res)
				continue
			}
		}
		b = appendError(b, errs[i])
	}
	b = append(b, "]}"...)
	return writeRaw(w, http.StatusOK, b)
}

// deliver stamps m and hands it to the hub.
func (a *API) deliver(m *Message) (Result, *apiError) {
	if m.ID == "" {
		m.ID = a.nextID()
	}
	m.Accepted = time.Now().UnixNano()
	a.m.countAccepted(m)
	id := m.ID // m belongs to the hub once Deliver is called
	res, err := a.hub.Deliver(m)
	if err != nil {
		return res, a.hubError("deliver "+id, err)
	}
	a.m.recipients.Add(res.Delivered)
	return res, nil
}

func appendResult(b []byte, id string, res *Result) []byte {
	b = append(b, `{"id":`...)
	b = jsonstr.Append(b, id)
	b = append(b, `,"stored":`...)
	b = strconv.AppendInt(b, int64(res.Stored), 10)
	b = append(b, `,"delivered":`...)
	b = strconv.AppendInt(b, int64(res.Delivered), 10)
	b = append(b, `,"forwarded":`...)
	b = strconv.AppendInt(b, int64(res.Forwarded), 10)
	if len(res.OfflineUsers) > 0 {
		b = append(b, `,"offline_users":`...)
		b = appendJSONStrings(b, res.OfflineUsers)
	}
	if len(res.UnknownConnections) > 0 {
		b = append(b, `,"unknown_connections":`...)
		b = appendJSONStrings(b, res.UnknownConnections)
	}
	if res.Targets != nil {
		b = append(b, `,"complete":`...)
		b = strconv.AppendBool(b, res.Complete)
		b = append(b, `,"targets":`...)
		t, _ := json.Marshal(res.Targets) // maps of strings and ints: cannot fail
		b = append(b, t...)
	}
	return append(b, '}')
}

// message validates req completely and builds the Message; nothing reaches
// the hub unless this succeeds.
func (a *API) message(req *pushRequest) (*Message, *apiError) {
	if e := a.checkTarget(&req.To); e != nil {
		return nil, e
	}
	data, b64 := present(req.Data), present(req.DataBase64)
	m := &Message{To: req.To}
	if req.ID != "" {
		// The caller's id makes a retry idempotent: a stream that already stored a
		// message with this id keeps the first (see docs/api.md, "Retries").
		if len(req.ID) > maxIDLen || !printableASCII(req.ID) {
			return nil, badRequest("id must be 1 to %d printable ASCII characters", maxIDLen)
		}
		m.ID = req.ID
	}
	if req.History != nil && !*req.History {
		m.NoHistory = true
	}
	if req.Ack || req.Receipt || req.Wait != "" {
		if len(req.To.Rooms) > 0 || req.To.All {
			return nil, badRequest("ack, receipt and wait are for users and connections targets: rooms and all name no one to acknowledge or wait for")
		}
		if m.NoHistory && req.Ack {
			return nil, badRequest("ack needs the message stored until it is acknowledged: it cannot go with \"history\": false")
		}
		m.Ack, m.Receipt = req.Ack, true
	}
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		switch {
		case err != nil:
			return nil, badRequest("wait %q is not a duration such as \"5s\"", req.Wait)
		case d <= 0 || d > MaxWait:
			return nil, badRequest("wait %s is out of range: more than 0, at most %s", req.Wait, MaxWait)
		}
		m.Wait = d
	}
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		switch {
		case err != nil:
			return nil, badRequest("ttl %q is not a duration such as \"30s\" or \"5m\"", req.TTL)
		case d < time.Second || d > a.maxTTL:
			return nil, badRequest("ttl %s is out of range: 1s to %s", req.TTL, a.maxTTL)
		}
		m.TTL = d
	}
	switch {
	case data != nil && b64 != nil:
		return nil, badRequest("give exactly one of data and data_base64, not both")
	case data == nil && b64 == nil:
		return nil, badRequest("one of data (text message) or data_base64 (binary message) is required")
	case data != nil:
		if !utf8.Valid(data) {
			return nil, badRequest("data is not valid UTF-8; send binary payloads as data_base64")
		}
		if data[0] != '"' {
			// Any other JSON value is sent as its JSON text, as given.
			m.Data = data
			m.JSON = true
			break
		}
		if bytes.IndexByte(data, '\\') < 0 {
			// No escapes: the characters between the quotes are the message.
			m.Data = data[1 : len(data)-1]
			break
		}
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, badRequest("data: %v", err) // the decoder already checked it
		}
		m.Data = []byte(s)
	default:
		if b64[0] != '"' {
			return nil, badRequest("data_base64 must be a JSON string holding base64")
		}
		enc := b64[1 : len(b64)-1]
		if bytes.IndexByte(enc, '\\') >= 0 { // "\/" is a legal JSON escape of '/'
			var s string
			if err := json.Unmarshal(b64, &s); err != nil {
				return nil, badRequest("data_base64: %v", err)
			}
			enc = []byte(s)
		}
		codec := base64.StdEncoding
		if len(enc)%4 != 0 {
			codec = base64.RawStdEncoding // padding is optional
		}
		buf := make([]byte, codec.DecodedLen(len(enc)))
		n, err := codec.Decode(buf, enc)
		if err != nil {
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				return nil, badRequest("data_base64 is not valid standard base64 (RFC 4648) at character %d", int64(ce))
			}
			return nil, badRequest("data_base64 is not valid base64: %v", err)
		}
		m.Data = buf[:n]
		m.Binary = true
	}
	return m, nil
}

// present returns the trimmed raw value, or nil when it is absent or JSON
// null (null is treated as absent, the usual JSON convention).
func present(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// checkTarget validates a message's targets.
func (a *API) checkTarget(t *Target) *apiError {
	n := len(t.Users) + len(t.Connections) + len(t.Rooms)
	if n == 0 && !t.All {
		return badRequest("to must name at least one of users, connections, rooms, all")
	}
	if n > a.maxTargets {
		return badRequest("to names %d users, connections and rooms, the limit is %d", n, a.maxTargets)
	}
	if e := checkIDs("to.users", t.Users); e != nil {
		return e
	}
	if e := checkIDs("to.connections", t.Connections); e != nil {
		return e
	}
	return checkIDs("to.rooms", t.Rooms)
}

func checkIDs(field string, ids []string) *apiError {
	for i, id := range ids {
		if e := checkID(field, i, id); e != nil {
			return e
		}
	}
	return nil
}

func checkID(field string, i int, id string) *apiError {
	where := field
	if i >= 0 {
		where += "[" + strconv.Itoa(i) + "]"
	}
	switch {
	case id == "":
		return badRequest("%s is empty", where)
	case len(id) > maxIDLen:
		return badRequest("%s is %d bytes long, the limit is %d", where, len(id), maxIDLen)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
