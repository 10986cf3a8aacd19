package featurestore

import "time"

// DefaultRetention is how long a store keeps decision records, their event ids and outcomes,
// and the audit entries that name them, unless WithRetention says otherwise.
const DefaultRetention = 30 * 24 * time.Hour

// LedgerCap is the most retry-ledger entries a customer's ledger keeps. A commit that would
// leave more drops the oldest, and stops retries of each dropped entry's card (reason
// decision.CodeLedgerFull) until the entry would have left the 30-day window: the card's
// counts are incomplete until then, so the store fails closed. Without the cap, a customer
// with an unbounded stream of declines (a card-testing attack, a looping integration) would
// make every one of their decisions slower and its record larger. A legitimate customer stays
// far below it: the card networks allow at most 35 attempts per card and amount in 30 days.
const LedgerCap = 128

// Option configures a store.
type Option func(*options)

type options struct {
	clock     func() time.Time
	retention time.Duration
	marker    bool
}

func newOptions(opts []Option) options {
	o := options{clock: time.Now, retention: defaultRetention}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithStateMarker makes the Redis store keep, per customer, a marker saying that the
// customer's state is whole (set by Rebuild, kept for the state window of 31 days), and Load
// report Loaded.Unverified while it is missing: after Redis lost its data (a restart without
// persistence, a failover to a replica that never had the customer), or for a customer Redis
// has not seen in the window. The caller then rebuilds the state from the decision archive
// with Rebuild before it decides. It costs one GET per Load. The embedded store ignores it.
func WithStateMarker() Option { return func(o *options) { o.marker = true } }

// WithClock sets the clock Memory uses to expire keys (default time.Now). Redis expires keys on
// its own clock and ignores it.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithRetention sets how long decision records, their idempotency keys and outcomes are kept
// (default 30 days), and with them the audit entries that name the records: an audit entry
// leaves its stream only once it is older than the retention, whether or not it was exported,
// so the audit trail loses nothing an exporter could still ship. Values under one second are
// ignored.
func WithRetention(d time.Duration) Option {
	return func(o *options) {
		if d >= time.Second {
			o.retention = d
		}
	}
}
