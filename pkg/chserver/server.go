//go:build unix

// Package chserver runs a private clickhouse-server process on a directory and free local ports.
//
// It is what `marketpipe dev` starts when nothing answers on CLICKHOUSE_ADDR, and what the
// tests start (through pkg/chtest) so that they run against a real server rather than a fake.
// The server is the one from Debian's clickhouse-server package (ClickHouse 18.16), but any
// binary that reads an 18.16-style config.xml works.
//
// The generated configuration is deliberately small: no query or part log, no example
// clusters, no dictionaries, no interserver port (unless Options.Replication makes the server
// a replica), small caches. That keeps the server's start
// (exec to first ping) around 0.1 s and its footprint small enough to run one per test package.
package chserver

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ErrNotFound is returned (wrapped) by Find and Start when no ClickHouse server binary exists.
var ErrNotFound = errors.New("clickhouse server binary not found (install it with `apt-get install clickhouse-server`, or put clickhouse-server or clickhouse on PATH)")

// ErrNotRunning is returned by Restart's start half, and by Kill, when the server process has
// already gone and cannot be signalled.
var ErrNotRunning = errors.New("clickhouse server is not running")

// Default timeouts. The server normally answers in well under a second; the bounds are there
// so that a broken install fails a test quickly with the server's own words rather than hanging.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 15 * time.Second
)

// Options say where and how to run the server. The zero value of every field is usable except
// Dir.
type Options struct {
	// Dir holds the generated configuration, the data, the logs and the server's stdout and
	// stderr (log/stdout.log, log/stderr.log). It is created if needed and may be reused: the
	// data of a previous run is kept.
	Dir string
	// TCPPort is the native protocol port, HTTPPort the HTTP one; 0 picks a free port.
	TCPPort, HTTPPort int
	// Binary is the server executable: a clickhouse-server binary, or the all-in-one
	// `clickhouse` binary (run as `clickhouse server`). Empty means Find.
	Binary string
	// Stdout and Stderr, when set, also receive the server's standard output and error.
	Stdout, Stderr io.Writer
	// StartTimeout bounds how long Start and Restart wait for the first successful ping;
	// 0 means DefaultStartTimeout. The context passed to Start may bound it further.
	StartTimeout time.Duration
	// Timezone is the server's time zone (an IANA name); empty means UTC. Production servers
	// run in any zone, so tests of time handling may want another.
	Timezone string
	// StopTimeout bounds how long Stop waits after SIGTERM before it kills the server;
	// 0 means DefaultStopTimeout.
	StopTimeout time.Duration
	// TLS, when set, makes the server also serve the native protocol over TLS on TLS.Port
	// (tcp_port_secure) with TLS.CertFile and TLS.KeyFile (PEM).
	TLS *TLS
	// UsersXML, when set, is the server's users.xml (users, profiles, quotas) instead of one
	// whose default user has no password and is reachable from loopback only.
	UsersXML string
	// Replication, when set, makes the server a replica: a cluster in remote_servers, the
	// {shard} and {replica} macros, ZooKeeper, distributed DDL (ON CLUSTER) and an
	// interserver HTTP port on which the other replicas fetch its parts.
	Replication *Replication
}

// Replication is a server's part in a replicated cluster (Options.Replication).
type Replication struct {
	// Cluster names the cluster in remote_servers; Shards lists each shard's replicas as
	// native-protocol host:port, this server among them (a server knows itself in a cluster
	// by its address and tcp port).
	Cluster string
	Shards  [][]string
	// Shard and Replica are the values of the {shard} and {replica} macros.
	Shard, Replica string
	// ZooKeeper lists the ZooKeeper servers, host:port. SessionTimeout is the ZooKeeper
	// session's (the server's default is 30 s): how long the others take to see this server
	// gone after a crash.
	ZooKeeper      []string
	SessionTimeout time.Duration
	// InterserverPort is the interserver HTTP port (on 127.0.0.1); 0 picks a free one. Keep
	// it across restarts: the others fetch parts from the address this server registered.
	InterserverPort int
}

// replicationXML is the configuration of Options.Replication; {cluster}, {zookeeper} and
// {shards} are filled with elements.
const replicationXML = `    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver}</interserver_http_port>
    <remote_servers>
        <{cluster}>
{shards}        </{cluster}>
    </remote_servers>
    <macros>
        <shard>{shard}</shard>
        <replica>{replica}</replica>
    </macros>
    <zookeeper>
{zookeeper}        <session_timeout_ms>{session}</session_timeout_ms>
    </zookeeper>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
</yandex>
`

