package loadtest

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: values are nanoseconds, resolved to 1 µs, up to two minutes, with three
// significant digits (0.1% relative error).
const (
	histLowest  = int64(time.Microsecond)
	histHighest = int64(2 * time.Minute)
	histDigits  = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// recordDuration records d, clamped to the histogram's range, so that no observation is ever
// dropped: a negative duration (clock step) counts as zero and an overlong one as the maximum.
func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > histHighest {
		v = histHighest
	}
	_ = h.RecordValue(v) // cannot fail: v is within range
}

// Percentiles summarises a latency distribution in microseconds.
type Percentiles struct {
	Count  int64   `json:"count"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

// micros converts nanoseconds to microseconds rounded to 0.1 µs.
func micros(ns int64) float64 { return math.Round(float64(ns)/100) / 10 }

// summarize returns the percentiles of h; all zero when h is empty.
func summarize(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		Count:  h.TotalCount(),
		MeanUs: math.Round(h.Mean()/100) / 10,
		P50Us:  micros(h.ValueAtPercentile(50)),
		P90Us:  micros(h.ValueAtPercentile(90)),
		P99Us:  micros(h.ValueAtPercentile(99)),
		P999Us: micros(h.ValueAtPercentile(99.9)),
		MaxUs:  micros(h.Max()),
	}
}

// SpectrumPoint is one point of a latency percentile spectrum.
type SpectrumPoint struct {
	Percentile float64 `json:"percentile"`
	Us         float64 `json:"us"`
}

// spectrumPercentiles are the percentiles of the spectrum: evenly spaced on the log scale of
// 1/(1−p), four per decade, from 0% to 99.999%, then 100% (the maximum).
func spectrumPercentiles() []float64 {
	ps := make([]float64, 0, 22)
	for i := 0; i <= 20; i++ {
		p := 100 * (1 - math.Pow(10, -float64(i)/4))
		ps = append(ps, math.Round(p*1e6)/1e6)
	}
	return append(ps, 100)
}

// spectrum returns the latency at each of [spectrumPercentiles], stopping after the first
// percentile that needs more samples than h holds (a 99.99th percentile of 100 samples is
// just the maximum) and always ending with the maximum.
func spectrum(h *hdrhistogram.Histogram) []SpectrumPoint {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var pts []SpectrumPoint
	for _, p := range spectrumPercentiles() {
		if p == 100 || (1-p/100)*float64(n) < 1 {
			break
		}
		pts = append(pts, SpectrumPoint{Percentile: p, Us: micros(h.ValueAtPercentile(p))})
	}
	return append(pts, SpectrumPoint{Percentile: 100, Us: micros(h.Max())})
}
