package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// ServePush serves POST /v1/push for an HTTP server that has already read the
// whole request, as the node's API server does: the same authentication,
// checks, metrics and answers as the route in Handler, without net/http's
// per-request machinery on the hottest path. body is not retained. The JSON
// answer is appended to buf; wwwAuthenticate is set on 401 answers.
func (a *API) ServePush(authorization, contentType string, body, buf []byte) (status int, wwwAuthenticate string, answer []byte) {
	start := time.Now()
	e, www := a.authError(authorization)
	if e == nil {
		e = contentTypeError(contentType)
	}
	if e == nil && int64(len(body)) > a.maxBody {
		e = a.tooLarge()
	}
	if e != nil {
		status, answer = a.errorAnswer(e, buf)
		if len(www) > 0 {
			wwwAuthenticate = www[0]
		}
	} else {
		status, answer = a.pushBody(body, buf)
	}
	a.pushRoute.counter(status).Inc()
	a.pushRoute.hist.UpdateDuration(start)
	return status, wwwAuthenticate, answer
}

// TooLarge is the answer for a body over the limit that the HTTP server refused
// before reading it (it knows the limit from MaxBodyBytes).
func (a *API) TooLarge(buf []byte) (status int, answer []byte) {
	return a.errorAnswer(a.tooLarge(), buf)
}

// MaxBodyBytes is the body limit in force (Config.MaxBodyBytes or its default).
func (a *API) MaxBodyBytes() int64 { return a.maxBody }

// pushBody decodes, validates and delivers one push body and appends the
// answer to buf. The common body shape takes the allocation-light parser;
// anything else goes through encoding/json, which also words the errors.
func (a *API) pushBody(body, buf []byte) (int, []byte) {
	var req pushRequest
	fast := parsePushFast(body, &req)
	if !fast {
		req = pushRequest{}
		if e := decodeBody(body, &req, pushFields); e != nil {
			return a.errorAnswer(e, buf)
		}
	}
	m, e := a.message(&req)
	if e != nil {
		return a.errorAnswer(e, buf)
	}
	if fast && !m.Binary {
		// The fast parser's data aliases the request buffer, which the server
		// reuses; the hub keeps m beyond this call.
		m.Data = bytes.Clone(m.Data)
	}
	res, e := a.deliver(m)
	if e != nil {
		return a.errorAnswer(e, buf)
	}
	return http.StatusAccepted, appendResult(buf, m.ID, &res)
}

func (a *API) errorAnswer(e *apiError, buf []byte) (int, []byte) {
	a.m.errors[e.reason].Inc()
	return e.status, appendError(buf, e)
}

// decodeBody is decodeJSON for a body already in memory: exactly one JSON
// value, no unknown fields, nothing but whitespace after it.
func decodeBody(body []byte, v any, fields string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if err == io.EOF {
			return badRequest("request body is empty; expected a JSON object")
		}
		return jsonError(err, int64(len(body)), fields)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON object, which ends at byte offset %d", end)
	}
	return nil
}

// readBody reads r's body into buf, up to the body limit.
func (a *API) readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, *apiError) {
	if r.ContentLength > a.maxBody {
		return buf, a.tooLarge()
	}
	body := buf[:0]
	rd := http.MaxBytesReader(w, r.Body, a.maxBody)
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return body, a.tooLarge()
			}
			return body, badRequest("cannot read the request body: %v", err)
		}
	}
}
