package loadtest

import (
	"bytes"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
)

// point is one (x, y) of a chart series, in data units.
type point struct{ x, y float64 }

// series is one line of a chart.
type series struct {
	name   string
	color  string
	dashed bool
	pts    []point
}

// tick is a labelled axis position, in data units.
type tick struct {
	at    float64
	label string
}

// chart is a line chart rendered as inline SVG. The y axis is logarithmic (latency spans
// orders of magnitude); the x axis is linear in whatever unit the caller maps to.
type chart struct {
	title          string
	xLabel, yLabel string
	xMin, xMax     float64
	xTicks         []tick
	series         []series
	// linear draws the y axis linearly from 0, with yFmt labelling it (counts, shares),
	// instead of the logarithmic latency axis.
	linear bool
	yFmt   func(float64) string
}

const (
	chartW, chartH         = 760, 360
	padL, padR, padT, padB = 70, 20, 30, 50
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
	svgFont                = `font-family="sans-serif" font-size="11"`
)

// yRange returns a log10 range covering every series' values, widened to whole decades.
func (c *chart) yRange() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.series {
		for _, p := range s.pts {
			if p.y <= 0 {
				continue
			}
			lo, hi = min(lo, math.Log10(p.y)), max(hi, math.Log10(p.y))
		}
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

// linearMax returns the top of a linear y axis covering every series: 1, 2 or 5 times a power
// of ten.
func (c *chart) linearMax() float64 {
	top := 0.0
	for _, s := range c.series {
		for _, p := range s.pts {
			top = max(top, p.y)
		}
	}
	if top <= 0 {
		return 1
	}
	d := math.Pow(10, math.Floor(math.Log10(top)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*d >= top {
			return m * d
		}
	}
	return 10 * d
}

func (c *chart) svg() string {
	var b strings.Builder
	lo, hi := c.yRange()
	top := c.linearMax()
	px := func(x float64) float64 {
		if c.xMax == c.xMin {
			return padL
		}
		return padL + (x-c.xMin)/(c.xMax-c.xMin)*plotW
	}
	py := func(y float64) float64 {
		if c.linear {
			return padT + plotH - y/top*plotH
		}
		if y <= 0 {
			y = math.Pow(10, lo)
		}
		return padT + plotH - (math.Log10(y)-lo)/(hi-lo)*plotH
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="18" font-family="sans-serif" font-size="13" font-weight="bold">%s</text>`, padL, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, padL, padT, plotW, plotH)
	// y grid: linear, five steps; or logarithmic, every decade, labelled, and 2 and 5 within it.
	for k := 0; c.linear && k <= 5; k++ {
		v := top * float64(k) / 5
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, padL, padL+plotW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%s</text>`, padL-6, y+4, svgFont, html.EscapeString(c.yFmt(v)))
	}
	for d := lo; !c.linear && d <= hi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > hi+1e-9 {
				continue
			}
			y := py(v)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, padL, padL+plotW, y, y, stroke)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%s</text>`, padL-6, y+4, svgFont, fmtAxis(v))
		}
	}
	for _, t := range c.xTicks {
		x := px(t.at)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`, x, x, padT, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle">%s</text>`, x, padT+plotH+16, svgFont, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" %s text-anchor="middle">%s</text>`, padL+plotW/2, chartH-8, svgFont, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%d" %s text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`,
		padT+plotH/2, svgFont, padT+plotH/2, html.EscapeString(c.yLabel))
	for i, s := range c.series {
		if len(s.pts) == 0 {
			continue
		}
		var path strings.Builder
		for j, p := range s.pts {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, px(p.x), py(p.y))
		}
		dash := ""
		if s.dashed {
			dash = ` stroke-dasharray="5,4"`
		}
		fmt.Fprintf(&b, `<path class="series" d="%s" fill="none" stroke="%s" stroke-width="2"%s><title>%s</title></path>`,
			strings.TrimSpace(path.String()), s.color, dash, html.EscapeString(s.name))
		ly := padT + 14 + 16*i
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, padL+10, padL+30, ly-4, ly-4, s.color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s>%s</text>`, padL+36, ly, svgFont, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// fmtAxis formats a decade-grid latency in microseconds compactly: 20µs, 500µs, 2ms, 1s.
func fmtAxis(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%gµs", us)
	case us < 1e6:
		return fmt.Sprintf("%gms", us/1e3)
	default:
		return fmt.Sprintf("%gs", us/1e6)
	}
}

// nines maps a percentile to the spectrum's x axis: log10(1/(1−p)), so 90% is 1, 99% is 2,
// 99.9% is 3. The maximum (100%) is drawn half a decade beyond the last finite point.
func nines(p float64, maxAt float64) float64 {
	if p >= 100 {
		return maxAt
	}
	return math.Log10(1 / (1 - p/100))
}

func spectrumSeries(name, color string, dashed bool, pts []SpectrumPoint, maxAt float64) series {
	s := series{name: name, color: color, dashed: dashed}
	for _, p := range pts {
		s.pts = append(s.pts, point{nines(p.Percentile, maxAt), p.Us})
	}
	return s
}

// spectrumChart draws the latency percentile spectrum of each run in r.
func (r *Report) spectrumChart() chart {
	maxAt := 0.0
	for _, x := range []*Result{&r.Decide, r.Baseline} {
		if x == nil {
			continue
		}
		for _, p := range x.Spectrum {
			if p.Percentile < 100 {
				maxAt = max(maxAt, nines(p.Percentile, 0))
			}
		}
	}
	maxAt = math.Ceil(maxAt) + 0.5
	c := chart{
		title:  "Latency by percentile (log axes)",
		xLabel: "percentile",
		yLabel: "latency",
		xMin:   0,
		xMax:   maxAt,
	}
	for d := 0.0; d < maxAt; d++ {
		label := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", 100*(1-math.Pow(10, -d))), "0"), ".") + "%"
		c.xTicks = append(c.xTicks, tick{d, label})
	}
	c.xTicks = append(c.xTicks, tick{maxAt, "max"})
	c.series = append(c.series,
		spectrumSeries("decide: from intended send", "#c0392b", false, r.Decide.Spectrum, maxAt),
		spectrumSeries("decide: service time", "#e67e22", true, r.Decide.ServiceSpectrum, maxAt))
	if r.Baseline != nil {
		c.series = append(c.series,
			spectrumSeries("baseline (health Check): from intended send", "#2471a3", false, r.Baseline.Spectrum, maxAt))
	}
	return c
}

// timelineChart draws p50, p99 and max of each second of the decide run, by intended send
// time; with bySent, by actual send time (where an overloaded run shows when its requests
// really left).
func (r *Report) timelineChart(bySent bool) chart {
	c := chart{title: "Decide latency over time (per second of intended send)", xLabel: "second of the measured window (intended send)", yLabel: "latency"}
	tl := r.Decide.Timeline
	if bySent {
		c.title, c.xLabel, tl = "Decide latency over time (per second of actual send)", "second of the measured window (actual send)", r.Decide.SentTimeline
	}
	p50 := series{name: "p50", color: "#27ae60"}
	p99 := series{name: "p99", color: "#c0392b"}
	mx := series{name: "max", color: "#7f8c8d", dashed: true}
	for _, t := range tl {
		x := float64(t.Second)
		p50.pts = append(p50.pts, point{x, t.P50Us})
		p99.pts = append(p99.pts, point{x, t.P99Us})
		mx.pts = append(mx.pts, point{x, t.MaxUs})
		c.xMax = x
	}
	c.xTicks = secondTicks(c.xMax)
	c.series = []series{p50, p99, mx}
	return c
}

// secondTicks labels about ten seconds of an axis that ends at last.
func secondTicks(last float64) []tick {
	var ts []tick
	step := max(1, int(math.Ceil(last/10)))
	for s := 0; float64(s) <= last; s += step {
		ts = append(ts, tick{float64(s), fmt.Sprint(s)})
	}
	return ts
}

// throughputChart draws, per second of the decide run, the requests due, sent and answered.
func (r *Report) throughputChart() chart {
	c := chart{title: "Decide throughput (requests per second)", xLabel: "second of the measured window", yLabel: "requests/s",
		linear: true, yFmt: func(v float64) string { return fmt.Sprintf("%g", v) }}
	due := series{name: "due (target rate)", color: "#7f8c8d", dashed: true}
	sent := series{name: "sent", color: "#2471a3"}
	done := series{name: "answered", color: "#27ae60"}
	for _, p := range r.Decide.Throughput {
		x := float64(p.Second)
		due.pts = append(due.pts, point{x, float64(p.Due)})
		sent.pts = append(sent.pts, point{x, float64(p.Sent)})
		done.pts = append(done.pts, point{x, float64(p.Completed)})
		c.xMax = x
	}
	c.xTicks = secondTicks(c.xMax)
	c.series = []series{due, sent, done}
	return c
}

// errorRateChart draws, per second of the decide run, the share of answers that were errors.
func (r *Report) errorRateChart() chart {
	c := chart{title: "Decide error rate (per second of answer)", xLabel: "second of the measured window", yLabel: "errors",
		linear: true, yFmt: func(v float64) string { return fmt.Sprintf("%.3g%%", v) }}
	s := series{name: "errors / answers", color: "#c0392b"}
	for _, p := range r.Decide.Throughput {
		rate := 0.0
		if p.Completed > 0 {
			rate = 100 * float64(p.Errors) / float64(p.Completed)
		}
		s.pts = append(s.pts, point{float64(p.Second), rate})
		c.xMax = float64(p.Second)
	}
	c.xTicks = secondTicks(c.xMax)
	c.series = []series{s}
	return c
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Arbiter load test {{.Date}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
.warn{color:#a04000}
</style></head><body>
<h1>Arbiter load test</h1>
<p>{{.Date}} · target {{.Addr}} · {{.CPUs}} CPUs ({{.CPUModel}}) · {{.Go}}</p>
{{range .Warnings}}<p class="warn">{{.}}</p>{{end}}
<h2>Summary</h2>
<pre>{{.Summary}}</pre>
<h2>Latency percentile spectrum</h2>
{{.Spectrum}}
<h2>Throughput and errors over time</h2>
<p>Seconds of the measured window{{if .Warmup}}, after {{.Warmup}} of warm-up (not counted){{end}}.</p>
{{.Throughput}}
{{.ErrorRate}}
<h2>Latency over time</h2>
{{.Timeline}}
{{.SentTimeline}}
</body></html>
`))