// TLS is the secure native port of a server (Options.TLS).
type TLS struct {
	Port              int
	CertFile, KeyFile string
}

// secureXML is the configuration of Options.TLS: the port and the certificate (no client
// certificate is asked for: 18.16 authenticates native clients by user and password only).
const secureXML = `    <tcp_port_secure>{port}</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>{cert}</certificateFile>
            <privateKeyFile>{key}</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>
`

// Server is a running (or stopped) clickhouse-server process. Its methods are safe for
// concurrent use.
type Server struct {
	opts      Options // resolved: absolute Dir, ports chosen, binary found
	pickPorts bool    // ports were chosen by us, so a clash may be retried on others

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // the process's exit status, valid once done is closed
	logs    []io.Closer
	started time.Duration // how long the last start took until the first ping
}

// Find locates the server binary: clickhouse-server on PATH, then in /usr/sbin and /usr/bin
// (Debian installs it in /usr/sbin, which is not on every user's PATH), then the all-in-one
// clickhouse binary on PATH. The error wraps ErrNotFound and says how to install it.
func Find() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("find clickhouse server: %w", ErrNotFound)
}

// Start writes the configuration into o.Dir, starts the server and waits until it answers a
// native-protocol ping. If it does not within the start timeout (or ctx ends), the server is
// killed and the error includes the tail of its logs. Ports left at 0 are chosen free; should
// another process take one of them before the server binds it, Start retries on new ports.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("start clickhouse server: no directory given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse server: %w", err)
	}
	o.Dir = dir
	if o.Binary == "" {
		if o.Binary, err = Find(); err != nil {
			return nil, fmt.Errorf("start clickhouse server: %w", err)
		}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	s := &Server{opts: o, pickPorts: o.TCPPort == 0 || o.HTTPPort == 0}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		if err := s.choosePorts(o); err != nil {
			return nil, fmt.Errorf("start clickhouse server: %w", err)
		}
		err := s.start(ctx)
		if err == nil {
			return s, nil
		}
		if !s.pickPorts || attempt == attempts || !errors.Is(err, errAddrInUse) || ctx.Err() != nil {
			return nil, err
		}
	}
}

// choosePorts fills the ports left at 0 in o with free ones.
func (s *Server) choosePorts(o Options) error {
	s.opts.TCPPort, s.opts.HTTPPort = o.TCPPort, o.HTTPPort
	ports := []*int{&s.opts.TCPPort, &s.opts.HTTPPort}
	if o.Replication != nil {
		r := *o.Replication
		s.opts.Replication = &r
		ports = append(ports, &r.InterserverPort)
	}
	for _, p := range ports {
		if *p != 0 {
			continue
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		*p = port
	}
	return nil
}

// FreePort asks the kernel for a free port on the loopback interface, for ports that must be
// known before a server starts (a cluster's replicas name each other's). The port is free only
// for now.
func FreePort() (int, error) { return freePort() }

// freePort asks the kernel for a free port on the loopback interface. The port is free only
// for now; Start retries if it is taken before the server binds it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the native protocol address, 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.TCPPort)) }

// HTTPAddr returns the HTTP interface address, 127.0.0.1:port.
func (s *Server) HTTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.opts.HTTPPort))
}

// Dir returns the server's directory (absolute).
func (s *Server) Dir() string { return s.opts.Dir }

// StartupTime returns how long the last start or restart took, from exec to the first
// successful ping.
func (s *Server) StartupTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop ends the server: SIGTERM, then SIGKILL if it has not exited within the stop timeout.
// Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		s.closeLogsLocked()
		return nil
	}
	if err := s.signalLocked(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop clickhouse server: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(s.opts.StopTimeout):
		_ = s.signalLocked(syscall.SIGKILL)
		<-s.done
	}
	s.closeLogsLocked()
	return nil
}

// Kill ends the server at once with SIGKILL, as a crash would: for fault tests. Killing a
// stopped server returns an error wrapping ErrNotRunning.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.runningLocked() {
		return fmt.Errorf("kill clickhouse server: %w", ErrNotRunning)
	}
	if err := s.signalLocked(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill clickhouse server: %w", err)
	}
	<-s.done
	s.closeLogsLocked()
	return nil
}

