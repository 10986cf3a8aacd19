package rollout

import (
	"sync/atomic"

	"github.com/arbiter-dev/arbiter/decision"
)

// Holder holds the active compiled policy and swaps it atomically: a request loads the
// policy once and uses that one to the end, while a reload stores a new one for the next
// requests. The zero value holds no policy; it is safe for concurrent use.
type Holder struct {
	p atomic.Pointer[decision.Policy]
}

// NewHolder returns a holder of p (which may be nil: no policy loaded yet).
func NewHolder(p *decision.Policy) *Holder {
	h := &Holder{}
	if p != nil {
		h.p.Store(p)
	}
	return h
}

// Load returns the active policy, or nil when none is loaded.
func (h *Holder) Load() *decision.Policy { return h.p.Load() }

// Store makes p the active policy for every request that starts after it returns. Storing
// nil is ignored: a loaded policy is never unloaded.
func (h *Holder) Store(p *decision.Policy) {
	if p != nil {
		h.p.Store(p)
	}
}
