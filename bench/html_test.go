package bench

import (
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func renderHTML(t *testing.T, rep *Report) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.html")
	if err := writeHTML(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cardsOf is the cards block of a report, tags stripped, one card a line.
func cardsOf(t *testing.T, page string) []string {
	t.Helper()
	start := strings.Index(page, `<div class="cards">`)
	end := strings.Index(page, `<p class="legend">`)
	if start < 0 || end < start {
		t.Fatalf("no cards block in:\n%s", page)
	}
	var out []string
	for _, c := range strings.Split(page[start:end], `<div class="card`)[1:] {
		text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(`<div class="card`+c, " ")
		out = append(out, html.UnescapeString(strings.Join(strings.Fields(text), " ")))
	}
	return out
}

func cardWith(t *testing.T, cards []string, label string) string {
	t.Helper()
	for _, c := range cards {
		if strings.Contains(c, label) {
			return c
		}
	}
	t.Fatalf("no card %q in:\n%s", label, strings.Join(cards, "\n"))
	return ""
}

func wantIn(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

func baseReport(scenario string, conns int64) *Report {
	return &Report{
		Scenario:  scenario,
		StartedAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
		ElapsedS:  3,
		Options: Options{Scenario: scenario, Targets: []string{"127.0.0.1:8080"}, APIs: []string{"127.0.0.1:8081"},
			Conns: int(conns), ConnsPerUser: 1, Rate: 0, Protocol: "plain", History: true,
			HandshakeTimeout: 10 * time.Second, PingInterval: 30 * time.Second, RoundTimeout: 30 * time.Second},
		Workers: 2,
		Connect: ConnectResult{Requested: conns, Attempted: conns, Opened: conns, OpenAtEnd: conns, DurationS: 0.1, RatePerS: 4100,
			Handshake: LatencySummary{Count: uint64(conns), P99Ms: 3.2}},
		Server: ServerResult{Available: true, AfterOpen: ServerSample{Nodes: 1}},
	}
}

// TestHTMLCardsNoiseAndPrecision: a negative RSS figure is shown as noise (never as
// "-374 B"), CPU within the accounting tick as "under", targets from another kind of
// run as not comparable, and the options as a table of flags with durations as
// durations and zeros worded.
func TestHTMLCardsNoiseAndPrecision(t *testing.T) {
	rep := baseReport("broadcast", 300)
	rep.Server.RSSPerConnBytes = -374
	rep.Server.HeapPerConnBytes = 512
	rep.Server.CPUPerConnUs = 20 // 6 ms over 300: within the 10 ms tick
	rep.Options.Rounds = 3
	rep.Options.Duration = 0
	rep.Options.BatchWait = 0
	rep.Broadcast = &BroadcastResult{Latency: LatencySummary{MaxMs: 41}}
	for i := 1; i <= 3; i++ {
		rep.Broadcast.Rounds = append(rep.Broadcast.Rounds, BroadcastRound{Round: i, Expected: 300, Received: 300, LastMs: 40,
			ServerCPUPerRecipientUs: 33.3}) // 10 ms over 300: within the tick
	}
	page := renderHTML(t, rep)
	cards := cardsOf(t, page)

	rss := cardWith(t, cards, "server RSS per connection")
	wantIn(t, "RSS card", rss, "noise", "other memory moved more than the connections'", "not comparable: the figure is noise", "target ≤ 1,536 B/conn")
	if strings.Contains(page, "-374") {
		t.Errorf("the negative RSS figure is shown as a number:\n%s", rss)
	}
	if !strings.Contains(page, `class="card  noise"`) && !strings.Contains(page, `noise"><div class="big">noise`) {
		t.Errorf("the noise card is not greyed")
	}

	cpu := cardWith(t, cards, "server CPU per connection opened")
	wantIn(t, "CPU card", cpu, "under 67 µs", "within the 10 ms CPU accounting tick")
	if strings.Contains(cpu, "20.0") || strings.Contains(cpu, "20 µs") {
		t.Errorf("CPU card shows digits the tick does not allow: %s", cpu)
	}

	rate := cardWith(t, cards, "connect rate")
	wantIn(t, "rate card", rate, "4,100/s", "– target ≥ 20,000/s", "not comparable: set for 19,000 connections, this run opened 300")

	bcpu := cardWith(t, cards, "server CPU per recipient (median round)")
	wantIn(t, "broadcast CPU card", bcpu, "under 67 µs", "target ≤ 3 µs — not comparable: set for 19,000 recipients, this run had 300")
	wantIn(t, "reached card", cardWith(t, cards, "broadcast recipients reached"), "900 / 900", "✓ every recipient in 3 rounds")
	wantIn(t, "opened card", cardWith(t, cards, "connections opened"), "300", "✓ all 300 requested")

	opts := page[strings.Index(page, "<h2>Options</h2>"):]
	for _, bad := range []string{"duration_ns", "_ns", "{", "batch_wait"} {
		if strings.Contains(opts, bad) {
			t.Errorf("options still raw (%q):\n%s", bad, opts)
		}
	}
	wantIn(t, "options", opts,
		"<th>--rate</th><td>as fast as possible (0)</td>",
		"<th>--duration</th><td>none: no hold after the rounds (0) after the rounds</td>",
		"<th>--batch-wait</th><td>off (0)</td>",
		"<th>--handshake-timeout</th><td>10s</td>",
		"<th>--rounds</th><td>3</td>",
		"<th>--size</th><td>smallest: the timestamp (~30 B)</td>",
		"<th>--workers</th><td>auto (2 used)</td>")
	if strings.Contains(opts, "--push-rate") || strings.Contains(opts, "--callers") {
		t.Errorf("options of other scenarios shown for broadcast:\n%s", opts)
	}
}

// TestHTMLCardsTargets: runs of the kind a target was set for are marked met or
// missed against it.
func TestHTMLCardsTargets(t *testing.T) {
	for _, tc := range []struct {
		rss, rate float64
		rssMark   string
		rateMark  string
	}{
		{1231, 20339, "✓ target ≤ 1,536 B/conn (1.5 KB) at 19,000 connections — met", "✓ target ≥ 20,000/s with token checks — met"},
		{1700, 14800, "✗ target ≤ 1,536 B/conn (1.5 KB) at 19,000 connections — missed", "✗ target ≥ 20,000/s with token checks — missed"},
	} {
		rep := baseReport("connect", 19000)
		rep.Options.Duration = 20 * time.Second
		rep.Server.RSSPerConnBytes = tc.rss
		rep.Connect.RatePerS = tc.rate
		rep.Server.CPUPerConnUs = 45 // 0.855 s over 19,000: ±1.05 µs
		cards := cardsOf(t, renderHTML(t, rep))
		wantIn(t, "RSS card", cardWith(t, cards, "server RSS per connection"), perConn(tc.rss), tc.rssMark)
		wantIn(t, "rate card", cardWith(t, cards, "connect rate"), tc.rateMark)
		wantIn(t, "CPU card", cardWith(t, cards, "server CPU per connection"), "45 ± 1 µs")
	}

	// The iQIYI closed loop against its target, and against the floor of the same run.
	rep := baseReport("push", 19000)
	rep.Options.Users, rep.Options.ConnsPerUser, rep.Options.Callers = 1900, 10, 600
	rep.Options.Duration = 30 * time.Second
	rep.Push = &PushResult{Mode: "closed", PushesPerS: 10546, Pushes: 316380, ServerCPUS: 38.9, ServerCPUPerPushUs: 123,
		Latency: LatencySummary{P99Ms: 45}, Received: 3163800, ExpectedDeliveries: 3163800}
	rep.Floor = baseReport("push", 19000)
	rep.Floor.Push = &PushResult{Mode: "closed", PushesPerS: 14712, Pushes: 441360, ServerCPUS: 26, ServerCPUPerPushUs: 58.7,
		Latency: LatencySummary{P99Ms: 15}}
	cards := cardsOf(t, renderHTML(t, rep))
	wantIn(t, "pushes/s card", cardWith(t, cards, "pushes/s"), "10,546", "✓ target ≥ 10,000/s — met",
		"✗ floor 14,712/s · gateway ×0.72 (target ≥ ×0.95) — missed")
	wantIn(t, "p99 card", cardWith(t, cards, "push API call → client p99"), "45.0 ms",
		"– target ≤ 20 ms — not comparable: set for an open loop at 5,000 pushes/s, this run is a closed loop",
		"✗ floor 15.0 ms · gateway ×3.00 (target ≤ ×2.00) — missed")
	wantIn(t, "CPU card", cardWith(t, cards, "server CPU per push"), "123.00 ± 0.06 µs", "floor 58.70 ± 0.05 µs", "(target ≤ ×1.15) — missed")
	wantIn(t, "missing card", cardWith(t, cards, "missing deliveries"), "✓ every delivery arrived")

	// An open loop at 5,000/s is held to the p99 target; within 2× the floor is met.
	rep.Options.PushRate = 5000
	rep.Push.Mode, rep.Push.PushRate, rep.Push.PushesPerS, rep.Push.Latency.P99Ms, rep.Push.Missing = "open", 5000, 4700, 12.5, 3
	rep.Floor.Push.Mode, rep.Floor.Push.PushRate, rep.Floor.Push.Latency.P99Ms = "open", 5000, 6.5
	cards = cardsOf(t, renderHTML(t, rep))
	wantIn(t, "p99 card", cardWith(t, cards, "push API call → client p99"), "✓ target ≤ 20 ms — met",
		"✓ floor 6.5 ms · gateway ×1.92 (target ≤ ×2.00) — met")
	wantIn(t, "pushes/s card", cardWith(t, cards, "pushes/s"), "✗ open loop: fell behind the schedule of 5,000/s (94% of it)", "(no target)")
	wantIn(t, "missing card", cardWith(t, cards, "missing deliveries"), "✗ of 3,163,800 expected")
}
