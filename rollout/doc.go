// Package rollout decides which compiled policy a running server evaluates: the Holder of the
// serving policy (swapped atomically), the Watcher that reloads a bundle from disk on change
// or SIGHUP, the Sync that follows the fleet's active version in the policy store, and the
// Shadow that evaluates a candidate version beside the serving one and counts where they
// differ. A bundle that does not compile never replaces the serving one.
package rollout

// instrumentationName names the meter of this package.
const instrumentationName = "github.com/arbiter-dev/arbiter/rollout"
