// Package storetest is the conformance suite of the feature store: one set of tests that every
// implementation (featurestore.Redis, featurestore.Memory, and later a Redis Cluster) must
// pass, so they behave the same.
//
// Use it from a test of the implementation:
//
//	func TestMemoryConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return featurestore.NewMemory() })
//	}
//
// open must return an empty store that lives until the test ends. When the store also
// implements Corrupter, the suite plants malformed data and checks that the store reports
// featurestore.ErrCorrupt instead of panicking.
package storetest

import (
	"context"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
)

// Store is the feature store's API as the suite uses it.
type Store interface {
	Load(ctx context.Context, customerID, eventID string, now time.Time) (featurestore.Loaded, error)
	LoadNarrow(ctx context.Context, customerID, eventID string, now time.Time, n featurestore.Narrowing) (featurestore.Loaded, error)
	Commit(ctx context.Context, c *featurestore.Commit) (featurestore.Committed, error)
	AppendDecision(ctx context.Context, d *featurestore.Decided) (bool, error)
	GetDecision(ctx context.Context, decisionID string) ([]byte, []featurestore.StoredOutcome, error)
	RecordOutcome(ctx context.Context, o *featurestore.OutcomeCommit) (bool, error)
	PutFeatures(ctx context.Context, customerID string, features map[string]any, ttl time.Duration) error
	PutFeaturesBatch(ctx context.Context, items []featurestore.FeatureRecord) error
	State(ctx context.Context, customerID string, now time.Time) (decision.State, error)
	Confirm(ctx context.Context, c *featurestore.Confirmation) (*featurestore.StoredConfirmation, error)
	Confirmations(ctx context.Context, decisionID string) ([]featurestore.StoredConfirmation, error)
	ScanAudit(ctx context.Context, fn func(decisionID string, record []byte) error) error
	EraseCustomer(ctx context.Context, e *featurestore.Erasure) error
	Erasures(ctx context.Context, customerID string) ([]featurestore.StoredErasure, error)
	DecisionsOf(ctx context.Context, customerID string) ([]string, error)
	ReadForConfirm(ctx context.Context, decisionID string, now time.Time) (*featurestore.ConfirmRead, error)
	Ping(ctx context.Context) error
	Close() error
}

// Corruption is a kind of malformed data a Corrupter plants.
type Corruption int

// Corruptions the suite plants. Each concerns one customer; at is the time to use as a
// member's score.
const (
	// CorruptFeatureJSON sets feature "bad" to a value that is not JSON.
	CorruptFeatureJSON Corruption = iota + 1
	// CorruptHugeFeature sets feature "huge" to a valid JSON string of 1 MiB.
	CorruptHugeFeature
	// CorruptMessageMember adds a messages-zset member with two fields instead of three.
	CorruptMessageMember
	// CorruptLedgerMember adds a ledger-zset member with an unparsable amount.
	CorruptLedgerMember
	// CorruptMessagesType replaces the messages zset with a string.
	CorruptMessagesType
	// CorruptFeaturesType replaces the features hash with a list.
	CorruptFeaturesType
	// CorruptStopValue sets a retry stop whose until is not a number.
	CorruptStopValue
)

// Corrupter is implemented by test adapters that can write raw data into the store.
type Corrupter interface {
	Corrupt(ctx context.Context, customerID string, c Corruption, at time.Time) error
}
