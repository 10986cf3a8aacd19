package featurestore

import "time"

// Store defaults (see WithRetention and WithAuditMaxLen).
const (
	DefaultRetention   = 30 * 24 * time.Hour
	DefaultAuditMaxLen = 10000
)

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
	clock       func() time.Time
	retention   time.Duration
	auditMaxLen int64
}

func newOptions(opts []Option) options {
	o := options{clock: time.Now, retention: defaultRetention, auditMaxLen: defaultAuditLen}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

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
// (default 30 days). Values under one second are ignored.
func WithRetention(d time.Duration) Option {
	return func(o *options) {
		if d >= time.Second {
			o.retention = d
		}
	}
}

// WithAuditMaxLen caps the length of each bucket's audit stream (default 10,000 entries per
// bucket, 256 buckets). Redis trims approximately (MAXLEN ~), so a stream may hold a little
// more; Memory trims exactly. The audit exporter must keep up with the cap. Values under 1 are
// ignored.
func WithAuditMaxLen(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.auditMaxLen = int64(n)
		}
	}
}
