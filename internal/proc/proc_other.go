//go:build !linux

// Package proc holds what child processes of tests and tools need.
package proc

import (
	"fmt"
	"os/exec"
	"time"
)

// DieWithParent is a no-op where the kernel offers no parent-death signal.
func DieWithParent(*exec.Cmd) {}

// CPUTime is not available without Linux's /proc.
func CPUTime(pid int) (time.Duration, error) {
	return 0, fmt.Errorf("cpu time of %d: not supported on this system", pid)
}
