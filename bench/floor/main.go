// Command floor serves arbiter.v1.DecisionService/Decide with the work taken out: each call
// makes the two Redis round trips of a real Decide (a MULTI/EXEC of one GET on the customer's
// key, then an EVALSHA of a script that returns at once) through a client dialled as
// `arbiter serve --redis` dials it, and answers a fixed SUPPRESS. Driven by `arbiter
// loadtest --skip-seed`, the CPU it and Redis use per call is the floor of any Decide that
// reads its customer's state and commits its effects in two round trips over gRPC, on that
// machine, whatever its commands. SIGUSR1 prints the calls answered and the bytes allocated
// so far (docs/perf-log/2026-12.md, "the design's floor").
//
//	go run ./bench/floor --redis redis://127.0.0.1:6379 --grpc-addr 127.0.0.1:50051
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// noop stands for the commit script: one EVALSHA, no work.
var noop = redis.NewScript(`return {0}`)

type floor struct {
	arbiterv1.UnimplementedDecisionServiceServer
	client redis.UniversalClient
	calls  atomic.Int64
}

func (f *floor) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	cust := req.GetCustomer().GetId()
	if cust == "" {
		return nil, status.Error(codes.InvalidArgument, "customer.id is required")
	}
	k := "{" + cust + "}:v"
	if _, err := f.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, k)
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err := noop.EvalSha(ctx, f.client, []string{k}).Err(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	f.calls.Add(1)
	return &arbiterv1.DecideResponse{
		DecisionId: req.GetEvent().GetId(),
		Action:     arbiterv1.Action_ACTION_SUPPRESS,
		Reasons:    []*arbiterv1.Reason{{Code: "FLOOR"}},
	}, nil
}

func main() {
	redisURL := flag.String("redis", "redis://127.0.0.1:6379", "Redis URL, as arbiter serve --redis")
	addr := flag.String("grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	flag.Parse()
	client, err := featurestore.Dial(*redisURL)
	if err != nil {
		log.Fatal(err)
	}
	if err := noop.Load(context.Background(), client).Err(); err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	f := &floor{client: client}
	arbiterv1.RegisterDecisionServiceServer(s, f)
	// SIGUSR1 prints the calls answered and the bytes allocated so far: two readings give the
	// bytes allocated per call between them.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Printf("calls=%d alloc_bytes=%d\n", f.calls.Load(), m.TotalAlloc)
		}
	}()
	healthpb.RegisterHealthServer(s, health.NewServer()) // arbiter loadtest waits for SERVING
	log.Fatal(s.Serve(lis))
}
