// Package breaker holds the circuit breakers of the store's shards: one Breaker per Redis
// Cluster master (or one for a single Redis), so that a dead or hung shard degrades its own
// customers' decisions in microseconds instead of a timeout, and no others. The store
// classifies its own errors (featurestore.ErrUnavailable, featurestore.ErrBusy); the breaker
// only counts them.
package breaker

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/breaker"
