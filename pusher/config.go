package pusher

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Parsing --pusher-app id:key:secret[,option...] into an App. The options:
//
//	client-events[=true|false]   let subscribers send client-* events (default off)
//	max-connections=N            cap the app's connections on a node (default 0: none)
//	client-event-rate=N          client events a second per connection (default 10)
//	activity-timeout=D           what connection_established announces (default 120s)
//	max-channels=N               channels one connection may subscribe to (default 100)
//	max-presence-members=N       members of one presence channel (default 100, Pusher's)
//	webhook=URL                  a URL that gets the app's webhooks (repeatable, up to
//	                             MaxAppWebhooks; it cannot hold ',': write %2C)
//	webhook-events=a|b|...       the webhook events sent (default: all;
//	                             subscription_count is refused: not sent)
//
// The defaults live in DefaultApp and nowhere else.

// Defaults and bounds of an App's settings.
const (
	DefaultClientEventRate = 10                // events/s per connection, Pusher's limit
	DefaultActivityTimeout = 120 * time.Second // Pusher's value; pusher-js pings after it
	MaxActivityTimeout     = time.Hour
	MaxClientEventRate     = 1_000_000
	// DefaultMaxChannels bounds one connection's channels, so what a client
	// subscribes to cannot grow a node's tables without limit.
	DefaultMaxChannels = 100
	MaxMaxChannels     = 10_000
	// DefaultMaxPresenceMembers is Pusher's limit of members of a presence channel:
	// every member's info goes to every subscriber, and to every node.
	DefaultMaxPresenceMembers = 100
	MaxMaxPresenceMembers     = 10_000
	// MaxAppWebhooks bounds the webhook= options of one app: each URL has its own
	// queue and goroutine.
	MaxAppWebhooks = 4
	// MaxWebhookURLBytes bounds one webhook URL.
	MaxWebhookURLBytes = 2048
)

// ErrAppSpec is wrapped by every error of ParseApp.
var ErrAppSpec = errors.New("pusher: bad --pusher-app")

// DefaultApp returns an App with every setting at its default and no
// credentials.
func DefaultApp() App {
	return App{
		MaxClientEventsPerSecond: DefaultClientEventRate,
		ActivityTimeout:          DefaultActivityTimeout,
		MaxChannels:              DefaultMaxChannels,
		MaxPresenceMembers:       DefaultMaxPresenceMembers,
	}
}

// ParseApp parses "id:key:secret[,option...]". The id and key hold no ':' or ','
// and the secret no ','; each is 1 to 256 printable ASCII bytes. Errors name the
// part that is wrong and never quote the secret.
func ParseApp(spec string) (App, error) {
	app := DefaultApp()
	creds, opts, hasOpts := strings.Cut(spec, ",")
	id, rest, ok := strings.Cut(creds, ":")
	key, secret, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return app, fmt.Errorf(`%w: want "id:key:secret[,option...]", got %d colon-separated parts`, ErrAppSpec, strings.Count(creds, ":")+1)
	}
	for _, p := range []struct{ name, v string }{{"id", id}, {"key", key}, {"secret", secret}} {
		if err := checkCredential(p.v); err != nil {
			return app, fmt.Errorf("%w: app %s: %v", ErrAppSpec, p.name, err)
		}
	}
	app.ID, app.Key, app.Secret = id, key, secret
	seen := map[string]bool{}
	afterWebhook := false
	for _, opt := range strings.Split(opts, ",") {
		if !hasOpts {
			break
		}
		name, val, hasVal := strings.Cut(opt, "=")
		if seen[name] && name != "webhook" {
			return app, fmt.Errorf("%w: app %s: option %q given twice", ErrAppSpec, id, name)
		}
		seen[name] = true
		if err := app.setOption(name, val, hasVal); err != nil {
			if afterWebhook {
				// Most likely the rest of a URL that held a comma.
				err = fmt.Errorf("%v; if it is part of the webhook URL before it: a URL cannot hold ',' here, write it %%2C", err)
			}
			return app, fmt.Errorf("%w: app %s: option %q: %v", ErrAppSpec, id, opt, err)
		}
		afterWebhook = name == "webhook"
	}
	if seen["webhook-events"] && app.Webhooks[0] == "" {
		return app, fmt.Errorf("%w: app %s: webhook-events without a webhook=URL", ErrAppSpec, id)
	}
	return app, nil
}

