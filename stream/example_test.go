package stream_test

import (
	"context"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
	"github.com/arbiter-dev/arbiter/stream"
)

// The streaming edge decides events through the server in process: create the server as for
// the RPC, hand it to New, create or check the streams, and run until the context ends. It
// needs a nats-server with JetStream (nats-server -js), so this example is not run.
func Example() {
	ctx := context.Background()
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()))
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	edge, err := stream.New(nc, srv,
		stream.WithReady(func(ctx context.Context) error { _, err := srv.Ready(ctx); return err }))
	if err != nil {
		log.Fatal(err)
	}
	if err := edge.Setup(ctx); err != nil {
		log.Fatal(err)
	}
	// Events published to arbiter.events.> come out as decisions on arbiter.decisions.<action>.
	if err := edge.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
