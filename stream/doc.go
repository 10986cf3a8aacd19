// Package stream is Arbiter's streaming edge on NATS JetStream: events in, decisions,
// revocations and dead letters out, outcomes in.
//
// An Edge consumes DecideRequest messages from arbiter.events.> with a durable pull consumer
// and decides each through the DecisionService implementation itself, in process (Service):
// the same validation, idempotency by event id and guardrails as the Decide RPC. Each
// decision is published to arbiter.decisions.<action> with the decision id as its Nats-Msg-Id,
// so JetStream's deduplication keeps one copy per decision within the duplicate window; the
// event is acknowledged only after the decision was committed and its publication
// acknowledged. A consumer killed at any point redelivers its unacknowledged events, which
// replay their committed decisions (same decision id, dropped as duplicates): at least once
// in, exactly once out per decision id.
//
// A decision whose reasons stop the customer's sequence (an opt-out, a fraud flag: see
// DefaultRevokeCodes) is followed by a Revocation on arbiter.revocations.<customer>; Revoke is
// the hook for other callers (the Confirm RPC). RecordOutcomeRequest messages on
// arbiter.outcomes.> are recorded through the service as RecordOutcome calls.
//
// A message that can never be decided (it does not decode, a field is invalid, it holds a card
// number) is published to arbiter.dead.<reason> with the error and acknowledged, so one bad
// message never blocks a stream. A store outage (the service unavailable, or a degraded
// decision, which the stream does not publish unless WithDegraded) pauses consumption: the
// edge stops pulling, hands its buffered messages back, and probes the service until it is
// ready again. Backpressure is JetStream's MaxAckPending.
//
// docs/streams.md describes the subjects, headers and guarantees for operators.
package stream