// addWebhook checks u (an absolute http or https URL) and adds it to the app's.
func (a *App) addWebhook(u string) error {
	if len(u) > MaxWebhookURLBytes {
		return fmt.Errorf("URL of %d bytes, at most %d", len(u), MaxWebhookURLBytes)
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return errors.New("want an absolute http:// or https:// URL")
	}
	for i, have := range a.Webhooks {
		switch have {
		case u:
			return errors.New("URL given twice")
		case "":
			a.Webhooks[i] = u
			return nil
		}
	}
	return fmt.Errorf("more than %d webhook URLs", MaxAppWebhooks)
}

// parseWebhookEvents parses "a|b|...", refusing an unknown or empty name.
func parseWebhookEvents(v string) (WebhookEventSet, error) {
	var set WebhookEventSet
	for _, name := range strings.Split(v, "|") {
		i := webhookEventIndex(name)
		if i < 0 {
			return 0, fmt.Errorf("unknown webhook event %q (known, '|'-separated: %s)", name, strings.Join(WebhookEventNames[:], ", "))
		}
		if name == WebhookSubscriptionCount {
			// The cluster state knows which nodes hold a channel, not every change
			// of its connection count: refused rather than accepted and never sent.
			return 0, errors.New("subscription_count webhooks are not sent by longlink (channel_occupied and channel_vacated are; GET /apps/{id}/channels/{name}?info=subscription_count gives the count)")
		}
		set |= 1 << i
	}
	return set, nil
}

func checkCredential(v string) error {
	if v == "" {
		return errors.New("empty")
	}
	if len(v) > 256 {
		return fmt.Errorf("%d bytes, at most 256", len(v))
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f {
			return fmt.Errorf("byte %d is not printable ASCII", i)
		}
	}
	return nil
}

func (a *App) setOption(name, val string, hasVal bool) error {
	switch name {
	case "client-events":
		if !hasVal {
			a.ClientEvents = true
			return nil
		}
		b, err := strconv.ParseBool(val)
		if err != nil {
			return errors.New("want true or false")
		}
		a.ClientEvents = b
	case "max-connections":
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return errors.New("want an integer >= 0 (0: no cap)")
		}
		a.MaxConnections = n
	case "client-event-rate":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > MaxClientEventRate {
			return fmt.Errorf("want an integer from 1 to %d (events a second)", MaxClientEventRate)
		}
		a.MaxClientEventsPerSecond = n
	case "activity-timeout":
		d, err := time.ParseDuration(val)
		if err != nil {
			return errors.New(`want a duration such as "120s"`)
		}
		if d < time.Second || d > MaxActivityTimeout || d%time.Second != 0 {
			return fmt.Errorf("want whole seconds from 1s to %s (clients get it in seconds)", MaxActivityTimeout)
		}
		a.ActivityTimeout = d
	case "max-channels":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > MaxMaxChannels {
			return fmt.Errorf("want an integer from 1 to %d (channels a connection may be subscribed to)", MaxMaxChannels)
		}
		a.MaxChannels = n
	case "max-presence-members":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > MaxMaxPresenceMembers {
			return fmt.Errorf("want an integer from 1 to %d (members of one presence channel)", MaxMaxPresenceMembers)
		}
		a.MaxPresenceMembers = n
	case "webhook":
		return a.addWebhook(val)
	case "webhook-events":
		set, err := parseWebhookEvents(val)
		if err != nil {
			return err
		}
		a.WebhookEvents = set
	case "":
		return errors.New("empty option")
	default:
		return errors.New("unknown option (known: client-events, max-connections, client-event-rate, activity-timeout, max-channels, max-presence-members, webhook, webhook-events)")
	}
	return nil
}

// ActivityTimeoutSeconds is the activity_timeout of connection_established.
func (a *App) ActivityTimeoutSeconds() int {
	if a.ActivityTimeout <= 0 {
		return int(DefaultActivityTimeout / time.Second)
	}
	return int(a.ActivityTimeout / time.Second)
}

// CheckApps refuses app sets where two apps share an id or a key: a key picks the
// app a client connects to and an id the app an API request is for, so each must
// name one app.
func CheckApps(apps []App) error {
	ids := make(map[string]bool, len(apps))
	keys := make(map[string]bool, len(apps))
	for _, a := range apps {
		if ids[a.ID] {
			return fmt.Errorf("%w: app id %q given twice", ErrAppSpec, a.ID)
		}
		if keys[a.Key] {
			return fmt.Errorf("%w: app key %q used by two apps", ErrAppSpec, a.Key)
		}
		ids[a.ID], keys[a.Key] = true, true
	}
	return nil
}
