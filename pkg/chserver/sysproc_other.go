//go:build unix && !linux

package chserver

import "syscall"

// sysProcAttr puts the server in its own process group, so Stop and Kill reach anything it
// spawns. Only Linux can also tie the server's life to ours (Pdeathsig).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
