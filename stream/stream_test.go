package stream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
	"github.com/arbiter-dev/arbiter/stream"
	"github.com/arbiter-dev/arbiter/stream/natstest"
)

// connect opens a NATS connection to url, closed when the test ends.
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runEdge starts an edge over nc and svc, with Setup done; the returned stop ends Run and
// waits for it.
func runEdge(t *testing.T, nc *nats.Conn, svc stream.Service, opts ...stream.Option) (*stream.Edge, func()) {
	t.Helper()
	e, err := stream.New(nc, svc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Setup(t.Context()); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return within 20s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return e, stop
}

// overdue is a valid event that the default policy answers with a MESSAGE.
func overdue(event, customer string) *arbiterv1.DecideRequest {
	return &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{Id: event, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
		Customer: &arbiterv1.Customer{Id: customer, Timezone: "Europe/London",
			Consents: []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
	}
}

// publish publishes req to arbiter.events.test in protobuf.
func publish(t *testing.T, js jetstream.JetStream, req proto.Message) {
	t.Helper()
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, "arbiter.events.test", stream.ContentTypeProtobuf, data)
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject, contentType string, data []byte) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if contentType != "" {
		m.Header.Set(stream.HeaderContentType, contentType)
	}
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
}

// stored returns every message stored in the stream name.
func stored(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// waitStored waits until the stream name holds at least n messages and returns them.
func waitStored(t *testing.T, js jetstream.JetStream, name string, n int, within time.Duration) []*jetstream.RawStreamMsg {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if int(info.State.Msgs) >= n {
			return stored(t, js, name)
		}
		if time.Now().After(deadline) {
			if c, err := js.Consumer(t.Context(), stream.StreamEvents, stream.ConsumerEvents); err == nil {
				ci, _ := c.Info(t.Context())
				t.Logf("consumer: pending %d, ack pending %d, redelivered %d, delivered %+v, ack floor %+v", ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered, ci.AckFloor)
			}
			for _, m := range stored(t, js, stream.StreamDead) {
				t.Logf("dead: %s %v", m.Subject, m.Header)
			}
			t.Fatalf("stream %s holds %d messages after %v, want %d", name, info.State.Msgs, within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crashingService passes calls to a server and, after the crashAt-th decision, closes the
// edge's NATS connection before answering: the decision is committed, but neither its
// publication nor the event's acknowledgement leaves the process, as in a crash between the
// two.
type crashingService struct {
	stream.Service
	crashAt int64
	decided atomic.Int64
	conn    *nats.Conn
}

func (c *crashingService) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	resp, err := c.Service.Decide(ctx, req)
	if c.decided.Add(1) == c.crashAt {
		c.conn.Close()
	}
	return resp, err
}

// TestEventDecidedOnceAcrossCrash: events published in come out as exactly one decision each,
// although the consumer's connection dies in the middle of a batch (decisions committed, not
// published, events not acknowledged) and a new consumer takes over; events published twice
// (a producer's retry) come out once too.
func TestEventDecidedOnceAcrossCrash(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	const events = 300
	first := connect(t, url)
	svc := &crashingService{Service: srv, crashAt: 100, conn: first}
	// The first edge sets up the streams, then the events go in while it runs.
	_, stop := runEdge(t, first, svc, stream.WithAckWait(2*time.Second), stream.WithWorkers(16))
	for i := range events {
		publish(t, js, overdue(fmt.Sprintf("ev-%d", i), fmt.Sprintf("cust-%d", i%40)))
		if i%10 == 0 {
			publish(t, js, overdue(fmt.Sprintf("ev-%d", i), fmt.Sprintf("cust-%d", i%40))) // a duplicate
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for svc.decided.Load() < svc.crashAt {
		if time.Now().After(deadline) {
			t.Fatalf("%d decisions before the crash after 30s, want %d", svc.decided.Load(), svc.crashAt)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	crashedAfter := len(stored(t, js, stream.StreamDecisions))
	if crashedAfter >= events {
		t.Fatalf("%d decisions out before the restart: the crash came too late to test anything", crashedAfter)
	}

	// A new edge, on a new connection, takes over the same durable consumer.
	runEdge(t, connect(t, url), srv, stream.WithAckWait(2*time.Second), stream.WithWorkers(16))
	msgs := waitStored(t, js, stream.StreamDecisions, events, 60*time.Second)
	time.Sleep(3 * time.Second) // anything redelivered after the ack wait would land by now
	msgs = stored(t, js, stream.StreamDecisions)
	perEvent := map[string]int{}
	for _, m := range msgs {
		ev := m.Header.Get(stream.HeaderEventID)
		perEvent[ev]++
		if m.Header.Get(stream.HeaderCustomerID) == "" || m.Header.Get(stream.HeaderPolicyVersion) == "" ||
			m.Header.Get("Nats-Msg-Id") != m.Header.Get(stream.HeaderDecisionID) {
			t.Errorf("decision of %s has headers %v, want customer id, policy version and the decision id as Nats-Msg-Id", ev, m.Header)
		}
		var resp arbiterv1.DecideResponse
		if err := proto.Unmarshal(m.Data, &resp); err != nil {
			t.Fatalf("decision of %s does not decode: %v", ev, err)
		}
		if want := "arbiter.decisions." + strings.ToLower(strings.TrimPrefix(resp.GetAction().String(), "ACTION_")); m.Subject != want {
			t.Errorf("decision of %s on %s, want %s", ev, m.Subject, want)
		}
	}
	for i := range events {
		if n := perEvent[fmt.Sprintf("ev-%d", i)]; n != 1 {
			t.Errorf("event ev-%d: %d decisions out, want exactly 1", i, n)
		}
	}
	if len(msgs) != events {
		t.Errorf("%d decisions out for %d events, want %d", len(msgs), events, events)
	}
	t.Logf("%d decisions out before the crash at decision %d; %d after the restart", crashedAfter, svc.crashAt, len(msgs))
}

// TestPoisonMessages: messages that can never be decided land in arbiter.dead.<reason> with
// the error, acknowledged, and the next event is decided. A card number never reaches the dead
// letter.
func TestPoisonMessages(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	runEdge(t, connect(t, url), srv)

	const pan = "4111111111111111"
	noCustomer := overdue("ev-no-customer", "")
	withCard := overdue("ev-card", "cust-card")
	withCard.Event.Attributes = map[string]string{"note": "card " + pan}
	jsonBad, _ := protojson.Marshal(overdue("", "cust-json"))
	dryRun := overdue("ev-dry", "cust-dry")
	dryRun.Options = &arbiterv1.DecideOptions{DryRun: true}
	cases := []struct {
		name, contentType string
		data              []byte
		reason, errHas    string
	}{
		{"garbage protobuf", stream.ContentTypeProtobuf, []byte{0xff, 0xff, 0xff}, stream.DeadDecode, "does not decode"},
		{"garbage JSON", stream.ContentTypeJSON, []byte(`{"event": 4111111111111111`), stream.DeadDecode, "does not decode"},
		{"unknown content type", "text/csv", []byte("a,b"), stream.DeadDecode, "Content-Type"},
		{"missing customer id", stream.ContentTypeProtobuf, mustMarshal(t, noCustomer), stream.DeadInvalid, "customer.id"},
		{"no event id in JSON", stream.ContentTypeJSON, jsonBad, stream.DeadInvalid, "event.id"},
		{"card number", stream.ContentTypeProtobuf, mustMarshal(t, withCard), stream.DeadCardNumber, "card number"},
		{"dry run", stream.ContentTypeProtobuf, mustMarshal(t, dryRun), stream.DeadInvalid, "options.dry_run"},
	}
	for _, c := range cases {
		publishRaw(t, js, "arbiter.events.test", c.contentType, c.data)
	}
	good, _ := protojson.Marshal(overdue("ev-good", "cust-good"))
	publishRaw(t, js, "arbiter.events.test", "", good) // JSON without a Content-Type: sniffed

	decisions := waitStored(t, js, stream.StreamDecisions, 1, 20*time.Second)
	if got := decisions[0].Header.Get(stream.HeaderEventID); got != "ev-good" {
		t.Errorf("decision for %q, want ev-good", got)
	}
	if ct := decisions[0].Header.Get(stream.HeaderContentType); ct != stream.ContentTypeProtobuf {
		t.Errorf("decision Content-Type %q, want %q", ct, stream.ContentTypeProtobuf)
	}
	dead := waitStored(t, js, stream.StreamDead, len(cases), 20*time.Second)
	if len(dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
	}
	for i, c := range cases {
		// One worker at a time does not hold: match by sequence of the original.
		var m *jetstream.RawStreamMsg
		for _, d := range dead {
			if d.Header.Get(stream.HeaderSequence) == fmt.Sprint(i+1) {
				m = d
			}
		}
		if m == nil {
			t.Errorf("%s: no dead letter for stream sequence %d", c.name, i+1)
			continue
		}
		if want := "arbiter.dead." + c.reason; m.Subject != want {
			t.Errorf("%s: dead letter on %s, want %s", c.name, m.Subject, want)
		}
		if e := m.Header.Get(stream.HeaderError); !strings.Contains(e, c.errHas) {
			t.Errorf("%s: %s = %q, want it to mention %q", c.name, stream.HeaderError, e, c.errHas)
		}
		if strings.Contains(string(m.Data), pan) || strings.Contains(fmt.Sprint(m.Header), pan) {
			t.Errorf("%s: the dead letter holds the card number", c.name)
		}
		if m.Header.Get(stream.HeaderSubject) != "arbiter.events.test" {
			t.Errorf("%s: %s = %q, want arbiter.events.test", c.name, stream.HeaderSubject, m.Header.Get(stream.HeaderSubject))
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRevocations: a fraud flag's decision publishes a revocation of the customer's pending
// actions on arbiter.revocations.<customer>, and Revoke (the Confirm hook) publishes one per
// decision, once, under a subject token that survives any customer id.
func TestRevocations(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	e, _ := runEdge(t, connect(t, url), srv)

	flag := &arbiterv1.DecideRequest{
		Event:    &arbiterv1.Event{Id: "ev-fraud", Type: arbiterv1.EventType_EVENT_TYPE_FRAUD_FLAG_RAISED, Source: "risk"},
		Customer: &arbiterv1.Customer{Id: "cust-fraud", Timezone: "Europe/London"},
	}
	publish(t, js, flag)
	publish(t, js, overdue("ev-plain", "cust-plain")) // no revocation
	waitStored(t, js, stream.StreamDecisions, 2, 20*time.Second)
	revs := waitStored(t, js, stream.StreamRevocations, 1, 10*time.Second)
	if len(revs) != 1 || revs[0].Subject != "arbiter.revocations.cust-fraud" {
		t.Fatalf("revocations %v, want one on arbiter.revocations.cust-fraud", subjects(revs))
	}
	revocationOf := func(m *jetstream.RawStreamMsg) *arbiterv1.Revocation {
		var r arbiterv1.Revocation
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}

	// An opted-out customer's next event revokes too.
	if _, err := srv.PutFeatures(t.Context(), &arbiterv1.PutFeaturesRequest{CustomerId: "cust-optout",
		Features: map[string]*structpb.Value{"opted_out": structpb.NewBoolValue(true)}}); err != nil {
		t.Fatal(err)
	}
	publish(t, js, overdue("ev-optout", "cust-optout"))
	revs = waitStored(t, js, stream.StreamRevocations, 2, 20*time.Second)
	if r := revocationOf(revs[1]); revs[1].Subject != "arbiter.revocations.cust-optout" || !contains(r.GetReasonCodes(), "OPTED_OUT") {
		t.Errorf("revocation on %s with codes %v, want arbiter.revocations.cust-optout with OPTED_OUT", revs[1].Subject, r.GetReasonCodes())
	}
	revs = revs[:1]
	var r arbiterv1.Revocation
	if err := proto.Unmarshal(revs[0].Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.GetCustomerId() != "cust-fraud" || r.GetEventId() != "ev-fraud" || !contains(r.GetReasonCodes(), "FRAUD_FLAG") ||
		r.GetScope() != arbiterv1.RevocationScope_REVOCATION_SCOPE_CUSTOMER || r.GetDecisionId() == "" {
		t.Errorf("revocation = %v, want customer cust-fraud, event ev-fraud, FRAUD_FLAG, scope CUSTOMER", &r)
	}

	// The Confirm hook: one revocation per decision, whatever the customer id.
	odd := "cust.with spaces>*"
	for range 2 {
		if err := e.Revoke(t.Context(), &arbiterv1.Revocation{CustomerId: odd, DecisionId: "d-confirm",
			ReasonCodes: []string{"OPTED_OUT"}, Scope: arbiterv1.RevocationScope_REVOCATION_SCOPE_DECISION}); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	revs = stored(t, js, stream.StreamRevocations)
	if len(revs) != 3 {
		t.Fatalf("%d revocations after Revoke twice, want 3 (the two decisions', and one for the Revoke calls)", len(revs))
	}
	if want := "arbiter.revocations." + stream.SubjectToken(odd); revs[2].Subject != want || revs[2].Header.Get(stream.HeaderCustomerID) != odd {
		t.Errorf("revocation on %s with customer %q, want %s and %q", revs[2].Subject, revs[2].Header.Get(stream.HeaderCustomerID), want, odd)
	}
}

func subjects(ms []*jetstream.RawStreamMsg) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Subject)
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestOutcomes: an outcome published to arbiter.outcomes.> is recorded on its decision; one for
// an unknown decision is dead-lettered as not_found.
func TestOutcomes(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	runEdge(t, connect(t, url), srv)
	publish(t, js, overdue("ev-out", "cust-out"))
	d := waitStored(t, js, stream.StreamDecisions, 1, 20*time.Second)[0]
	id := d.Header.Get(stream.HeaderDecisionID)
	out := &arbiterv1.RecordOutcomeRequest{DecisionId: id, Outcome: arbiterv1.Outcome_OUTCOME_DELIVERED}
	publishRaw(t, js, "arbiter.outcomes.email", stream.ContentTypeProtobuf, mustMarshal(t, out))
	unknown := &arbiterv1.RecordOutcomeRequest{DecisionId: "d-unknown", Outcome: arbiterv1.Outcome_OUTCOME_DELIVERED}
	publishRaw(t, js, "arbiter.outcomes.email", stream.ContentTypeProtobuf, mustMarshal(t, unknown))

	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := srv.GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{DecisionId: id})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(got.GetRecord().GetOutcomes()); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decision %s has %d outcomes after 20s, want 1", id, len(got.GetRecord().GetOutcomes()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	dead := waitStored(t, js, stream.StreamDead, 1, 20*time.Second)
	if dead[0].Subject != "arbiter.dead."+stream.DeadNotFound && dead[0].Subject != "arbiter.dead."+stream.DeadInvalid {
		t.Errorf("outcome of an unknown decision dead-lettered on %s, want arbiter.dead.not_found or .invalid", dead[0].Subject)
	}
}

// TestStoreOutagePauses: while Redis does not answer, the edge publishes no degraded decision:
// it pauses, and once Redis is back it resumes by itself and decides every event once.
func TestStoreOutagePauses(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	addr := redistest.Start(t)
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	srv := server.New(featurestore.NewRedis(client), rollout.NewHolder(decision.DefaultPolicy()),
		server.WithStoreBudget(server.Budget{Max: 20 * time.Millisecond}))
	reader := sdkmetric.NewManualReader()
	ready := func(ctx context.Context) error { _, err := srv.Ready(ctx); return err }
	runEdge(t, connect(t, url), srv, stream.WithReady(ready), stream.WithLogger(testLogger(t)), stream.WithPauseProbe(50*time.Millisecond, 200*time.Millisecond),
		stream.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))

	publish(t, js, overdue("ev-before", "cust-1"))
	waitStored(t, js, stream.StreamDecisions, 1, 20*time.Second)

	// Redis answers nothing for 3 s: the events published now wait.
	const outage = 3 * time.Second
	paused := time.Now()
	direct, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if err := direct.Do(t.Context(), "CLIENT", "PAUSE", outage.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	const during = 20
	for i := range during {
		publish(t, js, overdue(fmt.Sprintf("ev-during-%d", i), fmt.Sprintf("cust-%d", i%5)))
	}
	// While paused, the lag gauge shows the backlog waiting in the stream.
	var lag int64
	for deadline := time.Now().Add(outage - 200*time.Millisecond); time.Now().Before(deadline) && lag == 0; time.Sleep(50 * time.Millisecond) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		lag = gaugeOf(rm, "arbiter.stream.consumer.lag", "consumer", "events")
	}
	if lag == 0 {
		t.Errorf("arbiter.stream.consumer.lag{consumer=events} stayed 0 during the outage, want the backlog")
	}
	msgs := waitStored(t, js, stream.StreamDecisions, 1+during, 30*time.Second)
	if since := time.Since(paused); since < outage-200*time.Millisecond {
		t.Errorf("all decisions out %v after the outage began, before it ended (%v)", since, outage)
	}
	perEvent := map[string]int{}
	for _, m := range msgs {
		perEvent[m.Header.Get(stream.HeaderEventID)]++
		if m.Header.Get(stream.HeaderDegraded) != "" {
			t.Errorf("degraded decision published for %s", m.Header.Get(stream.HeaderEventID))
		}
	}
	for i := range during {
		if n := perEvent[fmt.Sprintf("ev-during-%d", i)]; n != 1 {
			t.Errorf("ev-during-%d: %d decisions, want 1", i, n)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if pauses := sumOf(rm, "arbiter.stream.pauses", "consumer", "events"); pauses < 1 {
		t.Errorf("arbiter.stream.pauses{consumer=events} = %d, want at least 1", pauses)
	}
	if decided := sumOf(rm, "arbiter.stream.messages", "result", "decided"); decided < 1+during {
		t.Errorf("arbiter.stream.messages{result=decided} = %d, want at least %d", decided, 1+during)
	}
}

// gaugeOf returns the int64 gauge name's point whose attribute key has value.
func gaugeOf(rm metricdata.ResourceMetrics, name, key, value string) int64 {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
				if v, ok := dp.Attributes.Value(attribute.Key(key)); ok && v.AsString() == value {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// testLogger logs to t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// sumOf adds the points of the int64 sum name whose attribute key has value.
func sumOf(rm metricdata.ResourceMetrics, name, key, value string) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value(attribute.Key(key)); ok && v.AsString() == value {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// TestSetupChecksExistingStreams: a stream of the edge's name that captures other subjects stops
// Setup with an error naming it; a second Setup over its own streams passes.
func TestSetupChecksExistingStreams(t *testing.T) {
	url := natstest.Start(t)
	nc := connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	e, err := stream.New(nc, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Setup(t.Context()); err != nil {
		t.Fatalf("first Setup: %v", err)
	}
	if err := e.Setup(t.Context()); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	if err := js.DeleteStream(t.Context(), stream.StreamDead); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream.StreamDead, Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Setup(t.Context()); err == nil || !strings.Contains(err.Error(), stream.StreamDead) {
		t.Errorf("Setup with a foreign %s = %v, want an error naming it", stream.StreamDead, err)
	}
}

// slowOnceService answers the first Decide of each event degraded, as the server does when one
// call outlives its store budget under load, and passes the others to the server.
type slowOnceService struct {
	stream.Service
	mu   sync.Mutex
	seen map[string]bool
}

func (s *slowOnceService) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	s.mu.Lock()
	first := !s.seen[req.GetEvent().GetId()]
	s.seen[req.GetEvent().GetId()] = true
	s.mu.Unlock()
	if first {
		return &arbiterv1.DecideResponse{DecisionId: "degraded-" + req.GetEvent().GetId(), Action: arbiterv1.Action_ACTION_SUPPRESS, Degraded: true}, nil
	}
	return s.Service.Decide(ctx, req)
}

// TestSlowCallRetriedWithoutPause: a degraded answer while the service says it is ready (one
// slow call, not an outage) is not published: that event is tried again and decided, and the
// consumer does not pause.
func TestSlowCallRetriedWithoutPause(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	reader := sdkmetric.NewManualReader()
	runEdge(t, connect(t, url), &slowOnceService{Service: srv, seen: map[string]bool{}},
		stream.WithReady(func(context.Context) error { return nil }), stream.WithPauseProbe(50*time.Millisecond, 50*time.Millisecond),
		stream.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	for i := range 5 {
		publish(t, js, overdue(fmt.Sprintf("ev-slow-%d", i), "cust-slow"))
	}
	msgs := waitStored(t, js, stream.StreamDecisions, 5, 20*time.Second)
	for _, m := range msgs {
		if m.Header.Get(stream.HeaderDegraded) != "" || strings.HasPrefix(m.Header.Get(stream.HeaderDecisionID), "degraded-") {
			t.Errorf("degraded decision published for %s", m.Header.Get(stream.HeaderEventID))
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := sumOf(rm, "arbiter.stream.pauses", "consumer", "events"); n != 0 {
		t.Errorf("arbiter.stream.pauses = %d, want 0: a slow call is no outage", n)
	}
	if n := sumOf(rm, "arbiter.stream.messages", "result", "retry"); n != 5 {
		t.Errorf("arbiter.stream.messages{result=retry} = %d, want 5", n)
	}
}

// TestNATSOutagePauses: when nats-server dies, the edge pauses, and once it is back (same port
// and store) the edge resumes by itself: every event published before and after the outage has
// exactly one decision.
func TestNATSOutagePauses(t *testing.T) {
	ns := natstest.StartServer(t)
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	pubConn, err := nats.Connect(ns.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pubConn.Close)
	js, err := jetstream.New(pubConn)
	if err != nil {
		t.Fatal(err)
	}
	edgeConn, err := nats.Connect(ns.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edgeConn.Close)
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	runEdge(t, edgeConn, srv, stream.WithPauseProbe(50*time.Millisecond, 200*time.Millisecond), stream.WithAckWait(2*time.Second))
	for i := range 20 {
		publish(t, js, overdue(fmt.Sprintf("ev-before-%d", i), "cust-nats"))
	}
	waitStored(t, js, stream.StreamDecisions, 20, 20*time.Second)

	ns.Kill()
	time.Sleep(500 * time.Millisecond)
	ns.Restart()
	for deadline := time.Now().Add(10 * time.Second); !pubConn.IsConnected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the publisher did not reconnect within 10s")
		}
	}
	for i := range 20 {
		publish(t, js, overdue(fmt.Sprintf("ev-after-%d", i), "cust-nats"))
	}
	msgs := waitStored(t, js, stream.StreamDecisions, 40, 30*time.Second)
	perEvent := map[string]int{}
	for _, m := range msgs {
		perEvent[m.Header.Get(stream.HeaderEventID)]++
	}
	for i := range 20 {
		for _, ev := range []string{fmt.Sprintf("ev-before-%d", i), fmt.Sprintf("ev-after-%d", i)} {
			if perEvent[ev] != 1 {
				t.Errorf("%s: %d decisions, want 1", ev, perEvent[ev])
			}
		}
	}
}

// TestJSONOut: WithJSON publishes decisions in the protobuf JSON mapping, with its Content-Type.
func TestJSONOut(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	runEdge(t, connect(t, url), srv, stream.WithJSON())
	publish(t, js, overdue("ev-json", "cust-json"))
	m := waitStored(t, js, stream.StreamDecisions, 1, 20*time.Second)[0]
	if ct := m.Header.Get(stream.HeaderContentType); ct != stream.ContentTypeJSON {
		t.Errorf("Content-Type %q, want %q", ct, stream.ContentTypeJSON)
	}
	var resp arbiterv1.DecideResponse
	if err := protojson.Unmarshal(m.Data, &resp); err != nil {
		t.Fatalf("decision body %q is not protobuf JSON: %v", m.Data, err)
	}
	if resp.GetDecisionId() != m.Header.Get(stream.HeaderDecisionID) || resp.GetReplayed() {
		t.Errorf("decision %v, want id %s, not replayed", &resp, m.Header.Get(stream.HeaderDecisionID))
	}
}

// TestTwoReplicasShareTheConsumer: two edges (two replicas' servers on one store) share the
// durable consumer: both decide events, and every event, duplicates included, comes out once.
func TestTwoReplicasShareTheConsumer(t *testing.T) {
	url := natstest.Start(t)
	js, err := jetstream.New(connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	store := featurestore.NewMemory()
	var readers []*sdkmetric.ManualReader
	for range 2 {
		reader := sdkmetric.NewManualReader()
		readers = append(readers, reader)
		srv := server.New(store, rollout.NewHolder(decision.DefaultPolicy()))
		runEdge(t, connect(t, url), srv, stream.WithWorkers(8),
			stream.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	}
	const events = 300
	for i := range events {
		req := overdue(fmt.Sprintf("ev-%d", i), fmt.Sprintf("cust-%d", i%30))
		publish(t, js, req)
		if i%10 == 0 {
			publish(t, js, req) // a producer's retry, possibly decided by the other replica
		}
	}
	waitStored(t, js, stream.StreamDecisions, events, 60*time.Second)
	time.Sleep(500 * time.Millisecond) // a late duplicate would land by now
	perEvent := map[string]int{}
	for _, m := range stored(t, js, stream.StreamDecisions) {
		perEvent[m.Header.Get(stream.HeaderEventID)]++
	}
	for i := range events {
		if n := perEvent[fmt.Sprintf("ev-%d", i)]; n != 1 {
			t.Errorf("ev-%d: %d decisions, want 1", i, n)
		}
	}
	for i, reader := range readers {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		if n := sumOf(rm, "arbiter.stream.messages", "result", "decided"); n == 0 {
			t.Errorf("replica %d decided nothing: the consumer is not shared", i)
		}
	}
}