// WriteHTML writes r as a self-contained HTML page: the summary and inline SVG charts of the
// latency percentile spectrum, throughput and error rate over time, and latency over time by
// intended and by actual send time. It loads nothing from elsewhere.
func (r *Report) WriteHTML(w io.Writer) error {
	var sum bytes.Buffer
	if err := r.WriteSummary(&sum); err != nil {
		return err
	}
	sp, tl, sent, tp, er := r.spectrumChart(), r.timelineChart(false), r.timelineChart(true), r.throughputChart(), r.errorRateChart()
	warmup := ""
	if r.Decide.WarmupS > 0 {
		warmup = fmt.Sprintf("%gs", r.Decide.WarmupS)
	}
	var warnings []string
	for _, x := range r.results() {
		warnings = append(warnings, x.Warnings...)
	}
	err := pageTemplate.Execute(w, map[string]any{
		"Date":     r.Date.UTC().Format("2006-01-02 15:04:05 UTC"),
		"Addr":     r.Addr,
		"CPUs":     r.Machine.CPUs,
		"CPUModel": r.Machine.CPUModel,
		"Go":       r.Machine.GoVersion,
		"Warnings": warnings,
		"Summary":  sum.String(),
		"Spectrum": template.HTML(sp.svg()), // built above with every text escaped
		"Timeline": template.HTML(tl.svg()),
		// Also built with every text escaped.
		"SentTimeline": template.HTML(sent.svg()),
		"Throughput":   template.HTML(tp.svg()),
		"ErrorRate":    template.HTML(er.svg()),
		"Warmup":       warmup,
	})
	if err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}
