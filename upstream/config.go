package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Business configures one business: where its back-end is and the limits of its
// traffic. Zero fields take the values of BusinessDefaults.
type Business struct {
	// Name is the business's name: clients send to it ("business":"chat") and its
	// rooms are namespaced by it ("chat/lobby"). 1 to 64 of [A-Za-z0-9_-]. Required.
	Name string
	// URL is the back-end that client requests are POSTed to (http or https).
	// Required.
	URL string
	// Timeout bounds one request, from the slot taken to the answer read: over it
	// the client gets 504. Default 5s.
	Timeout time.Duration
	// InFlight is how many requests (and subscribe-hook calls) of this business may
	// run at once on this node; over it a client gets 503 at once. Default 256.
	InFlight int
	// Pool is the most connections this node opens to each of the business's
	// back-end hosts; requests in flight beyond it wait for one, within Timeout.
	// Default 64.
	Pool int
	// Secret, when set, signs every request to the back-end: X-Longlink-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the X-Longlink-Timestamp value, a '.'
	// and the body, under Secret. Empty: requests are not signed.
	Secret string
	// SubscribeURL, when set, is asked whether a client may subscribe to one of the
	// business's rooms its token does not list: a 2xx allows, any other status
	// refuses with that status and the answer's reason. Empty: only the token
	// decides.
	SubscribeURL string
	// Rate is how many requests a second one connection may make to this business
	// (sends and subscribes to its rooms), on top of the client's own limit. Zero: no
	// limit of the business's own.
	Rate float64
	// Burst is how many of them may come at once. Default: twice Rate, at least 1.
	Burst int
	// MaxRooms is how many of the business's rooms one connection may be in.
	// Default 32.
	MaxRooms int
	// MaxReply is the largest back-end answer in bytes; a larger one is a 502.
	// Default 64 KiB.
	MaxReply int
}

// BusinessDefaults returns the values zero fields of a Business stand for.
func BusinessDefaults() Business {
	return Business{Timeout: 5 * time.Second, InFlight: 256, Pool: 64, MaxRooms: 32, MaxReply: 64 << 10}
}

// Config configures the node's businesses and the limits of client requests.
type Config struct {
	// Businesses are the businesses this node forwards to. None: every send is
	// answered 404 and only unnamespaced rooms can be subscribed.
	Businesses []Business
	// ClientRate is how many requests a second one connection may make (send,
	// subscribe, unsubscribe; not acks); over it the request is answered 429. Zero
	// means 50; negative: no limit.
	ClientRate float64
	// ClientBurst is how many of them may come at once. Zero means 100.
	ClientBurst int
	// SubscribeInFlight bounds the subscribes that wait at once for their room
	// stream's owner to know this node (in a cluster; a node alone answers on the
	// loop). Over it: 503. Zero means 1024.
	SubscribeInFlight int

	// NodeName is sent to back-ends as the node that holds the connection. Required.
	NodeName string
	// Metrics receives the metrics. Nil: a new private set.
	Metrics *metrics.Set
	// Logger receives warnings (never per request). Nil: slog.Default().
	Logger *slog.Logger
}

// Defaults returns the values zero fields of a Config stand for.
func Defaults() Config {
	return Config{ClientRate: 50, ClientBurst: 100, SubscribeInFlight: 1024}
}

const maxNameLen = 64

