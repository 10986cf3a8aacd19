package decision

import (
	"time"
)

// The enumerations below mirror the arbiter.v1 protobuf enums value for value, so the server
// converts between them with a plain type conversion. Zero means unspecified.

// EventType is what happened to the customer.
type EventType uint8

// Event types.
const (
	EventUnspecified EventType = iota
	EventPaymentFailed
	EventCardExpiring
	EventInvoiceOverdue
	EventPaymentPlanMissed
	EventCheckoutAbandoned
	EventRiskyLogin
	EventFraudFlagRaised
	EventFraudFlagCleared
	EventMessageUnopened
	EventInboundContact
	eventTypeCount
)

// Network is a card network.
type Network uint8

// Card networks.
const (
	NetworkUnspecified Network = iota
	NetworkVisa
	NetworkMastercard
	NetworkAmex
	NetworkOther
)

// Initiator says who started a payment.
type Initiator uint8

// Initiators: the cardholder (CIT) or the merchant (MIT).
const (
	InitiatorUnspecified Initiator = iota
	InitiatorCustomer
	InitiatorMerchant
)

// Channel is a way to reach the customer.
type Channel uint8

// Channels.
const (
	ChannelUnspecified Channel = iota
	ChannelEmail
	ChannelSMS
	ChannelPush
	ChannelChat
	ChannelIVR
	ChannelWhatsApp
	channelCount
)

// Purpose is why a message is sent.
type Purpose uint8

// Purposes.
const (
	PurposeUnspecified Purpose = iota
	PurposeService
	PurposeCollections
	PurposeMarketing
	PurposeSecurity
	purposeCount
)

// Action is the one thing a decision tells the caller to do.
type Action uint8

// Actions.
const (
	ActionUnspecified Action = iota
	ActionRetry
	ActionMessage
	ActionEscalate
	ActionSuppress
)

// Outcome is what happened after a decision was executed.
type Outcome uint8

// Outcomes.
const (
	OutcomeUnspecified Outcome = iota
	OutcomeDelivered
	OutcomeDeliveryFailed
	OutcomeOpened
	OutcomePaid
	OutcomeRetryApproved
	OutcomeRetryDeclined
	OutcomeAgentResolved
	OutcomeComplained
	OutcomeOptedOut
)

// DeclineClass is what the engine may do after a card decline.
type DeclineClass uint8

// Decline classes, from the card-network reference table.
const (
	ClassNone    DeclineClass = iota // not a payment event
	ClassNever                       // hard stop for this credential
	ClassLater                       // soft decline: retry later within the network budget
	ClassFixData                     // retry only after the data changes
	ClassGeneric                     // retry with conservative back-off and a small cap
	ClassNoAuto                      // do not auto-retry: message or escalate
)

// Event is the fact a caller asks about. Its ID is the idempotency key.
type Event struct {
	ID         string
	Type       EventType
	OccurredAt time.Time // zero when the caller did not say
	Source     string
	Payment    *PaymentFailure // set for payment events
	Attributes map[string]string
}

// PaymentFailure describes a declined card payment.
type PaymentFailure struct {
	DeclineCode        string // ISO 8583 field 39, e.g. "51"
	Network            Network
	MerchantAdviceCode string // Mastercard MAC, e.g. "03"; empty when absent
	AmountMinor        int64
	Currency           string // ISO 4217
	Acquirer           string
	CardRef            string // network token or payment account reference
	Initiator          Initiator
	MerchantID         string
}

// Consent is the customer's answer for one channel and purpose.
type Consent struct {
	Channel Channel
	Purpose Purpose
	Granted bool
}

// Customer is what the caller knows about the customer.
type Customer struct {
	ID                string
	Timezone          string // IANA name; empty when the caller did not say
	Consents          []Consent
	PreferredChannels []Channel
	Vulnerable        bool
	Locale            string
	Segment           string
}

