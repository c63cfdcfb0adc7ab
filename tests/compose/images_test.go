package compose_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// standInLabel marks every image this test makes, so that it never removes or overwrites an
// image it did not make (a real nats or clickhouse image of the same name, say).
const standInLabel = "org.marketpipe.compose-test"

// rootfs is the file tree of an image made by `docker import`: no Dockerfile, no builder and no
// base image, so nothing is pulled and the engine's builder (classic or BuildKit) does not matter.
type rootfs struct {
	entries map[string]entry // by absolute path in the image
}

type entry struct {
	dir     bool
	link    string // symlink target
	data    []byte
	hostSrc string // file read from the host when written
	mode    int64
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]entry{}} }

func (r *rootfs) dirs(p string) {
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = entry{dir: true, mode: 0o755}
		}
	}
}

func (r *rootfs) dir(p string, mode int64) {
	r.dirs(p)
	r.entries[p] = entry{dir: true, mode: mode}
}

func (r *rootfs) file(p string, data []byte, mode int64) {
	r.dirs(p)
	r.entries[p] = entry{data: data, mode: mode}
}

// copy adds the host file src (symlinks followed) at p.
func (r *rootfs) copy(p, src string) {
	r.dirs(p)
	r.entries[p] = entry{hostSrc: src, mode: 0o755}
}

func (r *rootfs) symlink(p, target string) {
	r.dirs(p)
	r.entries[p] = entry{link: target}
}

// busybox adds the static busybox (Debian's busybox-static) with the applets a healthcheck or
// an entrypoint script uses.
func (r *rootfs) busybox() {
	r.copy("/bin/busybox", busyboxPath)
	for _, a := range []string{"sh", "wget", "sleep", "cat", "kill", "mkdir", "echo", "ls", "ps"} {
		r.symlink("/bin/"+a, "busybox")
	}
	r.symlink("/usr/bin/wget", "/bin/busybox")
	r.dir("/tmp", 0o1777)
}

func (r *rootfs) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	paths := make([]string, 0, len(r.entries))
	for p := range r.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths) // parents before children
	for _, p := range paths {
		e := r.entries[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: e.mode, ModTime: time.Unix(0, 0)}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		default:
			data := e.data
			if e.hostSrc != "" {
				var err error
				if data, err = os.ReadFile(e.hostSrc); err != nil {
					return fmt.Errorf("image file %s: %w", p, err)
				}
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// importImage makes image ref from r with the Dockerfile instructions changes (ENTRYPOINT,
// USER, ENV, ...), labelled as this test's. It refuses to replace an image it did not make.
func importImage(t *testing.T, ctx context.Context, ref string, r *rootfs, changes ...string) {
	t.Helper()
	if label, ok := imageLabel(ctx, ref); ok && label == "" {
		t.Fatalf("image %s exists and was not made by this test: remove it (docker rmi %s) or run the test on another engine", ref, ref)
	}
	var tarball bytes.Buffer
	if err := r.writeTar(&tarball); err != nil {
		t.Fatal(err)
	}
	size := tarball.Len()
	args := []string{"import"}
	for _, c := range append(changes, "LABEL "+standInLabel+"=1") {
		args = append(args, "--change", c)
	}
	args = append(args, "-", ref)
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = &tarball
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import %s: %v\n%s", ref, err, out)
	}
	t.Logf("image %s: %d files, %.1f MB (docker import)", ref, len(r.entries), float64(size)/1e6)
}

// imageLabel is the image's standInLabel value, and whether the image exists.
func imageLabel(ctx context.Context, ref string) (string, bool) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format",
		`{{index .Config.Labels "`+standInLabel+`"}}`, ref).Output()
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}

// removeImage removes ref if this test made it.
func removeImage(t *testing.T, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if label, ok := imageLabel(ctx, ref); !ok || label == "" {
		return
	}
	if out, err := exec.CommandContext(ctx, "docker", "image", "rm", "--force", ref).CombinedOutput(); err != nil {
		t.Errorf("docker image rm %s: %v\n%s", ref, err, out)
	}
	if _, left := imageLabel(ctx, ref); left {
		t.Errorf("image %s is still there after docker image rm", ref)
	}
}

const busyboxPath = "/bin/busybox"

// natsImage stands in for nats:*-alpine: nats-server built from the Go module this repository
// requires, as the image's entrypoint, and busybox for the healthcheck's wget.
func natsImage(t *testing.T, ctx context.Context, ref, natsServer string) {
	r := newRootfs()
	r.busybox()
	r.copy("/usr/local/bin/nats-server", natsServer)
	r.dir("/data", 0o755)
	importImage(t, ctx, ref, r, `ENTRYPOINT ["/usr/local/bin/nats-server"]`, "EXPOSE 4222 8222")
}