// ValidName reports whether name can name a business.
func ValidName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ParseBusiness reads one business spec, as --business takes it:
//
//	chat=http://127.0.0.1:9000/chat,timeout=2s,inflight=512,pool=64,secret=S,
//	subscribe=http://127.0.0.1:9000/subscribe,rate=20,burst=40,rooms=16,max-reply=65536
//
// The name and URL come first; the rest are optional key=value settings in any
// order. A URL holding a comma must percent-encode it (%2C). The error names the
// part that is wrong.
func ParseBusiness(spec string) (Business, error) {
	var b Business
	parts := strings.Split(strings.TrimSpace(spec), ",")
	name, u, ok := strings.Cut(parts[0], "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return b, fmt.Errorf("business %q: want NAME=URL[,key=value...] (chat=http://127.0.0.1:9000/chat,timeout=2s)", spec)
	}
	b.Name, b.URL = name, strings.TrimSpace(u)
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || k == "" {
			return b, fmt.Errorf("business %q: %q is not key=value", name, p)
		}
		if seen[k] {
			return b, fmt.Errorf("business %q: %s given twice", name, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "timeout":
			b.Timeout, err = positiveDuration(v)
		case "inflight":
			b.InFlight, err = positiveInt(v)
		case "pool":
			b.Pool, err = positiveInt(v)
		case "secret":
			if v == "" {
				err = errors.New("empty")
			}
			b.Secret = v
		case "subscribe":
			b.SubscribeURL = v
			err = checkURL(v)
		case "rate":
			b.Rate, err = strconv.ParseFloat(v, 64)
			if err == nil && !(b.Rate > 0 && b.Rate < 1e9) {
				err = errors.New("must be a positive number of requests a second")
			}
		case "burst":
			b.Burst, err = positiveInt(v)
		case "rooms":
			b.MaxRooms, err = positiveInt(v)
		case "max-reply":
			b.MaxReply, err = positiveInt(v)
		default:
			return b, fmt.Errorf("business %q: unknown setting %q (timeout, inflight, pool, secret, subscribe, rate, burst, rooms, max-reply)", name, k)
		}
		if err != nil {
			shown := v
			if k == "secret" {
				shown = "****"
			}
			return b, fmt.Errorf("business %q: %s=%q: %v", name, k, shown, err)
		}
	}
	if err := b.check(); err != nil {
		return b, err
	}
	return b, nil
}

// String is the spec ParseBusiness reads back, with the secret masked.
func (b Business) String() string {
	s := b.Name + "=" + b.URL
	add := func(k, v string) { s += "," + k + "=" + v }
	if b.Timeout > 0 {
		add("timeout", b.Timeout.String())
	}
	if b.InFlight > 0 {
		add("inflight", strconv.Itoa(b.InFlight))
	}
	if b.Pool > 0 {
		add("pool", strconv.Itoa(b.Pool))
	}
	if b.Secret != "" {
		add("secret", "****")
	}
	if b.SubscribeURL != "" {
		add("subscribe", b.SubscribeURL)
	}
	if b.Rate > 0 {
		add("rate", strconv.FormatFloat(b.Rate, 'g', -1, 64))
	}
	if b.Burst > 0 {
		add("burst", strconv.Itoa(b.Burst))
	}
	if b.MaxRooms > 0 {
		add("rooms", strconv.Itoa(b.MaxRooms))
	}
	if b.MaxReply > 0 {
		add("max-reply", strconv.Itoa(b.MaxReply))
	}
	return s
}

// check validates b as given (zero fields are defaults, negative ones are errors).
func (b *Business) check() error {
	if !ValidName(b.Name) {
		return fmt.Errorf("business name %q: want 1 to %d of A-Z, a-z, 0-9, '_' and '-'", b.Name, maxNameLen)
	}
	if b.URL == "" {
		return fmt.Errorf("business %q: URL is required (%s=http://host:port/path)", b.Name, b.Name)
	}
	if err := checkURL(b.URL); err != nil {
		return fmt.Errorf("business %q: URL %q: %v", b.Name, b.URL, err)
	}
	if b.SubscribeURL != "" {
		if err := checkURL(b.SubscribeURL); err != nil {
			return fmt.Errorf("business %q: subscribe %q: %v", b.Name, b.SubscribeURL, err)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"timeout", int64(b.Timeout)}, {"inflight", int64(b.InFlight)}, {"pool", int64(b.Pool)},
		{"burst", int64(b.Burst)}, {"rooms", int64(b.MaxRooms)}, {"max-reply", int64(b.MaxReply)}} {
		if f.v < 0 {
			return fmt.Errorf("business %q: %s must not be negative", b.Name, f.name)
		}
	}
	if b.Rate < 0 {
		return fmt.Errorf("business %q: rate must not be negative", b.Name)
	}
	return nil
}

// withDefaults fills b's zero fields.
func (b Business) withDefaults() Business {
	d := BusinessDefaults()
	if b.Timeout == 0 {
		b.Timeout = d.Timeout
	}
	if b.InFlight == 0 {
		b.InFlight = d.InFlight
	}
	if b.Pool == 0 {
		b.Pool = d.Pool
	}
	if b.MaxRooms == 0 {
		b.MaxRooms = d.MaxRooms
	}
	if b.MaxReply == 0 {
		b.MaxReply = d.MaxReply
	}
	if b.Burst == 0 {
		b.Burst = max(1, int(2*b.Rate))
	}
	return b
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an http:// or https:// URL")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errors.New("not a whole number")
	}
	if n <= 0 {
		return 0, errors.New("must be positive")
	}
	return n, nil
}
