// Package featurestore holds every customer's state: features, reserved message slots, the
// retry ledger, retry stops, failing channels, recent decisions, and the decision records with
// their outcomes and audit trail. It holds no policy state (package policystore) and imports
// no generated API code: records are bytes to it.
//
// There are two implementations with the same behaviour, proved by one conformance suite
// (package storetest): Redis, over a go-redis UniversalClient (a single node or a Redis
// Cluster), and Memory, an embedded in-process store used when no Redis is configured.
//
// The store is a small, generic executor and knows no business rule. Load reads a customer's
// state in one round trip (on Redis a MULTI/EXEC of plain reads: a consistent snapshot) and
// returns its version. Commit applies a decision's effects in one round trip and one atomic
// step (a Lua script) after re-checking the decision's cap, ledger and stop checks against the
// live state, unless the version shows that nothing was added since the Load, and is
// idempotent per event id: a repeat, also a concurrent one, applies nothing and returns the
// stored record.
//
// # Key schema and hash tags
//
// Every key is built by one function (see keys.go). All keys carry the hash tag of a bucket,
// "{b:XX}" with XX = fnv-1a-32(customer_id) % 256 in lowercase hex, not of the customer id:
// the audit trail is one stream per bucket, "{b:XX}:audit", and a decision's audit entry must
// be written by the same atomic script as the decision itself, so the stream must share the
// customer's slot. With 256 buckets the load spreads over a cluster's nodes while each script
// touches one slot. Decision ids embed the bucket ("XX-<uuidv7>"), so GetDecision finds the
// slot from the id alone. In keys, '%' and ':' of a customer id are percent-encoded, so a
// customer id cannot reach into another customer's keys.
//
// # Expiry
//
// Reserved-message and ledger zsets are trimmed to the last 31 days on every write and expire
// 31 days after the last write (Load returns the last 30 days). Stops and failing-channel
// hashes expire after their latest until; the recent-decisions list after 90 days; decision
// records, idempotency keys and outcomes after the retention (WithRetention, default 30
// days). Features expire only when PutFeatures is given a TTL.
//
// # Errors
//
// The store classifies its own errors, so that callers need no Redis types. Every
// connectivity failure, timeout or context deadline satisfies errors.Is(err, ErrUnavailable),
// and callers degrade on it; a wait in vain for a pooled connection satisfies ErrBusy too. Stored values are untrusted:
// malformed data (wrong key types, unparsable or huge values) satisfies
// errors.Is(err, ErrCorrupt) and never panics. Arguments the store cannot write satisfy
// errors.Is(err, ErrInvalid).
package featurestore
