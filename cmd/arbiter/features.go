package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

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
	batch := fs.Int("batch", 1000, "records per pipelined batch")
	writers := fs.Int("writers", 4, "batches written at once")
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
		rs, closeSink, err := redisSink(*redisURL)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer closeSink()
		sink = rs
	} else {
		conns, err := loadtest.Dial(*addr, *connections)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer loadtest.CloseAll(conns)
		sink = loadtest.RPCSink(loadtest.Interfaces(conns))
	}

	// Import.
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

// checkRedisURL refuses a Redis URL that is not on loopback: the tools seed local stores only.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":6379"
	}
	return loadtest.CheckLoopback(host)
}

// redisSink returns a Sink writing to the Redis at rawURL. TODO(featurestore): wire to
// featurestore's Redis store once it lands.
func redisSink(rawURL string) (loadtest.Sink, func(), error) {
	if err := checkRedisURL(rawURL); err != nil {
		return nil, nil, err
	}
	return nil, nil, errors.New("redis store not available yet")
}
