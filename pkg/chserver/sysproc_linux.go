//go:build linux

package chserver

import "syscall"

// sysProcAttr puts the server in its own process group, so Stop and Kill reach anything it
// spawns, and asks the kernel to kill it when the process that started it dies, so a test
// binary killed by a timeout leaves no orphan server behind. (The kernel sends it when the
// starting thread exits; Go ends a thread only when a goroutine locked to it exits still
// locked, which Start's callers do not do.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