// State is the stored state of one customer, read in one round trip before a decision.
// Windows are the store's: messages and ledger entries of the last 30 days.
type State struct {
	// Features are the customer's stored features, decoded from JSON: bool, float64, string,
	// nil, []any or map[string]any.
	Features map[string]any
	Messages []SentMessage
	// Ledger is the customer's retry ledger; after Narrow, the part a decision reads.
	Ledger          []LedgerEntry
	Stops           []RetryStop
	FailingChannels []ChannelFailure
	// Recent are the customer's latest decisions, newest first; after Narrow, the newest
	// three (escalation contexts show them).
	Recent []DecisionSummary

	// Narrowed reports that Narrow dropped what no decision on the event reads. The counts,
	// taken first, stand in for what it dropped: the declines on any card in the 30 days
	// before the decision, and the decisions in Recent in the 24 hours before it.
	Narrowed           bool
	LedgerDeclines30d  int
	RecentDecisions24h int
}

// SentMessage is one reserved message slot.
type SentMessage struct {
	DecisionID string
	Channel    Channel
	Purpose    Purpose
	At         time.Time
}

// LedgerKind tells a decline from a granted retry in the retry ledger.
type LedgerKind uint8

// Ledger entry kinds.
const (
	LedgerDecline LedgerKind = iota + 1 // a declined attempt reported to Arbiter
	LedgerRetry                         // a RETRY answer Arbiter gave
)

// LedgerEntry is one payment attempt in the retry ledger.
type LedgerEntry struct {
	Kind        LedgerKind
	EventID     string
	CardRef     string
	MerchantID  string
	AmountMinor int64
	Currency    string
	Initiator   Initiator
	Network     Network
	At          time.Time
}

// RetryStop is a hard stop on retries for a credential, and for one merchant when MerchantID
// is set (an ended recurring sequence).
type RetryStop struct {
	CardRef    string
	MerchantID string
	Until      time.Time
	ReasonCode string
}

// ChannelFailure marks a channel as failing for the customer until a time.
type ChannelFailure struct {
	Channel Channel
	Until   time.Time
}

// DecisionSummary is a short view of a past decision.
type DecisionSummary struct {
	DecisionID  string
	EventID     string
	EventType   EventType
	Action      Action
	ReasonCodes []string
	DecidedAt   time.Time
}

// Input is everything one decision reads. The engine reads nothing else: the same Input gives
// the same Result.
type Input struct {
	Event    Event
	Customer Customer
	State    State
	Now      time.Time
	// Degraded is set when State could not be read; the engine then fails closed.
	Degraded bool
	// Explain asks for Result.Explanation.
	Explain bool
}

// Reason explains part of a decision with a stable code.
type Reason struct {
	Code    string
	Message string
	RuleID  string // policy rule id, or "guardrail:<name>"
}

// PolicyRef names the policy bundle that produced a decision.
type PolicyRef struct {
	ID      string
	Version string
	Digest  string
}

// Retry is the detail of a RETRY action.
type Retry struct {
	NotBefore time.Time
	Acquirer  string
	Attempt   int
}

// Message is the detail of a MESSAGE action.
type Message struct {
	Channel          Channel
	TemplateID       string
	Purpose          Purpose
	SendAt           time.Time
	FallbackChannels []Channel
}

// Escalate is the detail of an ESCALATE action.
type Escalate struct {
	Queue    string
	Priority int
	Context  map[string]string
}

// Suppress is the detail of a SUPPRESS action.
type Suppress struct {
	Until time.Time // zero: no particular time
}

// Result is the engine's answer: one action, its reasons, and the state changes the store must
// commit atomically with the decision record.
type Result struct {
	Action   Action
	Retry    *Retry
	Message  *Message
	Escalate *Escalate
	Suppress *Suppress
	Reasons  []Reason
	Policy   PolicyRef
	// Experiment names the experiment and arm the decision was made in, holdout included;
	// the zero value when it was made in none (docs/experiments.md).
	Experiment ExperimentArm
	// Explanation is set when Input.Explain is.
	Explanation *Explanation
	// Effects are the state changes to commit with the decision.
	Effects Effects
}

