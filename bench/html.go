package bench

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"os"
	"strings"
)

// The HTML report is one file with no scripts and no external resources:
// the charts are SVG generated here.

type series struct {
	name  string
	color string
	ys    []float64
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

const chartW, chartH, padL, padR, padT, padB = 760, 260, 64, 16, 28, 40

// lineChart draws series against xs as an SVG.
func lineChart(title, xlabel, ylabel string, xs []float64, ss []series) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="18" class="t">%s</text>`, padL, html.EscapeString(title))
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	xmax, ymax := 1.0, 0.0
	for _, x := range xs {
		xmax = math.Max(xmax, x)
	}
	for _, s := range ss {
		for _, y := range s.ys {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceMax(ymax)
	for i := 0; i <= 4; i++ {
		y := float64(padT) + ph - ph*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="g"/><text x="%d" y="%.1f" class="a" text-anchor="end">%s</text>`,
			padL, y, chartW-padR, y, padL-6, y+4, human(ymax*float64(i)/4))
		x := float64(padL) + pw*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="a" text-anchor="middle">%s</text>`, x, chartH-padB+16, human(xmax*float64(i)/4))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="a" text-anchor="middle">%s</text>`, float64(padL)+pw/2, chartH-6, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="14" y="%.1f" class="a" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`,
		float64(padT)+ph/2, float64(padT)+ph/2, html.EscapeString(ylabel))
	for k, s := range ss {
		var pts []string
		for i, y := range s.ys {
			if i >= len(xs) {
				break
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(padL)+pw*xs[i]/xmax, float64(padT)+ph-ph*y/ymax))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.color, strings.Join(pts, " "))
		lx := padL + 10 + k*170
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="a">%s</text>`,
			lx, padT+2, s.color, lx+14, padT+11, html.EscapeString(s.name))
	}
	if len(xs) == 0 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="a" text-anchor="middle">no samples</text>`, float64(padL)+pw/2, float64(padT)+ph/2)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// histChart draws latency bins grouped four to an octave on a log time axis.
func histChart(title string, bins []HistBin) string {
	type bar struct {
		lo, hi float64
		n      uint64
	}
	var bars []bar
	for _, bn := range bins {
		key := math.Floor(4 * math.Log2(math.Max(bn.LoUs, 1)))
		if len(bars) > 0 && math.Floor(4*math.Log2(math.Max(bars[len(bars)-1].lo, 1))) == key {
			bars[len(bars)-1].hi = bn.HiUs
			bars[len(bars)-1].n += bn.Count
			continue
		}
		bars = append(bars, bar{bn.LoUs, bn.HiUs, bn.Count})
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="18" class="t">%s</text>`, padL, html.EscapeString(title))
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="a">no observations</text></svg>`, chartW/2, chartH/2)
		return b.String()
	}
	var maxN uint64
	for _, br := range bars {
		maxN = max(maxN, br.n)
	}
	ymax := niceMax(float64(maxN))
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	w := pw / float64(len(bars))
	for i := 0; i <= 4; i++ {
		y := float64(padT) + ph - ph*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="g"/><text x="%d" y="%.1f" class="a" text-anchor="end">%s</text>`,
			padL, y, chartW-padR, y, padL-6, y+4, human(ymax*float64(i)/4))
	}
	step := max(1, len(bars)/8)
	for i, br := range bars {
		h := ph * float64(br.n) / ymax
		x := float64(padL) + w*float64(i)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3b7dd8"><title>%s–%s: %s</title></rect>`,
			x+1, float64(padT)+ph-h, math.Max(w-2, 1), h, durUs(br.lo), durUs(br.hi), commas(int64(br.n)))
		if i%step == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="a" text-anchor="middle">%s</text>`, x+w/2, chartH-padB+16, durUs(br.lo))
		}
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="a" text-anchor="middle">latency (log scale)</text>`, float64(padL)+pw/2, chartH-6)
	b.WriteString(`</svg>`)
	return b.String()
}

func durUs(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.3gs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.3gms", us/1e3)
	}
	return fmt.Sprintf("%.3gµs", us)
}

