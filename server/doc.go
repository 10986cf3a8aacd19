// Package server is Arbiter's gRPC service: DecisionService (Decide, RecordOutcome,
// GetDecision) and FeatureService (PutFeatures, GetCustomerState), plus the HTTP admin
// endpoints (/healthz, /readyz, /metrics and, when enabled, /debug/pprof/).
//
// Decide is a fixed pipeline:
//
//  1. validate the request (INVALID_ARGUMENT names the field);
//  2. Load the customer's state in one store round trip; an event id seen before returns the
//     stored answer with replayed set;
//  3. narrow the state to what a decision on the event reads (decision.Narrow), and
//     evaluate it under the active policy (package decision), with the server's clock;
//  4. Commit the decision record (with the narrowed state as its snapshot) and its effects
//     in one atomic store round trip; a lost idempotency race replays the winner, a conflict
//     (the state moved) loads and decides again, at most three times, then fails closed with
//     SUPPRESS and STORE_CONFLICT;
//  5. respond.
//
// When the store is unavailable Decide still answers: the engine evaluates with
// Input.Degraded set (the guardrails fail closed), the answer carries degraded and the reason
// STORE_UNAVAILABLE, and nothing is committed: the decision record is appended to the audit
// spool (Spool, fsynced) before the answer, and the spool's drain (RunSpoolDrain) puts it into
// the store's audit trail once the store is back. Without a spool the store is asked to take
// the record itself (the embedded store can). A degraded decision that cannot be recorded is
// answered UNAVAILABLE. With WithBreakers, a circuit
// breaker per store shard (per Redis Cluster master) makes a dead shard degrade its own
// customers' decisions at once, and no others. With options.dry_run the pipeline stops after
// evaluation: nothing is reserved or recorded. A dry run always evaluates afresh: for an event
// id already decided it reads the customer's current state (which holds that decision's
// effects) and names the stored decision in prior_decision_id, where a real call would replay it.
//
// Errors become gRPC statuses in one place (toStatus); status messages name fields, never
// customer data. Logs are structured (log/slog) and hold ids and codes only.
package server
