// Package proc holds what child processes of tests and tools need.
package proc

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes the kernel kill cmd's process when the process that
// started it dies (a test hitting its timeout, a tool killed by a signal
// or a closed pipe), so that no daemon is left behind. Linux ties the
// signal to the starting thread, which the Go runtime only ends when a
// goroutine exits while locked to it.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