var htmlTmpl = template.Must(template.New("r").Funcs(template.FuncMap{"commas": commas, "int64f": func(f float64) int64 { return int64(f) },
	// cpu is CPU µs per item with the precision 10 ms accounting ticks allow (precision.go).
	"cpu": func(us float64, n int64, nodes int) string { return cpuPerUs(us, n, nodes) }}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>longlink bench {{.R.Scenario}} — {{.R.StartedAt.Format "2006-01-02 15:04"}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:860px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6}.big{font-size:1.6em;font-weight:600}.cards{display:flex;gap:1.5em;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;flex:1 1 220px;max-width:380px}.card.good{border-left:5px solid #2a8a3e}.card.bad{border-left:5px solid #c62828}
.card .k{font-weight:600}.card .note{color:#777;font-size:.85em}.card.noise .big{color:#999;font-style:italic}
.cmp{font-size:.85em;margin-top:.25em}.cmp .m{display:inline-block;width:1.1em;font-weight:700;text-align:center}.cmp.good{color:#1e6b2f}.cmp.bad{color:#b71c1c}.cmp.na{color:#777}.cmp.info{color:#555}
.legend{font-size:.85em;color:#555}.legend .cmp{margin-right:1em;font-size:1em}.warn{background:#fff4e0;border:1px solid #f0b400;padding:.6em 1em;border-radius:6px}
svg.chart{max-width:100%;height:auto;margin:.5em 0}svg .t{font:600 13px system-ui}svg .a{font:11px system-ui;fill:#555}svg .g{stroke:#eee}
pre{background:#f6f6f6;padding:.6em;overflow:auto}
</style></head><body>
<h1>longlink bench {{.R.Scenario}}</h1>
<p>Started {{.R.StartedAt.Format "2006-01-02 15:04:05 MST"}}, ran {{printf "%.1f" .R.ElapsedS}} s.</p>
<div class="cards">{{range .Cards}}<div class="card {{.Class}}{{if .Noise}} noise{{end}}"><div class="big">{{.Value}}</div><div class="k">{{.Label}}</div>{{if .Note}}<div class="note">{{.Note}}</div>{{end}}{{range .Cmps}}<div class="cmp {{.Class}}"><span class="m">{{.Symbol}}</span> {{.Text}}</div>{{end}}</div>{{end}}</div>
<p class="legend">Marks: <span class="cmp good"><span class="m">✓</span>met</span> <span class="cmp bad"><span class="m">✗</span>missed</span> <span class="cmp na"><span class="m">–</span>not comparable (another kind of run, noise, or within the CPU tick)</span> <span class="cmp info"><span class="m">·</span>for reference, no target</span><br>Targets: docs/performance.md, "Targets and results"; against a floor of the same run: issue 15 (p99 ≤ 2×, CPU per push ≤ 1.15×, closed-loop pushes/s ≥ 0.95×).</p>
{{if .R.Limits}}<h2>Limits in the way</h2><div class="warn"><ul>{{range .R.Limits}}<li>{{.}}</li>{{end}}</ul><pre>{{.R.Advice}}</pre></div>{{end}}
<h2>Results</h2><table>{{range .Rows}}<tr><th>{{.K}}</th><td>{{.V}}</td></tr>{{end}}</table>
{{if .R.Broadcast}}<h2>Broadcast rounds</h2><table><tr><th>round</th><th>received / expected</th><th>first</th><th>p50</th><th>p99</th><th>last</th><th>recipients/s</th><th>server CPU/recipient</th><th>bench CPU/msg</th></tr>
{{range .R.Broadcast.Rounds}}<tr><td>{{.Round}}</td><td>{{commas .Received}} / {{commas .Expected}}{{if .Error}} ({{.Error}}){{end}}{{if .TimedOut}} (timed out){{end}}</td><td>{{printf "%.1f" .FirstMs}} ms</td><td>{{printf "%.1f" .P50Ms}} ms</td><td>{{printf "%.1f" .P99Ms}} ms</td><td>{{printf "%.1f" .LastMs}} ms</td><td>{{commas (int64f .RecipientsPerS)}}</td><td>{{cpu .ServerCPUPerRecipientUs .Received $.R.Server.AfterOpen.Nodes}}</td><td>{{printf "%.2f" .ClientCPUPerMsgUs}} µs</td></tr>{{end}}</table>{{end}}
{{with .R.Upstream}}<h2>Upstream: gateway and floor</h2><table><tr><th></th><th>through the gateway</th><th>floor: straight to the back-end</th><th>gateway / floor</th></tr>
{{$f := .Floor}}<tr><th>requests/s</th><td>{{commas (int64f .RequestsPerS)}}</td><td>{{if $f}}{{commas (int64f $f.RequestsPerS)}}{{else}}not run{{end}}</td><td>{{if $f}}{{printf "%.2f" $f.Ratios.RequestsPerS}}{{end}}</td></tr>
<tr><th>p50 round trip</th><td>{{printf "%.3f" .Latency.P50Ms}} ms</td><td>{{if $f}}{{printf "%.3f" $f.Latency.P50Ms}} ms{{end}}</td><td>{{if $f}}{{printf "%.2f" $f.Ratios.P50}}{{end}}</td></tr>
<tr><th>p99 round trip</th><td>{{printf "%.3f" .Latency.P99Ms}} ms</td><td>{{if $f}}{{printf "%.3f" $f.Latency.P99Ms}} ms{{end}}</td><td>{{if $f}}{{printf "%.2f" $f.Ratios.P99}}{{end}}</td></tr>
<tr><th>CPU per request</th><td>{{printf "%.1f" .ServerCPUPerRequestUs}} µs (node)</td><td>{{if $f}}{{printf "%.1f" $f.ClientCPUPerRequestUs}} µs ({{$f.CPUMeasured}}){{end}}</td><td>{{if $f}}{{printf "%.2f" $f.Ratios.CPUPerRequest}}{{end}}</td></tr>
</table>{{end}}
<h2>Charts</h2>
{{range .Charts}}{{.}}{{end}}
<h2>Environment</h2><table>{{range .Env}}<tr><th>{{.K}}</th><td>{{.V}}</td></tr>{{end}}</table>
{{if .R.Notes}}<h2>Notes</h2><ul>{{range .R.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Options</h2><table>{{range .Opts}}<tr><th>{{.K}}</th><td>{{.V}}</td></tr>{{end}}</table>
</body></html>
`))

type kv struct{ K, V string }

func writeHTML(path string, rep *Report) error {
	var xs []float64
	var opened, open, srvConns, srvRSS, srvHeap, cliRSS []float64
	for _, s := range rep.Timeline {
		xs = append(xs, s.T)
		opened = append(opened, float64(s.Opened))
		open = append(open, float64(s.Open))
		srvConns = append(srvConns, s.ServerConns)
		srvRSS = append(srvRSS, s.ServerRSS/(1<<20))
		srvHeap = append(srvHeap, s.ServerHeap/(1<<20))
		cliRSS = append(cliRSS, s.ClientRSS/(1<<20))
	}
	charts := []template.HTML{
		template.HTML(lineChart("Connections over time", "seconds", "connections", xs, []series{
			{"opened (client)", "#3b7dd8", opened}, {"open (client)", "#2ca02c", open}, {"server longlink_connections", "#d62728", srvConns}})),
		template.HTML(lineChart("Memory over time", "seconds", "MiB", xs, []series{
			{"server RSS", "#d62728", srvRSS}, {"server Go heap", "#ff7f0e", srvHeap}, {"bench workers RSS", "#7f7f7f", cliRSS}})),
		template.HTML(histChart(handshakeTitle(rep), rep.Hists["handshake"])),
	}
	if bins, ok := rep.Hists["recovery"]; ok {
		charts = append(charts, template.HTML(histChart("Recovery time (reconnect start to a client's last missed push)", bins)),
			template.HTML(histChart("Reconnect handshake (connect() to welcome)", rep.Hists["reconnect_handshake"])))
	}
	if bins, ok := rep.Hists["delivery"]; ok {
		charts = append(charts, template.HTML(histChart("Delivery latency (API call to client receipt)", bins)))
	}
	if bins, ok := rep.Hists["round_trip"]; ok {
		charts = append(charts, template.HTML(histChart("Upstream round trip through the gateway (client write to reply read)", bins)))
	}
	if bins, ok := rep.Hists["floor_round_trip"]; ok {
		charts = append(charts, template.HTML(histChart("Floor round trip, straight to the back-end (request write to answer read)", bins)))
	}
	if bins, ok := rep.Hists["wait"]; ok && rep.Push != nil {
		charts = append(charts, template.HTML(histChart("Push with wait: "+rep.Push.waitLabel()+" (API call to complete answer)", bins)))
	}
	charts = append(charts, pusherCharts(rep)...)
	charts = append(charts, floorCharts(rep)...)
	if bins, ok := rep.Hists["api"]; ok {
		charts = append(charts, template.HTML(histChart("Push API call latency", bins)))
	}
	var sb strings.Builder
	printSummary(&sb, rep)
	var rows []kv
	for _, line := range strings.Split(sb.String(), "\n")[2:] {
		if k, v, ok := strings.Cut(line, "  "); ok {
			rows = append(rows, kv{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	e := rep.Env
	env := []kv{{"CPU", e.CPUModel}, {"cores", fmt.Sprint(e.Cores)}, {"memory", mib(float64(e.MemoryBytes))},
		{"kernel", e.Kernel}, {"ulimit -n", fmt.Sprintf("%d soft / %d hard", e.NoFileSoft, e.NoFileHard)},
		{"Go", e.GoVersion}, {"workers", fmt.Sprint(rep.Workers)},
		{"source addresses", sourceSummary(rep.Options.SourceIPs)},
		{"targets", strings.Join(rep.Options.Targets, " ")}, {"API", strings.Join(rep.Options.APIs, " ")},
		{"clock", e.ClockSource}}
	for _, s := range sysctlAdvice {
		env = append(env, kv{s.Key, e.Sysctls[s.Key]})
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot write HTML report: %w", err)
	}
	err = htmlTmpl.Execute(f, map[string]any{"R": rep, "Cards": headlineCards(rep), "Rows": rows, "Charts": charts, "Env": env, "Opts": optionRows(rep)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write HTML report: %w", err)
	}
	return nil
}

func sourceSummary(ips []string) string {
	switch len(ips) {
	case 0:
		return "chosen by the kernel"
	case 1:
		return ips[0]
	}
	return fmt.Sprintf("%s … %s (%d)", ips[0], ips[len(ips)-1], len(ips))
}

func handshakeTitle(rep *Report) string {
	if rep.Options.Protocol == "v2" {
		return "Handshake latency (connect() to welcome)"
	}
	if rep.Options.Protocol == "pusher" {
		return "Pusher handshake latency (connect() to pusher:connection_established)"
	}
	return "Handshake latency (connect() to 101)"
}

// floorCharts are the broadcast's per-round charts (time to the last recipient and
// server CPU per recipient), with the floor's line when one was measured, the
// floor's delivery latency beside the gateway's, and the side-by-side table.
func floorCharts(rep *Report) []template.HTML {
	var out []template.HTML
	f := rep.Floor
	if b := rep.Broadcast; b != nil && len(b.Rounds) > 0 {
		var xs, last, cpu, flast, fcpu []float64
		for i, r := range b.Rounds {
			xs = append(xs, float64(r.Round))
			last, cpu = append(last, r.LastMs), append(cpu, r.ServerCPUPerRecipientUs)
			if f != nil && f.Broadcast != nil && i < len(f.Broadcast.Rounds) {
				flast = append(flast, f.Broadcast.Rounds[i].LastMs)
				fcpu = append(fcpu, f.Broadcast.Rounds[i].ServerCPUPerRecipientUs)
			}
		}
		ls := []series{{"gateway", "#3b7dd8", last}}
		cs := []series{{"gateway", "#3b7dd8", cpu}}
		if len(flast) == len(last) {
			ls = append(ls, series{"floor", "#7f7f7f", flast})
			cs = append(cs, series{"floor", "#7f7f7f", fcpu})
		}
		out = append(out, template.HTML(lineChart("Broadcast: time to the last recipient, per round", "round", "ms", xs, ls)),
			template.HTML(lineChart("Broadcast: server CPU per recipient, per round (10 ms accounting ticks)", "round", "µs", xs, cs)))
	}
	if f == nil {
		return out
	}
	if bins, ok := f.Hists["delivery"]; ok {
		out = append(out, template.HTML(histChart("Floor: delivery latency (API call to client receipt)", bins)))
	}
	var b strings.Builder
	printFloorRatios(&b, rep)
	return append(out, template.HTML("<pre>"+html.EscapeString(b.String())+"</pre>"))
}
