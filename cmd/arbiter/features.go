package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/loadtest"
)

// runFeatures is the "features" command. Its one subcommand, import, loads customer features
// from a JSON-lines file into the store: directly into Redis with pipelined writes (--redis) or
// through a running server's PutFeatures (--addr).
func runFeatures(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(stderr, "usage: arbiter features import --file customers.jsonl [--redis redis://HOST:PORT | --addr HOST:PORT]")
		return errors.New("features: want the subcommand import")
	}
	return runFeaturesImport(ctx, args[1:], env, stdin, stdout, stderr)
}

func runFeaturesImport(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// Config.
	fs := flag.NewFlagSet("features import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", `JSON lines: {"customer_id": "...", "features": {...}, "ttl": "720h"} ("-" for standard input)`)
	redisURL := fs.String("redis", "", "write directly to this Redis (redis://HOST:PORT/DB) with pipelined writes")
	addr := fs.String("addr", "127.0.0.1:50051", "without --redis: the server whose PutFeatures to call")
	connections := fs.Int("connections", 4, "with --addr: gRPC connections")
	token := fs.String("token", "", "with --addr: bearer token of a client with the admin role, when the server requires one (ARBITER_TOKEN)")
	batch := fs.Int("batch", 2000, "records per pipelined batch")
	writers := fs.Int("writers", 8, "batches parsed and written at once")
	ctls := clientTLSFlags(fs, env)
	if err := parseToolFlags(fs, args, env); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("features import: --file is required")
	}

	// Input.
	in, total := io.Reader(stdin), int64(0)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		in = f
	}

	// Store.
	var sink loadtest.Sink
	if *redisURL != "" {
		rs, closeSink, err := redisSink(ctx, *redisURL)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer closeSink()
		sink = rs
	} else {
		creds, err := ctls.credentials()
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		conns, err := loadtest.Dial(*addr, *connections, *token, creds)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer loadtest.CloseAll(conns)
		sink = loadtest.RPCSink(loadtest.Interfaces(conns))
	}

	// Import. Parsing allocates a lot of short-lived garbage: a batch tool can trade memory
	// (about 120 MiB for the default batches) for less GC work.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	bar := newProgressBar(stderr, "import", total, isTerminal(stderr))
	start := time.Now()
	n, err := loadtest.Import(ctx, in, sink, loadtest.SeedOptions{
		Batch: *batch, Writers: *writers,
		Progress: func(records, bytes int64) { bar.update(bytes, records) },
	})
	bar.done(n)
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "imported %d customers in %s (%.0f/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	if err != nil {
		return fmt.Errorf("features import: %w", err)
	}
	return nil
}

// checkRedisURL refuses a Redis address (any form featurestore.Dial takes) that is not on
// loopback: the tools seed local stores only.
func checkRedisURL(raw string) error {
	hosts := raw
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest = rest[i+1:]
		}
		hosts, _, _ = strings.Cut(rest, "/")
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, _, err := net.SplitHostPort(h); err != nil {
			h += ":6379"
		}
		if err := loadtest.CheckLoopback(h); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	return nil
}

// featureStoreSink writes batches with the Redis store's pipelined PutFeaturesBatch.
type featureStoreSink struct{ store *featurestore.Redis }

func (s featureStoreSink) WriteBatch(ctx context.Context, recs []loadtest.FeatureRecord) error {
	items := make([]featurestore.FeatureRecord, len(recs))
	for i, r := range recs {
		items[i] = featurestore.FeatureRecord{CustomerID: r.CustomerID, Features: r.Features, TTL: r.TTL}
	}
	return s.store.PutFeaturesBatch(ctx, items)
}

// redisSink returns a Sink writing directly to the Redis at rawURL with pipelined writes, and
// the function that closes it. It checks that Redis answers first.
func redisSink(ctx context.Context, rawURL string) (loadtest.Sink, func(), error) {
	if err := checkRedisURL(rawURL); err != nil {
		return nil, nil, err
	}
	client, err := featurestore.Dial(rawURL)
	if err != nil {
		return nil, nil, redactError(err, urlPassword(rawURL))
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("redis %s: %w", redactURL(rawURL), err)
	}
	store := featurestore.NewRedis(client)
	return featureStoreSink{store: store}, func() { _ = store.Close() }, nil
}
