package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The HTML report's headline cards and its options table. A card shows a figure with
// the precision the text report gives it (precision.go: CPU from 10 ms ticks with its
// ± uncertainty, memory below zero as noise), then what the figure is measured
// against: the issues' target where one is known and the run is the kind the target
// was set for, and the floor's figure with the ratio when a floor ran in the same run.
// Each comparison carries a mark: met, missed, or not comparable (and why).

// The issues' targets, as docs/performance.md "Targets and results" lists them, each
// with the run it was set for: a figure from another kind of run is shown next to the
// target but not marked met or missed.
const (
	targetRSSPerConn   = 1536.0 // B: "idle memory: RSS growth ≤ 1.5 KB per connection at 19,000"
	targetConnectRate  = 20000.0
	targetBroadcastCPU = 3.0 // µs of server CPU per recipient
	targetClosedPushes = 10000.0
	targetOpenP99Ms    = 20.0 // API call → client, open loop at 5,000 pushes/s
	targetConns        = 19000

	// Against the floor (issue 15, "A steady tail" in docs/performance.md).
	floorP99Ratio          = 2.0
	floorCPUPerPushRatio   = 1.15
	floorClosedPushesRatio = 0.95

	// An open loop keeps its schedule when it pushes at least this share of the rate
	// asked (the first and last second of a run cost a little).
	openLoopKept = 0.95
)

// Mark classes: the CSS class and the symbol a comparison is shown with.
const (
	markGood = "good" // ✓ met
	markBad  = "bad"  // ✗ missed
	markNA   = "na"   // – not comparable, or within the measurement's uncertainty
	markInfo = "info" // no target: the figure for reference
)

// cmp is one comparison under a card's figure.
type cmp struct {
	Class, Text string
}

// Symbol is the mark shown before the comparison.
func (c cmp) Symbol() string {
	switch c.Class {
	case markGood:
		return "✓"
	case markBad:
		return "✗"
	case markNA:
		return "–"
	}
	return "·"
}

// card is one headline figure.
type card struct {
	Label string
	Value string // the figure as the text report words it
	Note  string // what the figure's precision allows, when it needs saying
	Noise bool   // the figure is noise or unmeasurable: shown greyed
	Cmps  []cmp
}

// class is the card's overall mark: missed if any comparison missed, met if any met
// and none missed, else neutral.
func (c card) Class() string {
	cls := ""
	for _, x := range c.Cmps {
		switch x.Class {
		case markBad:
			return markBad
		case markGood:
			cls = markGood
		}
	}
	return cls
}

// splitNote cuts a precision.go wording into the figure and its parenthesised note:
// "under 0.67 µs (within the 10 ms CPU accounting tick: ...)".
func splitNote(s string) (value, note string) {
	if v, n, ok := strings.Cut(s, " ("); ok && strings.HasSuffix(n, ")") {
		return v, strings.TrimSuffix(n, ")")
	}
	return s, ""
}

// memCard is a memory-per-connection figure: perConn's words, noise greyed.
func memCard(label string, b float64) card {
	s := perConn(b)
	if b < 0 {
		v, note, _ := strings.Cut(s, ": ")
		return card{Label: label, Value: v, Note: note, Noise: true}
	}
	return card{Label: label, Value: s}
}

// cpuFigure is CPU µs per item over n items on nodes nodes: the value, its
// uncertainty (cpuPer's: two samples, each a tick off per node) and cpuPerUs's words.
type cpuFigure struct {
	us, err float64
	text    string
	ok      bool // measurable: more than the uncertainty
}

func cpuFig(us float64, n int64, nodes int) cpuFigure {
	f := cpuFigure{us: us, text: cpuPerUs(us, n, nodes)}
	if n > 0 {
		f.err = 2 * cpuTick * float64(max(nodes, 1)) * 1e6 / float64(n)
		f.ok = us > f.err
	}
	return f
}

func cpuCard(label string, f cpuFigure) card {
	v, note := splitNote(f.text)
	return card{Label: label, Value: v, Note: note, Noise: !f.ok}
}

// atMost compares a figure that should stay at or under limit; err is its
// uncertainty (0 when exact). want words the target, applies says whether this run
// is the kind it was set for, and why not.
func atMost(v, err, limit float64, want, why string, applies bool) cmp {
	return against(v-err > limit, v+err <= limit, want, why, applies)
}

