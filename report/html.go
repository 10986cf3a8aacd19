package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
)

// WriteHTML writes r as a self-contained HTML page, with no external assets and no
// JavaScript: the table of WriteText, the uplift lines and inline SVG charts, a bar chart of
// the recovery rate per arm with its interval as error bars and, when there are uplifts, a
// chart of the differences with their intervals and a zero line. Every name is escaped.
func (r *Result) WriteHTML(w io.Writer) error {
	v := htmlView{
		Experiment: r.Experiment,
		Rows:       r.rows(),
		Test:       r.Test,
		Bars:       r.barChart(),
		Forest:     r.forestChart(),
	}
	for _, a := range r.Arms {
		for _, u := range a.Uplifts {
			v.Uplifts = append(v.Uplifts, upliftLine(a.Name, u))
		}
	}
	return pageTemplate.Execute(w, v)
}

// htmlView is what the page template reads.
type htmlView struct {
	Experiment string
	Rows       []row
	Uplifts    []string
	Test       string
	Bars       barChart
	Forest     forestChart
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720.0
	barHeight   = 320.0
	barLeft     = 60.0 // room for the y-axis labels
	barRight    = 20.0
	barTop      = 20.0
	barBottom   = 60.0 // room for the arm names
	forestLabel = 340.0
	forestRow   = 28.0
	forestTop   = 10.0
	forestAxis  = 40.0
)

// barChart is the recovery-rate chart: one bar per arm with an error bar.
type barChart struct {
	Width, Height, Left, Right, Top, Bottom float64
	Ticks                                   []tick
	Bars                                    []bar
}

type tick struct {
	Pos   float64
	Label string
}

type bar struct {
	Name, Class, Label, Title  string
	X, Y, W, H, CX, CapL, CapR float64
	YLow, YHigh                float64
	LabelY, NameY              float64
}

func (r *Result) barChart() barChart {
	c := barChart{Width: chartWidth, Height: barHeight, Left: barLeft, Right: chartWidth - barRight,
		Top: barTop, Bottom: barHeight - barBottom}
	top := 0.0
	for _, a := range r.Arms {
		top = max(top, a.RecoveryRate.Interval.High)
	}
	top = niceCeil(top)
	y := func(p float64) float64 { return c.Bottom - p/top*(c.Bottom-c.Top) }
	for i := range 5 {
		p := top * float64(i) / 4
		c.Ticks = append(c.Ticks, tick{Pos: y(p), Label: fmt.Sprintf("%.3g%%", 100*p)})
	}
	if len(r.Arms) == 0 {
		return c
	}
	slot := (c.Right - c.Left) / float64(len(r.Arms))
	for i, a := range r.Arms {
		iv := a.RecoveryRate.Interval
		cx := c.Left + slot*(float64(i)+0.5)
		w := slot * 0.6
		c.Bars = append(c.Bars, bar{
			Name:   a.Name,
			Class:  a.Role.String(),
			Label:  fmt.Sprintf("%.1f%%", 100*iv.Estimate),
			Title:  a.Name + ": recovery " + formatRate(a.RecoveryRate),
			X:      cx - w/2,
			Y:      y(iv.Estimate),
			W:      w,
			H:      c.Bottom - y(iv.Estimate),
			CX:     cx,
			CapL:   cx - min(6, w/4),
			CapR:   cx + min(6, w/4),
			YLow:   y(iv.Low),
			YHigh:  y(iv.High),
			LabelY: y(iv.High) - 6,
			NameY:  c.Bottom + 20,
		})
	}
	return c
}

// forestChart is the uplift chart: one row per uplift, the difference as a point with its
// interval as a line, around a zero line.
type forestChart struct {
	Width, Height, Left, Right, Zero, AxisY float64
	Ticks                                   []tick
	Rows                                    []forestRowView
}

type forestRowView struct {
	Label, Class, Title      string
	Y, X, XLow, XHigh, TextY float64
}

func (r *Result) forestChart() forestChart {
	var n int
	ext := 0.0
	for _, a := range r.Arms {
		for _, u := range a.Uplifts {
			n++
			ext = max(ext, math.Abs(u.Diff.Low), math.Abs(u.Diff.High))
		}
	}
	c := forestChart{Width: chartWidth, Left: forestLabel, Right: chartWidth - 2*barRight} // room for the last tick label
	if n == 0 {
		return c
	}
	ext = niceCeil(ext)
	c.AxisY = forestTop + forestRow*float64(n)
	c.Height = c.AxisY + forestAxis
	x := func(d float64) float64 { return c.Left + (d+ext)/(2*ext)*(c.Right-c.Left) }
	c.Zero = x(0)
	for _, d := range []float64{-ext, -ext / 2, 0, ext / 2, ext} {
		c.Ticks = append(c.Ticks, tick{Pos: x(d), Label: fmt.Sprintf("%+.3g pts", 100*d)})
	}
	c.Ticks[2].Label = "0"
	i := 0
	for _, a := range r.Arms {
		for _, u := range a.Uplifts {
			y := forestTop + forestRow*(float64(i)+0.5)
			// Significant differences are green when they are good news (more recoveries,
			// fewer opt-outs) and red when they are harm.
			class := "ns"
			if u.Significant {
				class = "sig"
				if (u.Metric == metricOptOut) == (u.Diff.Estimate > 0) {
					class = "harm"
				}
			}
			c.Rows = append(c.Rows, forestRowView{
				Label: a.Name + " vs " + u.Against + " (" + u.Metric + ")",
				Class: class,
				Title: upliftLine(a.Name, u),
				Y:     y,
				TextY: y + 4,
				X:     x(u.Diff.Estimate),
				XLow:  x(u.Diff.Low),
				XHigh: x(u.Diff.High),
			})
			i++
		}
	}
	return c
}

