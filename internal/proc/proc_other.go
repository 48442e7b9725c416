//go:build !linux

// Package proc holds what child processes of tests and tools need.
package proc

import "os/exec"

// DieWithParent is a no-op where the kernel offers no parent-death signal.
func DieWithParent(*exec.Cmd) {}