// atLeast compares a figure that should reach limit.
func atLeast(v, limit float64, want, why string, applies bool) cmp {
	return against(v < limit, v >= limit, want, why, applies)
}

func against(missed, met bool, want, why string, applies bool) cmp {
	switch {
	case !applies:
		return cmp{markNA, want + " — not comparable: " + why}
	case missed:
		return cmp{markBad, want + " — missed"}
	case met:
		return cmp{markGood, want + " — met"}
	}
	return cmp{markNA, want + " — within the measurement's uncertainty"}
}

// floorRatio words the floor's figure and gateway / floor. limit > 0 is a target for
// the ratio (atMostRatio: at most limit, else at least it); lo and hi bound the ratio
// when the figures have uncertainties (else both are the ratio).
func floorRatio(floorText string, ratio, lo, hi, limit float64, atMostRatio bool, why string) cmp {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return cmp{markNA, "floor " + floorText + " — no ratio (the floor's figure is zero)"}
	}
	text := fmt.Sprintf("floor %s · gateway ×%.2f", floorText, ratio)
	if limit <= 0 {
		return cmp{markInfo, text + " (no target)"}
	}
	op := "≥"
	if atMostRatio {
		op = "≤"
	}
	want := fmt.Sprintf("%s (target %s ×%.2f)", text, op, limit)
	if why != "" {
		return cmp{markNA, want + " — not comparable: " + why}
	}
	if atMostRatio {
		return against(lo > limit, hi <= limit, want, "", true)
	}
	return against(hi < limit, lo >= limit, want, "", true)
}

func exactRatio(a, b float64) (r, lo, hi float64) {
	r = a / b
	return r, r, r
}

// cpuRatio is gateway / floor of two CPU figures with the bounds their ticks allow.
func cpuRatio(g, f cpuFigure) (r, lo, hi float64) {
	r = g.us / f.us
	if f.us-f.err <= 0 {
		return r, 0, math.Inf(1)
	}
	return r, (g.us - g.err) / (f.us + f.err), (g.us + g.err) / (f.us - f.err)
}

func rate(v float64) string { return commas(int64(v)) + "/s" }

