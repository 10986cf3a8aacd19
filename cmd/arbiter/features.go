package main

import (
	"context"
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

func featuresHelp() help {
	return help{
		summary: "import customer features; export or erase a customer's data",
		usage:   []string{"features SUBCOMMAND [flags]"},
		examples: []string{
			"arbiter features import --file customers.jsonl --redis redis://127.0.0.1:6379",
			"arbiter features import --file customers.jsonl --addr 127.0.0.1:50051",
			"arbiter features export cust-42 > cust-42.json",
			"arbiter features erase cust-42 --reason DSR-1234",
		},
	}
}

func featuresImportHelp() help {
	return help{
		summary: "load customer features from a JSON-lines file into the store",
		usage:   []string{"features import --file FILE [--redis URL | --addr HOST:PORT] [--atomic] [flags]"},
		detail: `Each line is {"customer_id": "...", "features": {...}, "ttl": "720h"}: the features merge into the
customer's stored ones; ttl (optional) expires them, in Go syntax (90m, 720h) or whole days
(30d), as in policies. Blank lines are skipped. The features go directly into Redis with
pipelined writes (--redis), or through a running server's PutFeatures (--addr).

Every bad line is reported with its line number, and the good lines are imported; with
--atomic, nothing is imported unless every line is good (the parsed file is then held in
memory until it is all checked). Exit status 1 when a line was bad or a write failed.`,
		examples: []string{
			"arbiter features import --file customers.jsonl --redis redis://127.0.0.1:6379",
			"arbiter features import --file customers.jsonl --atomic --addr 127.0.0.1:50051 --token \"$TOKEN\"",
			"gunzip -c customers.jsonl.gz | arbiter features import --file - --redis redis://127.0.0.1:6379",
		},
	}
}

func runFeaturesImport(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// Config.
	const cmd = "arbiter features import"
	fs := newFlagSet(cmd)
	file := fs.String("file", "", `JSON lines: {"customer_id": "...", "features": {...}, "ttl": "720h"} ("-" for standard input)`)
	redisURL := fs.String("redis", "", "write directly to this Redis (redis://HOST:PORT/DB) with pipelined writes")
	addr := fs.String("addr", "127.0.0.1:50051", "without --redis: the server whose PutFeatures to call")
	connections := fs.Int("connections", 4, "with --addr: gRPC connections")
	token := fs.String("token", "", "with --addr: bearer token of a client with the admin role, when the server requires one (ARBITER_TOKEN)")
	batch := fs.Int("batch", 2000, "records per pipelined batch")
	writers := fs.Int("writers", 8, "batches parsed and written at once")
	allOrNothing := fs.Bool("atomic", false, "import nothing unless every line is good")
	ctls := clientTLSFlags(fs, env)
	pos, err := parseArgs(fs, featuresImportHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return unexpectedArgs(cmd, pos)
	case *file == "":
		return usagef(cmd, "features import: --file is required")
	case *batch < 1 || *writers < 1:
		return usagef(cmd, "features import: --batch and --writers must be at least 1")
	}

	// Input.
	in, total, name := io.Reader(stdin), int64(0), "line "
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("features import: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = st.Size()
		}
		in, name = f, *file+":"
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
	res, err := importFeatures(ctx, in, sink, importOptions{
		batch: *batch, writers: *writers, atomic: *allOrNothing,
		progress: func(records, bytes int64) { bar.update(bytes, records) },
	})
	bar.done(res.written)
	elapsed := time.Since(start)
	for _, le := range res.bad {
		fmt.Fprintf(stderr, "%s%d: %v\n", name, le.Line, le.Err)
	}
	switch {
	case *allOrNothing && len(res.bad) > 0:
		fmt.Fprintf(stdout, "imported nothing (--atomic): %d of %d lines are bad\n", len(res.bad), res.lines)
	default:
		fmt.Fprintf(stdout, "imported %d customers in %s (%.0f/s)", res.written, elapsed.Round(time.Millisecond), float64(res.written)/elapsed.Seconds())
		if len(res.bad) > 0 {
			fmt.Fprintf(stdout, "; %d of %d lines were bad and skipped", len(res.bad), res.lines)
		}
		fmt.Fprintln(stdout)
	}
	if err != nil {
		if *redisURL == "" {
			err = callError(ctx, *addr, "", err)
		}
		return fmt.Errorf("features import: %w", err)
	}
	switch n := len(res.bad); {
	case n == 1:
		return fmt.Errorf("features import: %w", &res.bad[0])
	case n > 1:
		return fmt.Errorf("features import: %d bad lines, the first %v (each is listed above)", n, &res.bad[0])
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
