//go:build !linux

package loadtest

// processCPU returns -1: the CPU time of the process is only read on Linux.
func processCPU() float64 { return -1 }