// headlineCards are the cards of rep, in the order the scenario's phases ran.
func headlineCards(rep *Report) []card {
	var cards []card
	f := rep.Floor
	c := rep.Connect
	nodes := rep.Server.AfterOpen.Nodes

	opened := card{Label: "connections opened", Value: commas(c.Opened)}
	switch {
	case c.Requested > 0 && c.Opened >= c.Requested && c.Failed == 0:
		opened.Cmps = []cmp{{markGood, "all " + commas(c.Requested) + " requested"}}
	case c.Requested > 0:
		opened.Cmps = []cmp{{markBad, fmt.Sprintf("of %s requested; %s failed", commas(c.Requested), commas(c.Failed))}}
	}
	cards = append(cards, opened)

	connRate := card{Label: "connect rate", Value: rate(c.RatePerS)}
	why := ""
	switch o := rep.Options; {
	case c.Opened < targetConns:
		why = fmt.Sprintf("set for %s connections, this run opened %s", commas(targetConns), commas(c.Opened))
	case o.Rate > 0 && o.Rate < targetConnectRate:
		why = fmt.Sprintf("this run asked for --rate %s", commas(int64(o.Rate)))
	}
	connRate.Cmps = append(connRate.Cmps, atLeast(c.RatePerS, targetConnectRate,
		"target ≥ "+rate(targetConnectRate)+" with token checks", why, why == ""))
	if f != nil {
		r, lo, hi := exactRatio(c.RatePerS, f.Connect.RatePerS)
		connRate.Cmps = append(connRate.Cmps, floorRatio(rate(f.Connect.RatePerS), r, lo, hi, 0, false, ""))
	}
	cards = append(cards, connRate)

	hs := card{Label: "handshake p99", Value: fmt.Sprintf("%.1f ms", c.Handshake.P99Ms)}
	if f != nil {
		r, lo, hi := exactRatio(c.Handshake.P99Ms, f.Connect.Handshake.P99Ms)
		hs.Cmps = append(hs.Cmps, floorRatio(fmt.Sprintf("%.1f ms", f.Connect.Handshake.P99Ms), r, lo, hi, 0, true, ""))
	}
	cards = append(cards, hs)

	if s := rep.Server; s.Available {
		mem := memCard("server RSS per connection", s.RSSPerConnBytes)
		want := fmt.Sprintf("target ≤ %s B/conn (1.5 KB) at %s connections", commas(int64(targetRSSPerConn)), commas(targetConns))
		switch {
		case mem.Noise:
			mem.Cmps = append(mem.Cmps, cmp{markNA, want + " — not comparable: the figure is noise"})
		default:
			why := ""
			if c.Opened < targetConns {
				why = fmt.Sprintf("this run opened %s (the node's fixed memory weighs more per connection)", commas(c.Opened))
			}
			mem.Cmps = append(mem.Cmps, atMost(s.RSSPerConnBytes, 0, targetRSSPerConn, want, why, why == ""))
		}
		if f != nil && f.Server.Available {
			fs := f.Server.RSSPerConnBytes
			if fs > 0 && !mem.Noise {
				r, lo, hi := exactRatio(s.RSSPerConnBytes, fs)
				mem.Cmps = append(mem.Cmps, floorRatio(perConn(fs), r, lo, hi, 0, true, ""))
			} else {
				mem.Cmps = append(mem.Cmps, cmp{markNA, "floor " + perConn(fs) + " — no ratio"})
			}
		}
		cards = append(cards, mem)

		g := cpuFig(s.CPUPerConnUs, c.OpenAtEnd, nodes)
		cpu := cpuCard("server CPU per connection opened", g)
		if f != nil && f.Server.Available {
			ff := cpuFig(f.Server.CPUPerConnUs, f.Connect.OpenAtEnd, f.Server.AfterOpen.Nodes)
			if g.ok && ff.ok {
				r, lo, hi := cpuRatio(g, ff)
				cpu.Cmps = append(cpu.Cmps, floorRatio(ff.text, r, lo, hi, 0, true, ""))
			} else {
				cpu.Cmps = append(cpu.Cmps, cmp{markNA, "floor " + ff.text + " — no ratio within the CPU tick"})
			}
		}
		cards = append(cards, cpu)
	}

	if b := rep.Broadcast; b != nil && len(b.Rounds) > 0 {
		cards = append(cards, broadcastCards(rep, b, nodes)...)
	}
	if p := rep.Push; p != nil {
		cards = append(cards, pushCards(rep, p, nodes)...)
	}
	if u := rep.Upstream; u != nil {
		rt := card{Label: "upstream requests/s", Value: commas(int64(u.RequestsPerS))}
		lat := card{Label: "upstream round trip p99", Value: fmt.Sprintf("%.2f ms", u.Latency.P99Ms)}
		cpu := card{Label: "node CPU per request", Value: fmt.Sprintf("%.1f µs", u.ServerCPUPerRequestUs)}
		if fl := u.Floor; fl != nil {
			rt.Cmps = append(rt.Cmps, floorRatio(commas(int64(fl.RequestsPerS))+"/s", fl.Ratios.RequestsPerS, fl.Ratios.RequestsPerS, fl.Ratios.RequestsPerS, 0, false, ""))
			lat.Cmps = append(lat.Cmps, floorRatio(fmt.Sprintf("%.2f ms", fl.Latency.P99Ms), fl.Ratios.P99, fl.Ratios.P99, fl.Ratios.P99, 0, true, ""))
			cpu.Cmps = append(cpu.Cmps, floorRatio(fmt.Sprintf("%.1f µs (%s)", fl.ClientCPUPerRequestUs, fl.CPUMeasured), fl.Ratios.CPUPerRequest, fl.Ratios.CPUPerRequest, fl.Ratios.CPUPerRequest, 0, true, ""))
		} else {
			rt.Cmps = append(rt.Cmps, cmp{markInfo, "no floor in this run (--floor off)"})
		}
		cards = append(cards, rt, lat, cpu)
	}
	for _, x := range pusherCards(rep) {
		cards = append(cards, card{Label: x.K, Value: x.V})
	}
	if x := rep.Reconnect; x != nil {
		rec := card{Label: "recovered", Value: commas(x.Recovered) + " / " + commas(int64(x.Clients))}
		if x.Recovered >= int64(x.Clients) {
			rec.Cmps = []cmp{{markGood, "every client got every push it missed"}}
		} else {
			rec.Cmps = []cmp{{markBad, commas(int64(x.Clients)-x.Recovered) + " did not recover"}}
		}
		cards = append(cards, rec,
			card{Label: "recovery p99", Value: fmt.Sprintf("%.0f ms", x.Recovery.P99Ms)},
			card{Label: "all recovered", Value: fmt.Sprintf("%.0f ms", x.AllRecoveredS*1e3)})
	}
	return cards
}