// Effects are the state changes of one decision. The store applies them atomically, after
// re-checking every check against the live state; a failed check means the state moved since
// it was read, and the caller reads again and re-decides.
type Effects struct {
	// Message is the slot to reserve for a MESSAGE action.
	Message *SentMessage
	// CapChecks must all hold (count < limit) for Message to be reserved.
	CapChecks []CapCheck
	// Ledger entries to append: the decline of a payment event, and the retry when the answer
	// is RETRY.
	Ledger []LedgerEntry
	// LedgerChecks must all hold for the ledger entries to be appended.
	LedgerChecks []LedgerCheck
	// StopChecks must all hold (no hard stop in force) for the decision to be committed: a
	// RETRY answer carries one for its credential, so a stop set by a concurrent decision
	// after State was read fails the commit.
	StopChecks []StopCheck
	// Stops to set.
	Stops []RetryStop
	// Features to set; a nil value deletes the feature. Event-driven state such as fraud_hold
	// lives here.
	Features []FeatureUpdate
}

// CapCheck is a frequency cap as a condition: fewer than Limit reserved messages matching
// Channel (ChannelUnspecified: any) and Purposes since Since.
type CapCheck struct {
	Name     string
	Channel  Channel
	Purposes PurposeSet
	Since    time.Time
	Limit    int
}

// PurposeSet is a set of purposes, as a bit mask indexed by Purpose.
type PurposeSet uint8

// Has reports whether p is in the set.
func (s PurposeSet) Has(p Purpose) bool { return s&(1<<p) != 0 }

// PurposesOf returns the set holding ps.
func PurposesOf(ps ...Purpose) PurposeSet {
	var s PurposeSet
	for _, p := range ps {
		s |= 1 << p
	}
	return s
}

// Matches reports whether m counts against the cap (ignoring time).
func (c CapCheck) Matches(m SentMessage) bool {
	return (c.Channel == ChannelUnspecified || c.Channel == m.Channel) && c.Purposes.Has(m.Purpose)
}

// Count returns how many of msgs count against the cap at or after Since.
func (c CapCheck) Count(msgs []SentMessage) int {
	n := 0
	for _, m := range msgs {
		if !m.At.Before(c.Since) && c.Matches(m) {
			n++
		}
	}
	return n
}

// LedgerCheck is a retry limit as a condition: fewer than Limit ledger entries of Kind
// matching every non-zero field since Since. AmountMinor matches when AnyAmount is false.
type LedgerCheck struct {
	Name        string
	Kind        LedgerKind
	CardRef     string
	MerchantID  string // empty: any
	AmountMinor int64
	AnyAmount   bool
	Currency    string    // empty: any
	Initiator   Initiator // unspecified: any
	Since       time.Time
	Limit       int
}

// Matches reports whether e counts against the check (ignoring time).
func (c LedgerCheck) Matches(e LedgerEntry) bool {
	return e.Kind == c.Kind && e.CardRef == c.CardRef &&
		(c.MerchantID == "" || c.MerchantID == e.MerchantID) &&
		(c.AnyAmount || c.AmountMinor == e.AmountMinor) &&
		(c.Currency == "" || c.Currency == e.Currency) &&
		(c.Initiator == InitiatorUnspecified || c.Initiator == e.Initiator)
}

// Count returns how many of entries count against the check at or after Since.
func (c LedgerCheck) Count(entries []LedgerEntry) int {
	n := 0
	for _, e := range entries {
		if !e.At.Before(c.Since) && c.Matches(e) {
			n++
		}
	}
	return n
}

