package kubo

import "syscall"

// sysProcAttr makes the kernel kill the daemon if the process that started
// it dies (a test binary hitting its timeout, say), so that no kubo is left
// behind. Linux ties the signal to the starting thread, which the Go runtime
// only ends when a goroutine exits while locked to it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
