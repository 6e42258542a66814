package pusher

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseApp(t *testing.T) {
	ok := func(spec string, want App) {
		t.Helper()
		got, err := ParseApp(spec)
		if err != nil {
			t.Fatalf("ParseApp(%q): %v", spec, err)
		}
		if got != want {
			t.Errorf("ParseApp(%q) = %+v, want %+v", spec, got, want)
		}
	}
	d := DefaultApp()
	app := func(f func(*App)) App {
		a := d
		a.ID, a.Key, a.Secret = "4242", "key1", "s3cr:et"
		f(&a)
		return a
	}
	ok("4242:key1:s3cr:et", app(func(*App) {}))
	ok("4242:key1:s3cr:et,client-events", app(func(a *App) { a.ClientEvents = true }))
	ok("4242:key1:s3cr:et,client-events=false", app(func(*App) {}))
	ok("4242:key1:s3cr:et,client-events,max-connections=500,client-event-rate=20,activity-timeout=30s",
		app(func(a *App) {
			a.ClientEvents, a.MaxConnections, a.MaxClientEventsPerSecond, a.ActivityTimeout = true, 500, 20, 30*time.Second
		}))
	ok("4242:key1:s3cr:et,activity-timeout=2m", app(func(a *App) { a.ActivityTimeout = 2 * time.Minute }))
	if d.MaxClientEventsPerSecond != 10 || d.ActivityTimeout != 120*time.Second || d.ClientEvents || d.MaxConnections != 0 {
		t.Errorf("defaults %+v", d)
	}

	bad := func(spec, part string) {
		t.Helper()
		_, err := ParseApp(spec)
		if !errors.Is(err, ErrAppSpec) || !strings.Contains(err.Error(), part) {
			t.Errorf("ParseApp(%q) = %v, want an error naming %q", spec, err, part)
		}
		if err != nil && strings.Contains(err.Error(), "hush") {
			t.Errorf("ParseApp(%q) error quotes the secret: %v", spec, err)
		}
	}
	bad("", "id:key:secret")
	bad("4242", "id:key:secret")
	bad("4242:key1", "id:key:secret")
	bad(":key1:hush", "app id")
	bad("4242::hush", "app key")
	bad("4242:key1:", "app secret")
	bad("4242:key1:hu sh", "app secret")
	bad("4242:k\x01:hush", "app key")
	bad("4242:key1:"+strings.Repeat("h", 257), "app secret")
	bad("4242:key1:hush,", "empty option")
	bad("4242:key1:hush,client-events=maybe", "client-events")
	bad("4242:key1:hush,max-connections=-1", "max-connections")
	bad("4242:key1:hush,max-connections=lots", "max-connections")
	bad("4242:key1:hush,client-event-rate=0", "client-event-rate")
	bad("4242:key1:hush,activity-timeout=0s", "activity-timeout")
	bad("4242:key1:hush,activity-timeout=1500ms", "whole seconds")
	bad("4242:key1:hush,activity-timeout=2h", "activity-timeout")
	bad("4242:key1:hush,activity-timeout=soon", "activity-timeout")
	bad("4242:key1:hush,client-events,client-events", "twice")
	bad("4242:key1:hush,webhooks=http://x", "unknown option")
}

func TestActivityTimeoutSeconds(t *testing.T) {
	if s := (&App{}).ActivityTimeoutSeconds(); s != 120 {
		t.Errorf("zero App: %d", s)
	}
	if s := (&App{ActivityTimeout: 30 * time.Second}).ActivityTimeoutSeconds(); s != 30 {
		t.Errorf("30s: %d", s)
	}
}

func TestCheckApps(t *testing.T) {
	a := App{ID: "1", Key: "k1"}
	b := App{ID: "2", Key: "k2"}
	if err := CheckApps([]App{a, b}); err != nil {
		t.Error(err)
	}
	if err := CheckApps([]App{a, {ID: "1", Key: "k3"}}); err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("same id: %v", err)
	}
	if err := CheckApps([]App{a, {ID: "3", Key: "k1"}}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("same key: %v", err)
	}
}
