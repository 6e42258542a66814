package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"longlink/internal/jsonstr"
)

// apiError is an error answered as {"error": msg, "status": status}.
type apiError struct {
	status int
	reason int      // index into reasonNames
	msg    string   // names the offending field
	users  []string // for 404 on room join/leave: the users not connected
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, reason: reasonBadRequest, msg: fmt.Sprintf(format, args...)}
}

// fail writes a JSON error, counts it, and returns status.
func (a *API) fail(w http.ResponseWriter, status, reason int, msg string) int {
	return a.failErr(w, &apiError{status: status, reason: reason, msg: msg})
}

func (a *API) failErr(w http.ResponseWriter, e *apiError) int {
	bp := bufPool.Get().(*[]byte)
	status, b := a.errorAnswer(e, (*bp)[:0])
	writeRaw(w, status, b)
	*bp = b
	bufPool.Put(bp)
	return status
}

// AppendError appends the API's JSON error body, {"error":msg,"status":status}, to b,
// for answers the HTTP server gives before a request reaches the API.
func AppendError(b []byte, status int, msg string) []byte {
	return appendError(b, &apiError{status: status, msg: msg})
}

func appendError(b []byte, e *apiError) []byte {
	b = append(b, `{"error":`...)
	b = jsonstr.Append(b, e.msg)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	if e.users != nil {
		b = append(b, `,"users":`...)
		b = appendJSONStrings(b, e.users)
	}
	return append(b, '}')
}

// hubError converts an error from the Hub: one carrying HTTPStatus() keeps
// its status (when it is a 4xx or 5xx), anything else is a 500. 5xx errors
// are logged: they leave the process only as a response body otherwise.
func (a *API) hubError(op string, err error) *apiError {
	status := http.StatusInternalServerError
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		if s := hs.HTTPStatus(); s >= 400 && s <= 599 {
			status = s
		}
	}
	if status >= 500 {
		a.log.Error("push: hub failed", "op", op, "status", status, "err", err)
	}
	return &apiError{status: status, reason: reasonHub, msg: op + ": " + err.Error()}
}

// decodeJSON reads the request body (up to the limit) and decodes exactly one
// JSON value from it into v, rejecting unknown fields and trailing data.
// allowEmpty lets an empty body leave v untouched (DELETE with no body).
// fields lists the accepted field names for the unknown-field error, which
// encoding/json reports without a position.
func (a *API) decodeJSON(w http.ResponseWriter, r *http.Request, v any, fields string, allowEmpty bool) *apiError {
	body, e := a.readBody(w, r)
	if e != nil {
		return e
	}
	if allowEmpty && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return decodeBody(body, v, fields)
}

// readBody reads r's body, up to the body limit.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > a.maxBody {
		return nil, a.tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, a.tooLarge()
		}
		return nil, badRequest("cannot read the request body: %v", err)
	}
	return body, nil
}

// decodeBody decodes exactly one JSON value from body into v: no unknown
// fields, nothing but whitespace after it. Batch elements use it too.
func decodeBody(body []byte, v any, fields string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if err == io.EOF {
			return badRequest("request body is empty; expected a JSON object")
		}
		return jsonError(err, int64(len(body)), fields)
	}
	// One value only: "{...} {...}" or "{...} x" is a mistake worth naming.
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON object, which ends at byte offset %d", end)
	}
	return nil
}

func (a *API) tooLarge() *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, reason: reasonTooLarge,
		msg: "request body is larger than " + strconv.FormatInt(a.maxBody, 10) + " bytes"}
}

// jsonError turns an encoding/json error into a 400 naming the field or the
// byte offset. size is the body length, or -1 when unknown.
func jsonError(err error, size int64, fields string) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("invalid JSON at byte offset %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("expected a JSON object, got a JSON %s at byte offset %d", te.Value, te.Offset)
		}
		return badRequest("%s: expected %s, got a JSON %s at byte offset %d", te.Field, kindName(te.Type), te.Value, te.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		if size >= 0 {
			return badRequest("invalid JSON: the body ends at byte offset %d in the middle of a value", size)
		}
		return badRequest("invalid JSON: the body ends in the middle of a value")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest("unknown field %s; the fields are %s", name, fields)
	}
	return badRequest("invalid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

func appendJSONStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.Append(b, s)
	}
	return append(b, ']')
}
