package push

import (
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
// m.Data may alias body: the Hub copies it before Deliver returns.
func (a *API) pushBody(body, buf []byte) (int, []byte) {
	var req pushRequest
	if !parsePushFast(body, &req) {
		if e := decodeBody(body, &req, pushFields); e != nil {
			return a.errorAnswer(e, buf)
		}
	}
	m, e := a.message(&req)
	if e != nil {
		return a.errorAnswer(e, buf)
	}
	res, e := a.deliver(m)
	if e != nil {
		return a.errorAnswer(e, buf)
	}
	status := http.StatusAccepted
	if res.Targets != nil && res.Complete {
		status = http.StatusOK // waited, and every target got there
	}
	return status, appendResult(buf, m.ID, &res)
}

func (a *API) errorAnswer(e *apiError, buf []byte) (int, []byte) {
	a.m.errors[e.reason].Inc()
	return e.status, appendError(buf, e)
}
