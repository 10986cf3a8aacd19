//go:build !linux

package natstest

import "os/exec"

// dieWithParent does nothing outside Linux.
func dieWithParent(*exec.Cmd) {}
