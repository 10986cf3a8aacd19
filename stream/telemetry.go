package stream

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/stream"

// result is what became of a message, the result label of arbiter.stream.messages.
type result uint8

const (
	resultDecided  result = iota // decided and published (replays included)
	resultRecorded               // an outcome recorded
	resultDead                   // dead-lettered and acknowledged
	resultRetry                  // handed back for redelivery (an unexpected failure)
	resultPaused                 // handed back because the service is out: consumption paused
	resultCount
)

var resultNames = [resultCount]string{"decided", "recorded", "dead", "retry", "paused"}

// metrics are the edge's instruments, created once in New.
type metrics struct {
	messages    metric.Int64Counter // arbiter.stream.messages{consumer,result}
	redelivered metric.Int64Counter // arbiter.stream.redelivered{consumer}
	dead        metric.Int64Counter // arbiter.stream.dead_letters{reason}
	pauses      metric.Int64Counter // arbiter.stream.pauses{consumer}
	// resultAttrs are the attributes of arbiter.stream.messages, built once.
	resultAttrs [consumerCount][resultCount]metric.MeasurementOption
	// consumerAttrs are the consumer attribute of each consumer's measurements.
	consumerAttrs [consumerCount]metric.MeasurementOption
	// lag is each consumer's unacknowledged messages, as JetStream counted them last.
	lag    [consumerCount]atomic.Int64
	paused [consumerCount]atomic.Bool
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	m := &metrics{}
	meter := mp.Meter(instrumentationName)
	var err error
	if m.messages, err = meter.Int64Counter("arbiter.stream.messages",
		metric.WithDescription("Messages the stream edge consumed, by consumer and result: decided, recorded (outcomes), dead (dead-lettered), retry, paused (handed back during an outage)."),
		metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if m.redelivered, err = meter.Int64Counter("arbiter.stream.redelivered",
		metric.WithDescription("Messages the stream edge received more than once (a redelivery after a crash, a timeout or a pause)."),
		metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if m.dead, err = meter.Int64Counter("arbiter.stream.dead_letters",
		metric.WithDescription("Messages published to arbiter.dead.<reason>, by reason."),
		metric.WithUnit("{message}")); err != nil {
		return nil, err
	}
	if m.pauses, err = meter.Int64Counter("arbiter.stream.pauses",
		metric.WithDescription("Times a consumer paused because the service could not decide (store outage)."),
		metric.WithUnit("{pause}")); err != nil {
		return nil, err
	}
	lag, err := meter.Int64ObservableGauge("arbiter.stream.consumer.lag",
		metric.WithDescription("Messages of the consumer's stream not acknowledged yet: not delivered, in flight, or handed back for redelivery (read from JetStream every 2 s)."),
		metric.WithUnit("{message}"))
	if err != nil {
		return nil, err
	}
	paused, err := meter.Int64ObservableGauge("arbiter.stream.consumer.paused",
		metric.WithDescription("1 while the consumer is paused by an outage, else 0."))
	if err != nil {
		return nil, err
	}
	attrs := [consumerCount]metric.ObserveOption{}
	for c := range consumerCount {
		set := attribute.NewSet(attribute.String("consumer", consumerNames[c]))
		attrs[c] = metric.WithAttributeSet(set)
		m.consumerAttrs[c] = metric.WithAttributeSet(set)
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for c := range consumerCount {
			o.ObserveInt64(lag, m.lag[c].Load(), attrs[c])
			p := int64(0)
			if m.paused[c].Load() {
				p = 1
			}
			o.ObserveInt64(paused, p, attrs[c])
		}
		return nil
	}, lag, paused); err != nil {
		return nil, err
	}
	// Counters whose labels are known start at zero, so they are scraped before their first
	// increment.
	ctx := context.Background()
	for c := range consumerCount {
		a := attribute.String("consumer", consumerNames[c])
		for r := range resultCount {
			m.resultAttrs[c][r] = metric.WithAttributeSet(attribute.NewSet(a, attribute.String("result", resultNames[r])))
			m.messages.Add(ctx, 0, m.resultAttrs[c][r])
		}
		m.redelivered.Add(ctx, 0, m.consumerAttrs[c])
		m.pauses.Add(ctx, 0, m.consumerAttrs[c])
	}
	for _, r := range deadReasons {
		m.dead.Add(ctx, 0, metric.WithAttributes(attribute.String("reason", r)))
	}
	return m, nil
}

func (m *metrics) result(ctx context.Context, c consumerKind, r result) {
	m.messages.Add(ctx, 1, m.resultAttrs[c][r])
}