// niceCeil rounds a positive proportion up to a round axis limit (1, 2, 2.5 or 5 times a
// power of ten); 0.01 for anything not above zero, so an empty chart still has an axis.
func niceCeil(x float64) float64 {
	if !(x > 0) {
		return 0.01
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if x <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"f": func(x float64) string { return fmt.Sprintf("%.1f", x) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Experiment {{.Experiment}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
svg { display: block; margin: 1em 0; }
svg text { font-size: 12px; fill: #222; }
.champion { fill: #1f77b4; }
.challenger { fill: #ff7f0e; }
.holdout { fill: #999; }
.axis, .grid, .err, .zero, .ci { stroke-width: 1; }
.axis { stroke: #222; }
.grid { stroke: #eee; }
.err { stroke: #222; stroke-width: 1.5; }
.zero { stroke: #222; stroke-dasharray: 4 3; }
.sig { fill: #2ca02c; stroke: #2ca02c; }
.harm { fill: #d62728; stroke: #d62728; }
.ns { fill: #777; stroke: #777; }
.ci { stroke-width: 2; }
</style>
</head>
<body>
<h1>Experiment {{.Experiment}}</h1>
<table>
<thead><tr><th>Arm</th><th>Role</th><th>Customers</th><th>Decisions</th><th>Recovery</th><th>Median time to pay</th><th>Messages / recovery</th><th>Opt-out</th><th>Complaints</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.Customers}}</td><td>{{.Decisions}}</td><td>{{.Recovery}}</td><td>{{.MedianTimeToPay}}</td><td>{{.MessagesPerRecovery}}</td><td>{{.OptOut}}</td><td>{{.Complaints}}</td></tr>
{{- end}}
</tbody>
</table>
<h2>Recovery rate per arm</h2>
{{with .Bars -}}
<svg xmlns="http://www.w3.org/2000/svg" width="{{f .Width}}" height="{{f .Height}}" viewBox="0 0 {{f .Width}} {{f .Height}}" role="img" aria-label="Recovery rate per arm with confidence intervals">
{{- range .Ticks}}
<line class="grid" x1="{{f $.Bars.Left}}" x2="{{f $.Bars.Right}}" y1="{{f .Pos}}" y2="{{f .Pos}}"/>
<text x="{{f $.Bars.Left}}" dx="-6" y="{{f .Pos}}" dy="4" text-anchor="end">{{.Label}}</text>
{{- end}}
{{- range .Bars}}
<g><title>{{.Title}}</title>
<rect class="{{.Class}}" x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}"/>
<line class="err" x1="{{f .CX}}" x2="{{f .CX}}" y1="{{f .YLow}}" y2="{{f .YHigh}}"/>
<line class="err" x1="{{f .CapL}}" x2="{{f .CapR}}" y1="{{f .YLow}}" y2="{{f .YLow}}"/>
<line class="err" x1="{{f .CapL}}" x2="{{f .CapR}}" y1="{{f .YHigh}}" y2="{{f .YHigh}}"/>
<text x="{{f .CX}}" y="{{f .LabelY}}" text-anchor="middle">{{.Label}}</text>
<text x="{{f .CX}}" y="{{f .NameY}}" text-anchor="middle">{{.Name}}</text>
</g>
{{- end}}
<line class="axis" x1="{{f .Left}}" x2="{{f .Right}}" y1="{{f .Bottom}}" y2="{{f .Bottom}}"/>
<line class="axis" x1="{{f .Left}}" x2="{{f .Left}}" y1="{{f .Top}}" y2="{{f .Bottom}}"/>
</svg>
{{- end}}
{{if .Forest.Rows -}}
<h2>Differences against the holdout and the champion</h2>
{{with .Forest -}}
<svg xmlns="http://www.w3.org/2000/svg" width="{{f .Width}}" height="{{f .Height}}" viewBox="0 0 {{f .Width}} {{f .Height}}" role="img" aria-label="Differences with confidence intervals">
{{- range .Ticks}}
<line class="grid" x1="{{f .Pos}}" x2="{{f .Pos}}" y1="0" y2="{{f $.Forest.AxisY}}"/>
<text x="{{f .Pos}}" y="{{f $.Forest.AxisY}}" dy="16" text-anchor="middle">{{.Label}}</text>
{{- end}}
<line class="zero" x1="{{f .Zero}}" x2="{{f .Zero}}" y1="0" y2="{{f .AxisY}}"/>
{{- range .Rows}}
<g class="{{.Class}}"><title>{{.Title}}</title>
<text x="{{f $.Forest.Left}}" dx="-10" y="{{f .TextY}}" text-anchor="end">{{.Label}}</text>
<line class="ci {{.Class}}" x1="{{f .XLow}}" x2="{{f .XHigh}}" y1="{{f .Y}}" y2="{{f .Y}}"/>
<circle class="{{.Class}}" cx="{{f .X}}" cy="{{f .Y}}" r="4"/>
</g>
{{- end}}
<line class="axis" x1="{{f .Left}}" x2="{{f .Right}}" y1="{{f .AxisY}}" y2="{{f .AxisY}}"/>
</svg>
{{- end}}
{{- end}}
<h2>Uplifts</h2>
<ul>
{{- range .Uplifts}}
<li>{{.}}</li>
{{- end}}
</ul>
<p>{{.Test}}</p>
</body>
</html>
`))
