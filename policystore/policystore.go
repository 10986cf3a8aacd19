package policystore

import (
	"errors"
	"sort"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// ErrNotFound is returned when a policy version does not exist.
var ErrNotFound = errors.New("policy version not found")

// ErrUnavailable wraps every error that means the policy store could not be reached or did not
// answer in time.
var ErrUnavailable = errors.New("policy store unavailable")

// ErrCorrupt wraps errors about malformed policy data found in the store.
var ErrCorrupt = errors.New("malformed stored policy data")

// ErrVersionExists is returned when a version is published again with different content.
var ErrVersionExists = errors.New("policy version already published with different content")

// ErrAlreadyActive is returned when the version to activate is already the active one.
var ErrAlreadyActive = errors.New("policy version already active")

// ErrNoPrevious is returned by a rollback when no version was active before the current one.
var ErrNoPrevious = errors.New("no previously active policy version")

// Stored limits.
const (
	// activationHistory is how many activations a rollback can walk back.
	activationHistory = 100
	// ShadowSamplesKept is how many differing shadow decisions the store keeps per shadow run.
	ShadowSamplesKept = 20
	// shadowTTL is how long shadow counters live after their last update.
	shadowTTL = 7 * 24 * time.Hour
	// defaultChangeLimit is the number of changes PolicyChanges returns for limit <= 0.
	defaultChangeLimit = 100
)

// PolicyVersion is the metadata of one published policy version.
type PolicyVersion struct {
	ID        string // the bundle's policy id
	Version   string // the bundle's version, unique in the store
	Digest    string // content digest computed when the bundle was compiled
	Author    string // client identity of the publisher
	CreatedAt time.Time
	Comment   string
	TestCases int // the bundle's own test cases that passed at publication
}

// Bundle is a published version with its files, by relative path.
type Bundle struct {
	PolicyVersion
	Files map[string][]byte
}

// ChangeKind is what a change to the policy configuration did.
type ChangeKind string

// Change kinds, as stored.
const (
	ChangePublish  ChangeKind = "publish"
	ChangeActivate ChangeKind = "activate"
	ChangeRollback ChangeKind = "rollback"
	ChangeShadow   ChangeKind = "shadow"
	ChangeApprove  ChangeKind = "approve"
)

// Change is one entry of the append-only change log.
type Change struct {
	// ID identifies the change in the log; the store assigns it. It is opaque: the log's order
	// is the order PolicyChanges returns.
	ID      string
	Kind    ChangeKind
	Actor   string // client identity
	At      time.Time
	From    string // version active (or in shadow) before the change; empty for none
	To      string // version active, in shadow or published after it; empty for none
	Comment string
	// ShadowShare is the share of traffic of a shadow change, 0 to 1.
	ShadowShare float64
}

// ShadowConfig is the candidate version evaluated in shadow. The zero value means no shadow.
type ShadowConfig struct {
	Version string
	Share   float64
	// Epoch is the id of the change that set the shadow: counters are kept per epoch, so a new
	// shadow run starts from zero and late counts of an old run are dropped.
	Epoch string
	Since time.Time
}

// ActionPair is the active and shadow action of one decision.
type ActionPair struct {
	Active, Shadow decision.Action
}

// ShadowCounts are the aggregated differences of a shadow run.
type ShadowCounts struct {
	Evaluated int64 // decisions evaluated under both versions
	Different int64 // decisions whose action or reason codes differ
	Errors    int64 // shadow evaluations that failed
	// Actions counts differing decisions by active and shadow action (equal pairs too, when
	// only the reasons differ).
	Actions map[ActionPair]int64
	// ReasonsAdded counts decisions where the shadow version gave a code the active one did not.
	ReasonsAdded map[string]int64
	// ReasonsRemoved counts decisions where the active version gave a code the shadow one did not.
	ReasonsRemoved map[string]int64
}

// IsZero reports whether c counts nothing.
func (c *ShadowCounts) IsZero() bool {
	return c.Evaluated == 0 && c.Different == 0 && c.Errors == 0 &&
		len(c.Actions) == 0 && len(c.ReasonsAdded) == 0 && len(c.ReasonsRemoved) == 0
}

// Add adds o to c.
func (c *ShadowCounts) Add(o ShadowCounts) {
	c.Evaluated += o.Evaluated
	c.Different += o.Different
	c.Errors += o.Errors
	for k, v := range o.Actions {
		if c.Actions == nil {
			c.Actions = make(map[ActionPair]int64)
		}
		c.Actions[k] += v
	}
	c.ReasonsAdded = addCounts(c.ReasonsAdded, o.ReasonsAdded)
	c.ReasonsRemoved = addCounts(c.ReasonsRemoved, o.ReasonsRemoved)
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	for k, v := range src {
		if dst == nil {
			dst = make(map[string]int64, len(src))
		}
		dst[k] += v
	}
	return dst
}

// ShadowSample is one decision the active and shadow versions answered differently. It holds
// ids and codes only, never customer data.
type ShadowSample struct {
	EventID       string
	EventType     decision.EventType
	ActiveAction  decision.Action
	ActiveReasons []string
	ShadowAction  decision.Action
	ShadowReasons []string
	// ChangedFields names what differs in the whole action ("action", or for the same action
	// "channel", "template", "send_at", "queue", "priority", "acquirer", "not_before").
	ChangedFields []string
	At            time.Time
}

// ShadowReport is a shadow run as stored: its configuration, counts and newest samples first.
type ShadowReport struct {
	Config  ShadowConfig
	Counts  ShadowCounts
	Samples []ShadowSample
}

// sortVersions orders versions newest first, then by version for a stable order.
func sortVersions(vs []PolicyVersion) {
	sort.Slice(vs, func(i, j int) bool {
		if !vs[i].CreatedAt.Equal(vs[j].CreatedAt) {
			return vs[i].CreatedAt.After(vs[j].CreatedAt)
		}
		return vs[i].Version > vs[j].Version
	})
}
