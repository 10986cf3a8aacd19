package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/arbiter-dev/arbiter/auditfile"
	"github.com/arbiter-dev/arbiter/featurestore"
)

// runAudit is the "audit" command. Its one subcommand, export, ships the audit trail from
// Redis to a JSON-lines file.
func runAudit(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprintln(stderr, "usage: arbiter audit export --to FILE.jsonl [--redis URL] [--group NAME] [--follow]")
		return errors.New("audit: want the subcommand export")
	}
	return runAuditExport(ctx, args[1:], env, stdout, stderr)
}

// runAuditExport reads every bucket's audit stream with a consumer group and appends one JSON
// line per decision to the file (the protojson form of arbiterv1.DecisionRecord), skipping
// decisions already in it. Entries are acknowledged only after the file is synced, so an
// export that is killed loses nothing and the next run resumes where it stopped.
func runAuditExport(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	// Config.
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the JSON-lines file to append to (created if missing; decisions already in it are skipped)")
	redisURL := fs.String("redis", "", "the Redis holding the audit trail: redis://HOST:PORT, or a cluster as redis+cluster://H1:P1,H2:P2")
	group := fs.String("group", featurestore.DefaultAuditGroup, "consumer group: each group receives every record once it acknowledges it")
	consumer := fs.String("consumer", featurestore.DefaultAuditConsumer, "consumer name within the group")
	follow := fs.Bool("follow", false, "keep exporting new records until interrupted, instead of exiting when all are exported")
	poll := fs.Duration("poll", featurestore.DefaultAuditPoll, "with --follow: wait between passes that found nothing")
	retention := fs.Duration("retention", 0, "remove exported entries older than this from the audit streams (0: keep them until they are older than the record retention of serve)")
	batch := fs.Int("batch", featurestore.DefaultAuditBatch, "records read per bucket stream per round trip")
	if err := parseToolFlags(fs, args, env); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("audit export: --to is required")
	}
	if *redisURL == "" {
		return errors.New("audit export: --redis (or ARBITER_REDIS) is required: the audit trail lives in Redis")
	}
	if *retention < 0 {
		return errors.New("audit export: --retention must not be negative")
	}

	// Store.
	client, err := featurestore.Dial(*redisURL)
	if err != nil {
		return fmt.Errorf("audit export: %w", redactError(err, urlPassword(*redisURL)))
	}
	defer client.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = client.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("audit export: redis: %w", err)
	}

	// Sink.
	sink, err := auditfile.OpenJSONLSink(*to)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	defer sink.Close()
	before := sink.Len()

	// Export.
	exp := featurestore.NewAuditExporter(client, sink,
		featurestore.WithAuditGroup(*group), featurestore.WithAuditConsumer(*consumer),
		featurestore.WithAuditPoll(*poll), featurestore.WithAuditRetention(*retention),
		featurestore.WithAuditBatch(*batch))
	var st featurestore.AuditStats
	if *follow {
		st, err = exp.Run(ctx)
	} else {
		st, err = exp.Drain(ctx)
	}
	fmt.Fprintf(stdout, "audit export: %d new records written to %s (%d in the file before, %d deliveries, %d duplicates skipped, %d lost, %d expired, %d trimmed)\n",
		sink.Len()-before, *to, before, st.Delivered, sink.Duplicates, st.Lost, st.Expired, st.Trimmed)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if st.Lost > 0 {
		fmt.Fprintf(stderr, "audit export: warning: %d records were trimmed from Redis before they were exported; export more often or raise the stream cap\n", st.Lost)
	}
	if st.Expired > 0 {
		fmt.Fprintf(stderr, "audit export: warning: %d decision records expired (serve --record-retention) before they were exported; export more often or keep records longer\n", st.Expired)
	}
	return nil
}