// StopCheck is the retry stops as a condition: no stop in force at At on CardRef, either
// card-wide (a stop with an empty MerchantID) or for MerchantID. It fails, and the commit
// with it, when Blocks.
type StopCheck struct {
	Name       string
	CardRef    string
	MerchantID string // empty: only card-wide stops apply
	At         time.Time
}

// Blocks reports whether stops holds a stop whose Until is after At for CardRef with an empty
// MerchantID (card-wide) or with MerchantID. It is the rule the engine applies at decision
// time and the store at commit.
func (c StopCheck) Blocks(stops []RetryStop) bool {
	return c.index(stops) >= 0
}

// index returns the index of the first stop in stops that blocks, or -1.
func (c StopCheck) index(stops []RetryStop) int {
	for i := range stops {
		s := &stops[i]
		if s.CardRef == c.CardRef && (s.MerchantID == "" || s.MerchantID == c.MerchantID) && s.Until.After(c.At) {
			return i
		}
	}
	return -1
}

// FeatureUpdate sets (or, with a nil Value, deletes) one stored feature.
type FeatureUpdate struct {
	Name  string
	Value any
}

// Candidate is an action proposed by a policy rule (or required by a guardrail), on its way
// through the guardrails to arbitration.
type Candidate struct {
	RuleID   string
	Priority int // higher wins
	Order    int // position of the rule in the bundle, for the tie-break
	Action   Action

	// MESSAGE parameters.
	Channels   []Channel // in order of preference; empty: the customer's preferred channels
	TemplateID string
	Purpose    Purpose
	Delay      time.Duration

	// ESCALATE parameters.
	Queue            string
	EscalatePriority int
	Context          map[string]string

	// SUPPRESS parameters.
	SuppressFor time.Duration

	// ReasonCodes are the codes the rule contributes.
	ReasonCodes []string

	// Set by the guardrails: the resolved detail of the action, the reasons guardrails added,
	// and whether the candidate was blocked (and why).
	Retry    *Retry
	Message  *Message
	Escalate *Escalate
	Suppress *Suppress
	Reasons  []Reason
	Blocked  bool
	Why      string
}

// Explanation is the structured trace of a decision.
type Explanation struct {
	Rules        []RuleTrace
	Guardrails   []GuardrailCheck
	Candidates   []CandidateTrace
	Features     map[string]any
	Counters     []CounterValue
	DeclineClass string
	Summary      string
}

// RuleTrace is one rule the engine evaluated.
type RuleTrace struct {
	RuleID  string
	Matched bool
	Error   string
}

// GuardrailCheck is one guardrail verdict on one candidate.
type GuardrailCheck struct {
	Guardrail  string
	RuleID     string
	Verdict    string // "pass", "modify" or "block"
	ReasonCode string
	Detail     string
}

// CandidateTrace is one candidate and what became of it.
type CandidateTrace struct {
	RuleID      string
	Action      Action
	Priority    int
	Outcome     string // "won", "lost" or "blocked"
	Why         string
	Channel     Channel
	Queue       string
	ReasonCodes []string
}

// CounterValue is a frequency-cap counter as read at decision time.
type CounterValue struct {
	Name     string
	Channel  Channel
	Purposes PurposeSet
	Window   time.Duration
	Count    int
	Limit    int
}

// OutcomeEffects are the state changes of one reported outcome.
type OutcomeEffects struct {
	// ReleaseMessage frees the reserved slot of a message that was not delivered.
	ReleaseMessage *SentMessage
	// FailChannel marks a channel as failing for the customer.
	FailChannel *ChannelFailure
	// ResetLedger clears the retry ledger of a credential after an approval or payment.
	ResetLedger *LedgerReset
	// OptOut sets the customer's opted_out feature: the customer opted out in answer to the
	// contact, and no policy may message them again until the feature is cleared.
	OptOut bool
}

// LedgerReset clears the ledger entries of one credential.
type LedgerReset struct {
	CardRef string
}
