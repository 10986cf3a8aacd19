package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/auditfile"
	"github.com/arbiter-dev/arbiter/featurestore"
)

func auditHelp() help {
	return help{
		summary: "export the audit trail from Redis to a JSON-lines file",
		usage:   []string{"audit SUBCOMMAND [flags]"},
		examples: []string{
			"arbiter audit export --to audit.jsonl --redis redis://127.0.0.1:6379",
		},
	}
}

func auditExportHelp() help {
	return help{
		summary: "append every recorded decision of the audit trail to a JSON-lines file",
		usage: []string{"audit export --to FILE.jsonl --redis URL [--group NAME] [--follow] [flags]",
			"audit export --to FILE.jsonl --archive POSTGRES_URL [--since TIME] [--until TIME]"},
		detail: `Reads every bucket's audit stream with a consumer group and appends one JSON line per
decision (an arbiter.v1.DecisionRecord in protobuf JSON), skipping decisions already in the
file. Entries are acknowledged only after the file is synced, so an export that is killed
loses nothing and the next run resumes where it stopped. Without --follow it exits once every
record is exported.

With --archive, the records come from the decision archive in PostgreSQL instead (the system
of record when serve runs with --archive; Redis then keeps records only for the replay
window), in decision time order, between --since and --until.`,
		examples: []string{
			"arbiter audit export --to audit.jsonl --redis redis://127.0.0.1:6379",
			"arbiter audit export --to audit.jsonl --redis redis+cluster://10.0.0.1:7000,10.0.0.2:7000 --follow",
			"ARBITER_REDIS=redis://127.0.0.1:6379 arbiter audit export --to audit.jsonl --retention 168h",
			"arbiter audit export --to 2026-11.jsonl --archive postgres://arbiter@db:5432/arbiter --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z",
		},
	}
}

// runAuditExport reads every bucket's audit stream with a consumer group and appends one JSON
// line per decision to the file (the protojson form of arbiterv1.DecisionRecord), skipping
// decisions already in it. Entries are acknowledged only after the file is synced, so an
// export that is killed loses nothing and the next run resumes where it stopped.
func runAuditExport(ctx context.Context, args []string, env func(string) string, _ io.Reader, stdout, stderr io.Writer) error {
	// Config.
	const cmd = "arbiter audit export"
	fs := newFlagSet(cmd)
	to := fs.String("to", "", "the JSON-lines file to append to (created if missing; decisions already in it are skipped)")
	redisURL := fs.String("redis", "", "the Redis holding the audit trail: redis://HOST:PORT, or a cluster as redis+cluster://H1:P1,H2:P2")
	group := fs.String("group", featurestore.DefaultAuditGroup, "consumer group: each group receives every record once it acknowledges it")
	consumer := fs.String("consumer", featurestore.DefaultAuditConsumer, "consumer name within the group")
	follow := fs.Bool("follow", false, "keep exporting new records until interrupted, instead of exiting when all are exported")
	poll := fs.Duration("poll", featurestore.DefaultAuditPoll, "with --follow: wait between passes that found nothing")
	retention := fs.Duration("retention", 0, "remove exported entries older than this from the audit streams (0: keep them until they are older than the record retention of serve)")
	batch := fs.Int("batch", featurestore.DefaultAuditBatch, "records read per bucket stream per round trip")
	archiveDSN := fs.String("archive", "", "read the records from this decision archive (PostgreSQL URL) instead of Redis")
	since := fs.String("since", "", "with --archive: the first decision time to export (RFC 3339; default: the archive's beginning)")
	until := fs.String("until", "", "with --archive: the decision time to stop before (RFC 3339; default: now)")
	pos, err := parseArgs(fs, auditExportHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return unexpectedArgs(cmd, pos)
	case *to == "":
		return usagef(cmd, "audit export: --to is required")
	case *archiveDSN != "":
		from, to2, err := exportWindow(*since, *until)
		if err != nil {
			return usagef(cmd, "audit export: %v", err)
		}
		return exportArchive(ctx, *archiveDSN, *to, from, to2, stdout)
	case *redisURL == "":
		return usagef(cmd, "audit export: --redis (or ARBITER_REDIS) is required: the audit trail lives in Redis")
	case *retention < 0:
		return usagef(cmd, "audit export: --retention must not be negative")
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
	fmt.Fprintf(stdout, "audit export: %d new records written to %s (%d in the file before, %d deliveries, %d duplicates skipped, %d lost, %d expired, %d erased, %d trimmed)\n",
		sink.Len()-before, *to, before, st.Delivered, sink.Duplicates, st.Lost, st.Expired, st.Erased, st.Trimmed)
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

// exportWindow parses --since and --until: the archive's beginning and now by default.
func exportWindow(since, until string) (from, to time.Time, err error) {
	from, to = time.Unix(0, 0).UTC(), time.Now().UTC()
	if since != "" {
		if from, err = time.Parse(time.RFC3339, since); err != nil {
			return from, to, fmt.Errorf("--since %q: want an RFC 3339 time such as 2026-11-01T00:00:00Z", since)
		}
	}
	if until != "" {
		if to, err = time.Parse(time.RFC3339, until); err != nil {
			return from, to, fmt.Errorf("--until %q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", until)
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("--since %v is not before --until %v", from, to)
	}
	return from, to, nil
}

// exportArchive appends the archive's decisions decided in [from, to) to the file, in decision
// time order, skipping those already in it; batches of 500 are synced as they go.
func exportArchive(ctx context.Context, dsn, file string, from, to time.Time, stdout io.Writer) error {
	a, err := archive.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("audit export: archive %s: %w", redactDSN(dsn), err)
	}
	defer a.Close()
	sink, err := auditfile.OpenJSONLSink(file)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	defer sink.Close()
	before := sink.Len()
	batch := make([]featurestore.AuditEntry, 0, 500)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := sink.WriteAudit(ctx, batch)
		batch = batch[:0]
		return err
	}
	err = a.Scan(ctx, from, to, func(r archive.Record) error {
		batch = append(batch, featurestore.AuditEntry{DecisionID: r.DecisionID, Record: r.Body})
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	fmt.Fprintf(stdout, "audit export: %d new records written to %s from the archive (%d in the file before, %d duplicates skipped)\n",
		sink.Len()-before, file, before, sink.Duplicates)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	return nil
}