// clickhouseImage stands in for clickhouse/clickhouse-server: Debian's clickhouse-server (18.16)
// with every library ldd says it links, a configuration listening on every address, and an
// entrypoint that, like the real image's, creates CLICKHOUSE_USER and CLICKHOUSE_DB.
func clickhouseImage(t *testing.T, ctx context.Context, ref, server string) {
	r := newRootfs()
	r.busybox()
	r.copy("/usr/bin/clickhouse-server", server)
	for _, lib := range linkedLibraries(t, server) {
		r.copy(lib, lib)
	}
	r.copy("/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/UTC")
	r.symlink("/usr/share/zoneinfo/Etc/UTC", "../UTC")
	r.symlink("/etc/localtime", "/usr/share/zoneinfo/UTC")
	r.file("/etc/clickhouse-server/config.xml", []byte(clickhouseConfig), 0o644)
	r.file("/entrypoint.sh", []byte(clickhouseEntrypoint), 0o755)
	r.dir("/var/lib/clickhouse", 0o755)
	r.dir("/var/log/clickhouse-server", 0o755)
	importImage(t, ctx, ref, r, `ENTRYPOINT ["/entrypoint.sh"]`, "ENV TZ=UTC",
		"ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu", "EXPOSE 9000 8123")
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// linkedLibraries are the absolute paths of the shared libraries bin needs, the loader included.
func linkedLibraries(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := lddLine.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		}
		if strings.Contains(sc.Text(), "not found") {
			t.Fatalf("ldd %s: %s", bin, sc.Text())
		}
	}
	if len(libs) == 0 {
		t.Fatalf("ldd %s named no library:\n%s", bin, out)
	}
	return libs
}

// marketpipeImage holds the programs the repository's Dockerfile builds, built here on the host
// with the same flags (static, -trimpath), laid out as the Dockerfile's final stage lays them:
// /usr/local/bin, user 65532, CA certificates, LOG_FORMAT=json.
func marketpipeImage(t *testing.T, ctx context.Context, ref, binDir string) {
	r := newRootfs()
	ents, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "nats-server" {
			continue
		}
		r.copy("/usr/local/bin/"+e.Name(), filepath.Join(binDir, e.Name()))
	}
	r.file("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644)
	r.file("/etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644)
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		r.copy("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
	}
	r.copy("/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/UTC")
	r.dir("/home/nonroot", 0o755)
	r.dir("/tmp", 0o1777)
	importImage(t, ctx, ref, r, "USER 65532:65532", "ENV LOG_FORMAT=json", "EXPOSE 8080 8081",
		`CMD ["/usr/local/bin/marketpipe", "--help"]`)
}

// clickhouseConfig is an 18.16 server configuration for a container: every address, the paths
// the compose file's volumes hold, logs to the console as well (docker compose logs).
const clickhouseConfig = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>/var/log/clickhouse-server/clickhouse-server.log</log>
        <errorlog>/var/log/clickhouse-server/clickhouse-server.err.log</errorlog>
        <console>1</console>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>0.0.0.0</listen_host>
    <tcp_port>9000</tcp_port>
    <http_port>8123</http_port>
    <path>/var/lib/clickhouse/</path>
    <tmp_path>/var/lib/clickhouse/tmp/</tmp_path>
    <user_files_path>/var/lib/clickhouse/user_files/</user_files_path>
    <format_schema_path>/var/lib/clickhouse/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
</yandex>
`

// clickhouseEntrypoint writes users.xml with the default user (loopback only) and
// CLICKHOUSE_USER with CLICKHOUSE_PASSWORD from anywhere, as the real image's entrypoint does,
// creates CLICKHOUSE_DB once the server answers, and runs the server in the foreground.
const clickhouseEntrypoint = `#!/bin/sh
set -e
user="${CLICKHOUSE_USER:-default}"
extra=""
if [ "$user" != default ]; then
  extra="<$user><password>${CLICKHOUSE_PASSWORD}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></$user>"
fi
cat >/etc/clickhouse-server/users.xml <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>::1</ip><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    $extra
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
mkdir -p /var/lib/clickhouse/tmp /var/lib/clickhouse/user_files /var/lib/clickhouse/format_schemas
if [ -n "$CLICKHOUSE_DB" ]; then
  (until wget -q -O /dev/null http://127.0.0.1:8123/ping 2>/dev/null; do sleep 0.5; done
   wget -q -O /dev/null --post-data "CREATE DATABASE IF NOT EXISTS \"$CLICKHOUSE_DB\"" http://127.0.0.1:8123/) &
fi
exec /usr/bin/clickhouse-server --config-file=/etc/clickhouse-server/config.xml
`
