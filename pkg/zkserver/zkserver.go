//go:build linux

// Package zkserver runs a private, standalone ZooKeeper server on a directory and a free local
// port: what replicated ClickHouse 18.16 coordinates through, for the tests of replication.
//
// The server is the one of Debian's zookeeper package (/usr/share/java/zookeeper.jar, run by
// the java on PATH), started as ZooKeeperServerMain: one server, no quorum, no admin server.
package zkserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Jar is where Debian's zookeeper package puts the server; its manifest names the libraries
// it needs.
const Jar = "/usr/share/java/zookeeper.jar"

// ErrNotFound is returned (wrapped) by Find and Start when java or the ZooKeeper jar is
// missing.
var ErrNotFound = errors.New("zookeeper not found (install it with `apt-get install zookeeper`, or `make deps`)")

// Find returns the java binary and checks that the jar is there.
func Find() (java string, err error) {
	if _, err := os.Stat(Jar); err != nil {
		return "", fmt.Errorf("find zookeeper: %s: %w", Jar, ErrNotFound)
	}
	java, err = exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("find zookeeper: java: %w", ErrNotFound)
	}
	return java, nil
}

// Server is a running ZooKeeper server.
type Server struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start writes zoo.cfg into dir (created if needed; the data goes to dir/data), starts the
// server on a free 127.0.0.1 port and waits until it serves clients (`srvr`), or ctx ends.
func Start(ctx context.Context, dir string) (*Server, error) {
	java, err := Find()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start zookeeper: pick a port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// tickTime 500 ms: sessions may time out from 1 s (2 ticks), so a test can have a killed
	// ClickHouse replica seen as gone quickly.
	cfg := "tickTime=500\n" +
		"dataDir=" + filepath.Join(dir, "data") + "\n" +
		"clientPort=" + strconv.Itoa(port) + "\n" +
		"clientPortAddress=127.0.0.1\n" +
		"maxSessionTimeout=60000\n" +
		"admin.enableServer=false\n" +
		"4lw.commands.whitelist=srvr\n"
	cfgFile := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "zookeeper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	cmd := exec.Command(java, "-Xmx128m", "-XX:+UseSerialGC", "-cp", Jar,
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfgFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, killed with the process that started it (as chserver's).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	s := &Server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if serving(s.addr) {
			return s, nil
		}
		select {
		case <-s.done:
			s.Stop()
			return nil, fmt.Errorf("start zookeeper: the server exited; its log:\n%s", tail(filepath.Join(dir, "zookeeper.log")))
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("start zookeeper on %s: not serving: %w; its log:\n%s", s.addr, ctx.Err(), tail(filepath.Join(dir, "zookeeper.log")))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serving reports whether the server serves clients: its answer to `srvr` gives its version.
// (`ruok` is no test: the server answers `imok` while it is still loading, and meanwhile closes
// client connections, which ClickHouse's DDL worker does not recover from on 18.16.)
func serving(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	b, _ := io.ReadAll(c)
	return bytes.HasPrefix(b, []byte("Zookeeper version"))
}

func tail(file string) []byte {
	b, _ := os.ReadFile(file)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return b
}

// Addr is the client address, 127.0.0.1:port.
func (s *Server) Addr() string { return s.addr }

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.log.Close()
}
