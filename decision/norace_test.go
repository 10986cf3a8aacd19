//go:build !race

package decision

// raceEnabled: see race_test.go.
const raceEnabled = false