// Restart stops the server (if it is running) and starts it again on the same directory and
// ports, so clients configured with Addr reconnect to it: for fault tests.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

// signalLocked signals the server's process group (see sysProcAttr), falling back to the
// process alone.
func (s *Server) signalLocked(sig syscall.Signal) error {
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(-pid, sig); err == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (s *Server) closeLogsLocked() {
	for _, c := range s.logs {
		c.Close()
	}
	s.logs = nil
}

// errAddrInUse marks a start that failed because a port was taken.
var errAddrInUse = errors.New("address in use")

// start writes the configuration, execs the server and waits for it to answer.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runningLocked() {
		return errors.New("start clickhouse server: already running")
	}
	// A server that cannot bind its port exits, but only after our first ping may have been
	// answered by whoever holds the port: check first.
	for _, port := range []int{s.opts.TCPPort, s.opts.HTTPPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("start clickhouse server: port %d: %w (%w)", port, err, errAddrInUse)
		}
		l.Close()
	}
	if err := writeConfig(s.opts); err != nil {
		return fmt.Errorf("start clickhouse server: %w", err)
	}
	logDir := filepath.Join(s.opts.Dir, "log")
	stdout, err := os.OpenFile(filepath.Join(logDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start clickhouse server: %w", err)
	}
	stderr, err := os.OpenFile(filepath.Join(logDir, "stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		return fmt.Errorf("start clickhouse server: %w", err)
	}
	s.logs = []io.Closer{stdout, stderr}

	args := []string{"--config-file=" + filepath.Join(s.opts.Dir, "config.xml")}
	if filepath.Base(s.opts.Binary) == "clickhouse" {
		args = append([]string{"server"}, args...)
	}
	cmd := exec.Command(s.opts.Binary, args...)
	cmd.Dir = s.opts.Dir
	cmd.Stdout, cmd.Stderr = io.Writer(stdout), io.Writer(stderr)
	if s.opts.Stdout != nil {
		cmd.Stdout = io.MultiWriter(stdout, s.opts.Stdout)
	}
	if s.opts.Stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, s.opts.Stderr)
	}
	cmd.SysProcAttr = sysProcAttr()
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		s.closeLogsLocked()
		return fmt.Errorf("start clickhouse server %s: %w", s.opts.Binary, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		err := cmd.Wait()
		s.waitErr = err // read only after done is closed
		close(done)
	}()

	if err := s.waitReady(ctx, done); err != nil {
		_ = s.signalLocked(syscall.SIGKILL)
		<-done
		s.closeLogsLocked()
		tail := s.logTail()
		if bytes.Contains(tail, []byte("Address already in use")) {
			err = fmt.Errorf("%w (%w)", err, errAddrInUse)
		}
		return fmt.Errorf("start clickhouse server on %s (dir %s): %w\n--- server log tail ---\n%s", s.Addr(), s.opts.Dir, err, tail)
	}
	s.started = time.Since(begin)
	return nil
}

// waitReady pings the server until it answers, the process exits, or the time is up.
func (s *Server) waitReady(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-done:
			return fmt.Errorf("server exited: %v", s.waitErr)
		default:
		}
		if lastErr = Ping(ctx, s.Addr()); lastErr == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("server exited: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("no answer to ping: %w (last: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// Ping checks that a ClickHouse server answers the native protocol on addr, as the default
// user with no password, within a second (or ctx's deadline if sooner).
func Ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{addr},
		DialTimeout:  time.Second,
		MaxOpenConns: 1,
		MaxIdleConns: 1,
	})
	if err != nil {
		return fmt.Errorf("ping clickhouse %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse %s: %w", addr, err)
	}
	return nil
}

// logTail returns the last lines of the server's stderr and error log, for error messages.
func (s *Server) logTail() []byte {
	var b bytes.Buffer
	for _, name := range []string{"stderr.log", "server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.opts.Dir, "log", name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		const max = 4096
		if len(data) > max {
			data = data[len(data)-max:]
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				data = data[i+1:]
			}
		}
		fmt.Fprintf(&b, "[%s]\n%s\n", name, bytes.TrimRight(data, "\n"))
	}
	if b.Len() == 0 {
		return []byte("(empty)")
	}
	return b.Bytes()
}

