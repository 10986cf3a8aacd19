//go:build race

package decision

// raceEnabled: under the race detector sync.Pool drops a share of what is put back, so the
// engine's pooled scratch space is allocated again at random and allocation counts vary by one.
const raceEnabled = true
