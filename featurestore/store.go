package featurestore

import (
	"errors"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// ErrNotFound is returned when a decision or customer does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps every error that means the store could not be reached or did not
// answer in time. Callers degrade on it.
var ErrUnavailable = errors.New("store unavailable")

// ErrBusy wraps, together with ErrUnavailable, a call that waited in vain for a free
// connection of the client's pool: the calling process is busy, which says nothing about the
// store's health (a circuit breaker does not count it as a failure).
var ErrBusy = errors.New("no free store connection")

// ErrCorrupt wraps errors about malformed data found in the store.
var ErrCorrupt = errors.New("malformed stored data")

// Loaded is the result of Load: the customer's state, or the stored record of an event that
// was already decided.
type Loaded struct {
	State decision.State
	// Record is the encoded arbiterv1.DecisionRecord when the event id was decided before;
	// the caller then replays it and State is empty.
	Record []byte
	// Unverified is set (WithStateMarker) when the store cannot vouch that State is the
	// customer's whole state: its marker is missing, because Redis lost its data or has not
	// seen the customer within the state window. The caller rebuilds it (Rebuild) and loads
	// again before it decides.
	Unverified bool
	// ArchivedID is set, with Record nil and State empty, when the event id was decided before
	// (decision ArchivedID) but the store no longer holds the record: it was archived and
	// dropped from the store (WithAuditDropRecords). The caller reads it from the archive.
	ArchivedID string
	// Version identifies the state read: the id of the last decision that added to the
	// customer's messages, ledger or stops, or "" when unknown. Passed back in
	// Commit.Version, it lets the commit skip re-checking caps, ledgers and stops when
	// nothing was added since. Stores that re-check cheaply leave it empty.
	Version string
}

// Commit is one decision's atomic write: the decision record, its audit entry, and the
// state changes the decision makes.
type Commit struct {
	CustomerID string
	EventID    string
	DecisionID string
	Now        time.Time
	// Record is the encoded arbiterv1.DecisionRecord.
	Record  []byte
	Summary decision.DecisionSummary
	Effects decision.Effects
	// Version is Loaded.Version of the Load this decision was made on ("" re-checks).
	Version string
}

// Committed is the result of Commit.
type Committed struct {
	// Record is set when the event id had already been decided (for example by a concurrent
	// call): nothing of this commit was applied and the caller replays Record.
	Record []byte
	// ArchivedID is set instead of Record when that decision's record was archived and
	// dropped from the store (see Loaded.ArchivedID).
	ArchivedID string
	// Conflict names the check that failed: nothing was applied; the state moved since Load,
	// and the caller loads again and re-decides.
	Conflict string
}

// OutcomeCommit is the atomic write of one reported outcome.
type OutcomeCommit struct {
	CustomerID string
	DecisionID string
	Outcome    decision.Outcome
	OccurredAt time.Time
	Now        time.Time
	Effects    decision.OutcomeEffects
	// Archived says the caller found the decision in the archive: the store no longer holds
	// its record (past the replay window), and records the outcome all the same.
	Archived bool
}

// StoredOutcome is an outcome recorded for a decision.
type StoredOutcome struct {
	Outcome    decision.Outcome
	OccurredAt time.Time
	RecordedAt time.Time
}

// ErrInvalid wraps errors about arguments the store refuses to write: empty or malformed ids,
// control characters in fields that the key schema joins, values that do not encode as JSON.
// The server validates requests first, so it means a bug in the caller.
var ErrInvalid = errors.New("invalid store argument")

// FeatureRecord is one customer's features, for PutFeaturesBatch.
type FeatureRecord struct {
	CustomerID string
	// Features are merged into the stored ones; a nil value deletes the feature.
	Features map[string]any
	// TTL, when positive, expires the customer's whole features hash; zero removes any expiry.
	TTL time.Duration
}