// writeConfig writes config.xml and users.xml into o.Dir and creates the directories they
// name. The server reads the ports from the config, so a restart keeps them.
func writeConfig(o Options) error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	p := func(elem ...string) string {
		// ClickHouse wants directory paths with a trailing slash.
		return xmlEscape(filepath.Join(append([]string{o.Dir}, elem...)...) + "/")
	}
	f := func(elem ...string) string {
		return xmlEscape(filepath.Join(append([]string{o.Dir}, elem...)...))
	}
	config := strings.NewReplacer(
		"{log}", f("log", "server.log"),
		"{errlog}", f("log", "server.err.log"),
		"{tcp}", strconv.Itoa(o.TCPPort),
		"{http}", strconv.Itoa(o.HTTPPort),
		"{data}", p("data"),
		"{tmp}", p("tmp"),
		"{user_files}", p("user_files"),
		"{format_schemas}", p("format_schemas"),
		"{users}", f("users.xml"),
		"{timezone}", xmlEscape(cmp.Or(o.Timezone, "UTC")),
	).Replace(configXML)
	if r := o.Replication; r != nil {
		var shards, zk strings.Builder
		for _, replicas := range r.Shards {
			shards.WriteString("            <shard>\n                <internal_replication>true</internal_replication>\n")
			for _, addr := range replicas {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return fmt.Errorf("write config: replica %q: %w", addr, err)
				}
				fmt.Fprintf(&shards, "                <replica><host>%s</host><port>%s</port></replica>\n", xmlEscape(host), xmlEscape(port))
			}
			shards.WriteString("            </shard>\n")
		}
		for _, addr := range r.ZooKeeper {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("write config: zookeeper %q: %w", addr, err)
			}
			fmt.Fprintf(&zk, "        <node><host>%s</host><port>%s</port></node>\n", xmlEscape(host), xmlEscape(port))
		}
		session := r.SessionTimeout
		if session <= 0 {
			session = 30 * time.Second
		}
		config = strings.Replace(config, "</yandex>\n", strings.NewReplacer(
			"{interserver}", strconv.Itoa(r.InterserverPort), "{cluster}", xmlEscape(r.Cluster),
			"{shards}", shards.String(), "{shard}", xmlEscape(r.Shard), "{replica}", xmlEscape(r.Replica),
			"{zookeeper}", zk.String(), "{session}", strconv.FormatInt(session.Milliseconds(), 10),
		).Replace(replicationXML), 1)
	}
	if o.TLS != nil {
		config = strings.Replace(config, "</yandex>\n", strings.NewReplacer("{port}", strconv.Itoa(o.TLS.Port),
			"{cert}", xmlEscape(o.TLS.CertFile), "{key}", xmlEscape(o.TLS.KeyFile)).Replace(secureXML), 1)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "config.xml"), []byte(config), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "users.xml"), []byte(cmp.Or(o.UsersXML, usersXML)), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// configXML is the server configuration, found by trimming the Debian package's
// /etc/clickhouse-server/config.xml to what 18.16 needs. Left out on purpose: query_log and
// part_log (system tables that cost start time and disk), remote_servers examples, zookeeper,
// dictionaries, graphite, the interserver port (only Options.Replication adds it, with
// remote_servers, macros and zookeeper) and openSSL (only Options.TLS adds it). The caches are small because tests and laptops run
// several servers. The root element is <yandex>, which current ClickHouse still accepts.
const configXML = `<?xml version="1.0"?>
<!-- Written by marketpipe's chserver; rewritten on every start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>{log}</log>
        <errorlog>{errlog}</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <path>{data}</path>
    <tmp_path>{tmp}</tmp_path>
    <user_files_path>{user_files}</user_files_path>
    <format_schema_path>{format_schemas}</format_schema_path>
    <users_config>{users}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>{timezone}</timezone>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <!-- On SIGTERM, wait this many seconds (default 5) for open connections, even idle pooled
         ones, before exiting: Stop should be quick. -->
    <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
`

// usersXML gives the default user an empty password, reachable from loopback only.
const usersXML = `<?xml version="1.0"?>
<!-- Written by marketpipe's chserver; rewritten on every start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <!-- How often (seconds; default 10) a connection's thread looks up from waiting for
                 a query to notice a shutdown: with the default an idle pooled client
                 connection holds up SIGTERM for 10 s. -->
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`
