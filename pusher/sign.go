package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Request signing of the Pusher HTTP API ("HTTP API reference", "Generating
// authentication signatures"): every request carries auth_key, auth_timestamp,
// auth_version=1.0, body_md5 (hex MD5 of the body, when there is one) and
// auth_signature, the hex HMAC-SHA256 under the app's secret of
//
//	METHOD \n PATH \n QUERY
//
// where QUERY is every query parameter but auth_signature, keys lowercased, sorted
// by key and joined k=v&... with the values as decoded, not URL-escaped.

// DefaultClockSkew is how far auth_timestamp may be from the server's clock, either
// way, as Pusher allows.
const DefaultClockSkew = 600 * time.Second

// authVersion is the only auth_version the spec defines.
const authVersion = "1.0"

// APIError is a request the HTTP API refuses: Status is the HTTP status, Msg the
// explanation sent as the (text) body, which is what Pusher does and what the SDKs
// put in their errors next to the status.
type APIError struct {
	Status int
	Msg    string
	// reason labels longlink_pusher_api_errors_total.
	reason errReason
}

func (e *APIError) Error() string { return fmt.Sprintf("pusher api: %d %s", e.Status, e.Msg) }

func apiErrorf(status int, reason errReason, format string, args ...any) *APIError {
	return &APIError{Status: status, Msg: fmt.Sprintf(format, args...), reason: reason}
}

// VerifyRequest checks a request's signature for app: query is the raw query string,
// path the request path as signed (decoded, e.g. /apps/1/events), body the whole
// body. It returns nil or an *APIError: 400 for a query that cannot be read (a
// parameter given twice, a timestamp that is not a number, an unknown auth_version),
// 401 for a missing parameter, a wrong key, a timestamp outside skew of now, a body
// that does not match body_md5 or a signature that does not verify.
func VerifyRequest(app *App, method, path, rawQuery string, body []byte, now time.Time, skew time.Duration) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return apiErrorf(http.StatusBadRequest, reasonMalformed, "malformed query string: %v", err)
	}
	params := make(map[string]string, len(q))
	for k, vs := range q {
		lk := strings.ToLower(k)
		if _, dup := params[lk]; dup || len(vs) != 1 {
			return apiErrorf(http.StatusBadRequest, reasonMalformed, "query parameter %q given more than once", lk)
		}
		params[lk] = vs[0]
	}

	key, ok := params["auth_key"]
	if !ok {
		return apiErrorf(http.StatusUnauthorized, reasonAuth, "missing auth_key")
	}
	// The key is public: comparing it in constant time hides nothing, but costs
	// nothing either.
	if subtle.ConstantTimeCompare([]byte(key), []byte(app.Key)) != 1 {
		return apiErrorf(http.StatusUnauthorized, reasonAuth, "unknown auth_key %q for app %s", key, app.ID)
	}
	v, ok := params["auth_version"]
	if !ok {
		return apiErrorf(http.StatusUnauthorized, reasonAuth, "missing auth_version")
	}
	if v != authVersion {
		return apiErrorf(http.StatusBadRequest, reasonMalformed, "unsupported auth_version %q (only %s)", v, authVersion)
	}
	ts, ok := params["auth_timestamp"]
	if !ok {
		return apiErrorf(http.StatusUnauthorized, reasonAuth, "missing auth_timestamp")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return apiErrorf(http.StatusBadRequest, reasonMalformed, "auth_timestamp %q is not a number of seconds", ts)
	}
	if d := now.Unix() - sec; d > int64(skew/time.Second) || -d > int64(skew/time.Second) {
		return apiErrorf(http.StatusUnauthorized, reasonTimestamp,
			"timestamp expired: given %d, not within %ds of server time %d", sec, int64(skew/time.Second), now.Unix())
	}
	if sum, ok := params["body_md5"]; ok || len(body) > 0 {
		if !ok {
			return apiErrorf(http.StatusUnauthorized, reasonAuth, "missing body_md5 for a request with a body")
		}
		got := md5.Sum(body)
		want, err := hex.DecodeString(sum)
		if err != nil || subtle.ConstantTimeCompare(got[:], want) != 1 {
			return apiErrorf(http.StatusUnauthorized, reasonSignature, "body_md5 does not match the body")
		}
	}
	sig, ok := params["auth_signature"]
	if !ok {
		return apiErrorf(http.StatusUnauthorized, reasonAuth, "missing auth_signature")
	}
	given, err := hex.DecodeString(sig)
	delete(params, "auth_signature")
	if err != nil || !hmac.Equal(given, signature(app.Secret, method, path, params)) {
		return apiErrorf(http.StatusUnauthorized, reasonSignature, "invalid auth_signature")
	}
	return nil
}

// SignQuery returns the query string a Pusher SDK sends for a request of app:
// params (keys as given; none of the auth_ ones) plus auth_key, auth_timestamp,
// auth_version, body_md5 when body is not empty, and auth_signature. Values are
// URL-escaped in the result, the signature is over the unescaped ones.
func SignQuery(app *App, method, path string, params map[string]string, body []byte, now time.Time) string {
	all := make(map[string]string, len(params)+5)
	for k, v := range params {
		all[strings.ToLower(k)] = v
	}
	all["auth_key"] = app.Key
	all["auth_timestamp"] = strconv.FormatInt(now.Unix(), 10)
	all["auth_version"] = authVersion
	if len(body) > 0 {
		sum := md5.Sum(body)
		all["body_md5"] = hex.EncodeToString(sum[:])
	}
	q := make(url.Values, len(all)+1)
	for k, v := range all {
		q.Set(k, v)
	}
	q.Set("auth_signature", hex.EncodeToString(signature(app.Secret, method, path, all)))
	return q.Encode()
}

// signature is the raw HMAC-SHA256 of "METHOD\nPATH\nk=v&..." over params (keys
// already lowercased, auth_signature not among them).
func signature(secret, method, path string, params map[string]string) []byte {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strings.ToUpper(method)))
	m.Write([]byte{'\n'})
	m.Write([]byte(path))
	m.Write([]byte{'\n'})
	for i, k := range keys {
		if i > 0 {
			m.Write([]byte{'&'})
		}
		m.Write([]byte(k))
		m.Write([]byte{'='})
		m.Write([]byte(params[k]))
	}
	return m.Sum(nil)
}
