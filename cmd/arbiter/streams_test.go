package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/loadtest"
	"github.com/arbiter-dev/arbiter/stream"
	"github.com/arbiter-dev/arbiter/stream/natstest"
)

// TestStreamKilledMidBatch publishes events to an "arbiter serve --nats" process on Redis,
// kills it with SIGKILL while it is deciding them, starts it again, and checks that every
// event came out as exactly one decision: those decided and committed but not published or
// not acknowledged before the kill are redelivered, replay their committed decision, and
// JetStream drops the second copy by its Nats-Msg-Id.
func TestStreamKilledMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	natsURL := natstest.Start(t)
	redisURL := "redis://" + redistest.Start(t)
	const ackWait = 2 * time.Second
	srv, conn := startServeProcess(t, redisURL, "--nats", natsURL, "--nats-ack-wait", ackWait.String(), "--store-budget", "2s")
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	const events = 1500
	zone := daytimeZone(t, time.Now())
	for i := range events {
		req := &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: fmt.Sprintf("kill-ev-%d", i), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
			Customer: &arbiterv1.Customer{Id: fmt.Sprintf("kill-cust-%d", i%100), Timezone: zone,
				Consents: []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
		}
		data, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync("arbiter.events.billing", data); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("events not all published within 20s")
	}

	decisions := func() int {
		s, err := js.Stream(t.Context(), stream.StreamDecisions)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return int(info.State.Msgs)
	}
	deadline := time.Now().Add(30 * time.Second)
	for decisions() < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("%d decisions out after 30s, want 100 before the kill; log:\n%s", decisions(), srv.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.kill()
	atKill := decisions()
	if atKill >= events {
		t.Fatalf("all %d events decided before the kill: nothing to test", events)
	}

	srv.start(healthpb.NewHealthClient(conn))
	deadline = time.Now().Add(90 * time.Second)
	for decisions() < events {
		if time.Now().After(deadline) {
			t.Fatalf("%d decisions out 90s after the restart, want %d; log:\n%s", decisions(), events, srv.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(ackWait + time.Second) // a late redelivery would publish by now

	s, err := js.Stream(t.Context(), stream.StreamDecisions)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	perEvent := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		perEvent[m.Header.Get(stream.HeaderEventID)]++
		if !strings.HasPrefix(m.Subject, "arbiter.decisions.") {
			t.Errorf("decision on %s", m.Subject)
		}
	}
	for i := range events {
		if n := perEvent[fmt.Sprintf("kill-ev-%d", i)]; n != 1 {
			t.Errorf("event kill-ev-%d: %d decisions out, want exactly 1", i, n)
		}
	}
	if int(info.State.Msgs) != events {
		t.Errorf("%d decisions out for %d events, want %d", info.State.Msgs, events, events)
	}
	t.Logf("%d of %d decisions out at the SIGKILL; %d after the restart", atKill, events, info.State.Msgs)
}

// TestLoadtestViaNATS runs "arbiter loadtest --via nats" against "arbiter serve --nats": every
// event published comes back as a decision (duplicated event ids included, whose replayed
// decision JetStream drops but core subscribers still see), and the report says the path.
func TestLoadtestViaNATS(t *testing.T) {
	natsURL := natstest.Start(t)
	grpcAddr, _, stop, logs := startServe(t, "--nats", natsURL)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"loadtest", "--addr", grpcAddr, "--via", "nats", "--nats", natsURL,
		"--rate", "200", "--duration", "1s", "--warmup", "200ms", "--customers", "50", "--duplicates", "0.1",
		"--deadline", "5s", "--out", dir}, noEnv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("arbiter loadtest --via nats: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	rep, err := loadtest.ReadReportFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Via != "nats" || rep.Decide.Name != "decide via nats" {
		t.Errorf("report via %q, run %q; want nats, decide via nats", rep.Via, rep.Decide.Name)
	}
	if rep.Decide.Completed != 200 || rep.Decide.ErrorCount != 0 {
		t.Errorf("report decide: completed %d, errors %d %v; want 200 without errors", rep.Decide.Completed, rep.Decide.ErrorCount, rep.Decide.Errors)
	}
	var actions int64
	for _, n := range rep.Decide.Actions {
		actions += n
	}
	if actions != 200 {
		t.Errorf("report actions %v, want 200 in all", rep.Decide.Actions)
	}
	// The edge stops with the server, cleanly.
	if err := stop(); err != nil {
		t.Errorf("arbiter serve --nats stopped with %v; log:\n%s", err, logs)
	}
}

// TestLoadtestViaRefusals: --via names a path; --via nats does not mix with the gRPC-only modes.
func TestLoadtestViaRefusals(t *testing.T) {
	for _, args := range [][]string{
		{"loadtest", "--via", "kafka"},
		{"loadtest", "--via", "nats", "--baseline"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), args, noEnv, nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "--via") {
			t.Errorf("run %v = %v, want a usage error naming --via", args, err)
		}
	}
}
