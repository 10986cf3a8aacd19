//go:build race

package server

// raceEnabled: the race detector slows every call several times over, so load tests scale
// their rates down to what the machine can still serve.
const raceEnabled = true