func broadcastCards(rep *Report, b *BroadcastResult, nodes int) []card {
	f := rep.Floor
	var recv, exp int64
	for _, r := range b.Rounds {
		recv, exp = recv+r.Received, exp+r.Expected
	}
	reached := card{Label: "broadcast recipients reached", Value: commas(recv) + " / " + commas(exp)}
	if recv >= exp {
		reached.Cmps = []cmp{{markGood, fmt.Sprintf("every recipient in %s", plural(len(b.Rounds), "round", "rounds"))}}
	} else {
		reached.Cmps = []cmp{{markBad, commas(exp-recv) + " missing"}}
	}
	last := card{Label: "broadcast last recipient (max)", Value: fmt.Sprintf("%.0f ms", b.Latency.MaxMs)}
	if f != nil && f.Broadcast != nil {
		r, lo, hi := exactRatio(b.Latency.MaxMs, f.Broadcast.Latency.MaxMs)
		last.Cmps = append(last.Cmps, floorRatio(fmt.Sprintf("%.0f ms", f.Broadcast.Latency.MaxMs), r, lo, hi, 0, true, ""))
	}
	// The median round's CPU per recipient: one round's two samples, as the text
	// report's rows and the targets table give it.
	med := medianRound(b.Rounds)
	g := cpuFig(med.ServerCPUPerRecipientUs, med.Received, nodes)
	cpu := cpuCard("server CPU per recipient (median round)", g)
	why := ""
	if med.Expected < targetConns {
		why = fmt.Sprintf("set for %s recipients, this run had %s", commas(targetConns), commas(med.Expected))
	}
	want := fmt.Sprintf("target ≤ %.0f µs", targetBroadcastCPU)
	if !g.ok {
		cpu.Cmps = append(cpu.Cmps, atMost(g.err, 0, targetBroadcastCPU, want, why, why == ""))
	} else {
		cpu.Cmps = append(cpu.Cmps, atMost(g.us, g.err, targetBroadcastCPU, want, why, why == ""))
	}
	if f != nil && f.Broadcast != nil && len(f.Broadcast.Rounds) > 0 {
		fm := medianRound(f.Broadcast.Rounds)
		ff := cpuFig(fm.ServerCPUPerRecipientUs, fm.Received, f.Server.AfterOpen.Nodes)
		if g.ok && ff.ok {
			r, lo, hi := cpuRatio(g, ff)
			cpu.Cmps = append(cpu.Cmps, floorRatio(ff.text, r, lo, hi, 0, true, ""))
		} else {
			cpu.Cmps = append(cpu.Cmps, cmp{markNA, "floor " + ff.text + " — no ratio within the CPU tick"})
		}
	}
	return []card{reached, last, cpu}
}

