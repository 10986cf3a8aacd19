// Package archive is the durable decision archive in PostgreSQL: every decision, the outcomes
// reported for it and the policy change log, kept for years (DefaultRetention, six), while
// Redis keeps only hot state. The archive answers what Redis no longer holds: Get for a
// decision past the replay window, Scan for audit exports and replays, CustomerHistory to
// rebuild a customer's caps, retry ledger and stops after Redis lost its data.
//
// The archive stores what the caller gives it: a Record's Body is the encoded
// arbiterv1.DecisionRecord, never decoded here, and the other fields are copies kept in
// columns for searching. The package imports no other arbiter package.
//
// # Schema
//
// Everything lives in schema arbiter, created by Open from the SQL files under migrations/
// (embedded in the binary), applied in order in one transaction under an advisory lock, so
// that replicas starting at once migrate once; arbiter.schema_migrations records each version.
//
//   - decisions: one row per decision, PARTITION BY RANGE (decided_at), one partition per UTC
//     day named decisions_YYYYMMDD. Primary key (decided_at, decision_id); index
//     (customer_id, decided_at).
//   - decision_ids: decision_id primary key, with decided_at. PostgreSQL cannot make
//     decision_id unique across partitions, so this table does, and tells Get which partition
//     to read.
//   - outcomes: unique (decision_id, outcome).
//   - policy_changes: bigserial id, unique change_id, kind, version, actor, at, detail jsonb.
//
// # Exactly once
//
// Append writes a batch in one transaction: it claims the batch's ids in decision_ids with
// INSERT ... ON CONFLICT DO NOTHING, then COPYs only the records it claimed into decisions.
// A batch appended twice, re-sent after a crash, or appended by two relays at once is
// archived once; a failed Append wrote nothing. A relay therefore reads a batch from its
// outbox, calls Append, and trims the outbox only after Append returned nil; on any error it
// keeps the batch and retries later.
//
// # Retention
//
// Partitions are created ahead (EnsurePartitions: today and DefaultPartitionsAhead days) and
// by Append for any day its records need. DropExpired drops whole partitions once their day
// lies entirely before now minus the retention, and deletes the matching rows of
// decision_ids and outcomes in small batches; decisions are never deleted row by row.
//
// # Errors
//
// Every error that means PostgreSQL could not be reached, timed out, or cannot take writes
// now satisfies errors.Is(err, ErrUnavailable): keep the outbox and retry. Arguments the
// archive refuses satisfy errors.Is(err, ErrInvalid); Get of an unknown id returns
// ErrNotFound.
//
// # Performance
//
// BenchmarkAppend measures batches of 500 decisions with 1.5 KB bodies; its figures, the
// archive's size per decision, and how to back up and restore the archive are in
// docs/operations.md, "The decision archive (PostgreSQL)".
package archive