// medianRound is the round with the median CPU per recipient.
func medianRound(rounds []BroadcastRound) BroadcastRound {
	rs := slices.Clone(rounds)
	slices.SortFunc(rs, func(a, b BroadcastRound) int {
		switch {
		case a.ServerCPUPerRecipientUs < b.ServerCPUPerRecipientUs:
			return -1
		case a.ServerCPUPerRecipientUs > b.ServerCPUPerRecipientUs:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

func pushCards(rep *Report, p *PushResult, nodes int) []card {
	f := rep.Floor
	var fp *PushResult
	if f != nil {
		fp = f.Push
	}
	o := rep.Options
	closed := p.Mode != "open"

	ps := card{Label: "pushes/s", Value: commas(int64(p.PushesPerS))}
	if closed {
		why := ""
		if o.Users < 1900 || o.ConnsPerUser != 10 || o.Callers != 600 {
			why = fmt.Sprintf("set for the iQIYI mix (1,900 users × 10 connections, 600 callers, closed loop), this run %s × %d, %d callers",
				commas(int64(o.Users)), o.ConnsPerUser, o.Callers)
		}
		ps.Cmps = append(ps.Cmps, atLeast(p.PushesPerS, targetClosedPushes, "target ≥ "+rate(targetClosedPushes), why, why == ""))
	} else {
		// An open loop that falls behind its schedule says the node (or the box) could
		// not take the rate asked: its latencies are then a backlog's.
		kept := p.PushesPerS / p.PushRate
		c := cmp{markGood, fmt.Sprintf("open loop: kept the schedule of %s", rate(p.PushRate))}
		if kept < openLoopKept {
			c = cmp{markBad, fmt.Sprintf("open loop: fell behind the schedule of %s (%.0f%% of it)", rate(p.PushRate), 100*kept)}
		}
		ps.Cmps = append(ps.Cmps, c)
	}
	if fp != nil {
		r, lo, hi := exactRatio(p.PushesPerS, fp.PushesPerS)
		limit := floorClosedPushesRatio
		if !closed {
			limit = 0 // an open loop's rate is its schedule's
		}
		ps.Cmps = append(ps.Cmps, floorRatio(rate(fp.PushesPerS), r, lo, hi, limit, false, ""))
	}

	lat := card{Label: "push API call → client p99", Value: fmt.Sprintf("%.1f ms", p.Latency.P99Ms)}
	why := ""
	if closed || p.PushRate < 5000 {
		why = "set for an open loop at 5,000 pushes/s"
		if !closed {
			why += fmt.Sprintf(", this run %s", rate(p.PushRate))
		} else {
			why += ", this run is a closed loop"
		}
	}
	lat.Cmps = append(lat.Cmps, atMost(p.Latency.P99Ms, 0, targetOpenP99Ms, fmt.Sprintf("target ≤ %.0f ms", targetOpenP99Ms), why, why == ""))
	if fp != nil {
		r, lo, hi := exactRatio(p.Latency.P99Ms, fp.Latency.P99Ms)
		lat.Cmps = append(lat.Cmps, floorRatio(fmt.Sprintf("%.1f ms", fp.Latency.P99Ms), r, lo, hi, floorP99Ratio, true, ""))
	}

	g := cpuFig(p.ServerCPUPerPushUs, p.Pushes, nodes)
	cpu := cpuCard("server CPU per push", g)
	if fp != nil {
		ff := cpuFig(fp.ServerCPUPerPushUs, fp.Pushes, f.Server.AfterOpen.Nodes)
		if g.ok && ff.ok {
			r, lo, hi := cpuRatio(g, ff)
			cpu.Cmps = append(cpu.Cmps, floorRatio(ff.text, r, lo, hi, floorCPUPerPushRatio, true, ""))
		} else {
			cpu.Cmps = append(cpu.Cmps, cmp{markNA, "floor " + ff.text + " — no ratio within the CPU tick"})
		}
	}

	miss := card{Label: "missing deliveries", Value: commas(p.Missing)}
	if p.Missing == 0 {
		miss.Cmps = []cmp{{markGood, "every delivery arrived (" + commas(p.Received) + ")"}}
	} else {
		miss.Cmps = []cmp{{markBad, fmt.Sprintf("of %s expected", commas(p.ExpectedDeliveries))}}
	}
	cards := []card{ps, lat, cpu, miss}
	if p.Ack {
		cards = append(cards, card{Label: "acks sent", Value: commas(p.AcksSent)})
	}
	if w := p.WaitRoundTrip; w != nil {
		inc := card{Label: "incomplete answers", Value: commas(p.Incomplete)}
		if p.Incomplete == 0 {
			inc.Cmps = []cmp{{markGood, "every wait completed"}}
		} else {
			inc.Cmps = []cmp{{markBad, "the wait ended before every target " + map[bool]string{true: "acked", false: "was written to"}[p.Ack]}}
		}
		cards = append(cards, card{Label: p.waitLabel() + " p99", Value: fmt.Sprintf("%.1f ms", w.P99Ms)}, inc)
	}
	return cards
}

// optionRows are the run's options as the flags that set them, with their meaning
// where a value alone would mislead (0 for --rate is "as fast as possible"); options
// the scenario does not read are left out.
func optionRows(rep *Report) []kv {
	o := rep.Options
	sc := o.Scenario
	in := func(names ...string) bool { return slices.Contains(names, sc) }
	dur := func(d time.Duration, zero string) string {
		if d == 0 {
			return zero
		}
		return d.String()
	}
	var rows []kv
	add := func(k, v string) { rows = append(rows, kv{k, v}) }
	add("scenario", sc)
	add("--target", strings.Join(o.Targets, " "))
	if len(o.APIs) > 0 {
		add("--api", strings.Join(o.APIs, " "))
	}
	if len(o.FloorTargets) > 0 {
		add("--floor-target", strings.Join(o.FloorTargets, " "))
		add("--floor-api", strings.Join(o.FloorAPIs, " "))
	}
	add("--conns", commas(int64(o.Conns)))
	if in("push", "reconnect") {
		add("--users", commas(int64(o.Users)))
		add("--conns-per-user", fmt.Sprint(o.ConnsPerUser))
		add("--callers", fmt.Sprint(o.Callers))
	}
	if in("broadcast") {
		add("--rounds", fmt.Sprint(o.Rounds))
	}
	if o.Rate == 0 {
		add("--rate", "as fast as possible (0)")
	} else {
		add("--rate", commas(int64(o.Rate))+" connections/s")
	}
	if in("push", "pusher") {
		if o.PushRate == 0 {
			add("--push-rate", "closed loop (0)")
		} else {
			add("--push-rate", rate(o.PushRate)+" (open loop)")
		}
	}
	switch sc {
	case "broadcast":
		add("--duration", dur(o.Duration, "none: no hold after the rounds (0)")+" after the rounds")
	case "reconnect":
	default:
		add("--duration", dur(o.Duration, "0"))
	}
	if in("broadcast", "push", "upstream", "reconnect") {
		if o.Size == 0 {
			add("--size", "smallest: the timestamp (~30 B)")
		} else {
			add("--size", commas(int64(o.Size))+" B")
		}
	}
	if o.Workers == 0 {
		add("--workers", fmt.Sprintf("auto (%d used)", rep.Workers))
	} else {
		add("--workers", fmt.Sprint(o.Workers))
	}
	add("--source-ips", sourceSummary(o.SourceIPs))
	add("--protocol", o.Protocol)
	if in("push", "broadcast") {
		add("--history", map[bool]string{true: "stored in the streams' history", false: "not stored (\"history\":false)"}[o.History])
	}
	if o.Room != "" {
		add("--room", o.Room)
	}
	if o.Ack {
		add("--ack", "pushes carry \"ack\":true; clients acknowledge")
	}
	if o.Wait != 0 {
		add("--wait", o.Wait.String())
	}
	if in("reconnect") {
		add("--messages", fmt.Sprint(o.Messages))
		if len(o.ReconnectTargets) > 0 {
			add("--reconnect-target", strings.Join(o.ReconnectTargets, " "))
		}
		if o.KillPID != 0 {
			add("--kill-pid", fmt.Sprint(o.KillPID))
		}
	}
	if in("upstream") {
		add("--business", o.Business)
		add("--backend-addr", map[bool]string{true: "external back-end", false: o.BackendAddr}[o.BackendAddr == ""])
		add("--backend-delay", dur(o.BackendDelay, "none (0)"))
	}
	if in("upstream", "pusher") && o.Floor != "" {
		add("--floor", o.Floor)
	}
	if in("pusher") {
		add("pusher app", o.PusherAppID+" (key "+o.PusherKey+")")
		add("--channels", commas(int64(o.Channels)))
		add("--channel-kind", o.ChannelKind)
		if o.EventBytes == 0 {
			add("--event-bytes", "smallest: the stamp (~30 B)")
		} else {
			add("--event-bytes", commas(int64(o.EventBytes))+" B")
		}
	}
	add("--handshake-timeout", dur(o.HandshakeTimeout, "none (0)"))
	add("--ping-interval", dur(o.PingInterval, "off (0)"))
	if in("broadcast", "push", "reconnect", "upstream", "pusher") {
		add("--round-timeout", dur(o.RoundTimeout, "0"))
	}
	add("--batch-wait", dur(o.BatchWait, "off (0)"))
	if o.InProcess {
		add("--in-process", "workers are goroutines of bench (CPU figures cover the whole process)")
	}
	if o.JSONPath != "" {
		add("--json", o.JSONPath)
	}
	if o.HTMLPath != "" {
		add("--html", o.HTMLPath)
	}
	return rows
}
