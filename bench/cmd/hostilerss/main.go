// Command hostilerss measures the peak resident memory (VmHWM) of the pipeline's readers of
// vendor bytes on a hostile reply file: a valid header followed by one data line of -line bytes
// (default 1 GiB; about 1 MB gzipped). Each measurement runs in a process of its own, so that
// its VmHWM is its own:
//
//   - marks: pkg/chunk's Marks over the file, as the collector runs it on every download;
//   - collector-gzip, collector-plain: the collector's Handle, downloading the file from a
//     vendor on loopback (gzip-encoded as the vendor sends it, or plain) and storing it in the
//     raw store of a NATS server that runs in a further process;
//   - transformer: pkg/dlformat's Reader over the gzip file, as the transformer reads a stored
//     gzip reply file;
//   - transformer-chunk: the first chunk (pkg/chunk's OpenFirst) of the plain file read by
//     dlformat, as a transformer replica reads a chunk of a stored file cut at its marks.
//
// Each prints its VmHWM in MB and the error that ended it (each should end with a bound of
// pkg/bounds). Figures go to docs/hostile-input.md. Run it as
//
//	go run ./bench/cmd/hostilerss [-line 1073741824]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/collector"
)

var modes = []string{"marks", "collector-gzip", "collector-plain", "transformer", "transformer-chunk"}

func main() {
	line := flag.Int64("line", 1<<30, "bytes of the long data line")
	mode := flag.String("mode", "", "internal: the measurement to run in this process")
	file := flag.String("file", "", "internal: the gzip file")
	natsURL := flag.String("nats", "", "internal: the NATS server's URL")
	flag.Parse()
	log.SetFlags(0)
	if *mode != "" {
		err := run(*mode, *file, *natsURL, *line)
		fmt.Printf("%s\t%d MB\t%v\n", *mode, vmHWM()>>20, err)
		return
	}
	if err := parent(*line); err != nil {
		log.Fatal(err)
	}
}

// parent writes the gzip file, starts the NATS server, and runs each measurement.
func parent(line int64) error {
	dir, err := os.MkdirTemp("", "hostilerss")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gz := filepath.Join(dir, "long-line.bbg.gz")
	f, err := os.Create(gz)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, hostile.Gzip(hostile.LongLineFile(line))); err != nil {
		return err
	}
	f.Close()
	st, _ := os.Stat(gz)
	log.Printf("file: a header and a data line of %d bytes: %d bytes plain, %d gzipped", line, hostile.Size(line), st.Size())

	self, err := os.Executable()
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	srv := exec.Command(self, "-mode", "nats", "-file", filepath.Join(dir, "js"), "-line", strconv.Itoa(port)) // line: the port
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	fmt.Println("measurement\tVmHWM\tended with")
	for _, m := range modes {
		cmd := exec.Command(self, "-mode", m, "-file", gz, "-nats", url, "-line", strconv.FormatInt(line, 10))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(mode, file, natsURL string, line int64) error {
	if mode == "nats" {
		s, err := natstest.Run(file, int(line)) // line: the port
		if err != nil {
			return err
		}
		defer s.Shutdown()
		select {} // until killed
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	plain := func() io.Reader {
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			log.Fatal(err)
		}
		return zr
	}
	switch mode {
	case "marks":
		_, err := chunk.Marks(plain(), rawstore.DefaultMarkBytes, events.MaxFileMarks)
		return err
	case "collector-gzip", "collector-plain":
		return collect(f, natsURL, hostile.Size(line), mode == "collector-gzip")
	case "transformer":
		r, err := dlformat.NewReader(f)
		if err != nil {
			return err
		}
		return readAll(r)
	case "transformer-chunk":
		// The first chunk, up to the data's end: through the long line.
		cr, err := chunk.OpenFirst(plain(), hostile.Size(line)-int64(len(hostile.Tail)), 16)
		if err != nil {
			return err
		}
		r, err := dlformat.NewReader(cr)
		if err != nil {
			return err
		}
		return readAll(r)
	}
	return fmt.Errorf("no mode %q", mode)
}

func readAll(r *dlformat.Reader) error {
	for {
		if _, err := r.Next(); err != nil {
			return err
		}
	}
}

// collect runs the collector's handler on a job whose file a loopback vendor serves from f,
// and returns the job's error.
func collect(f *os.File, natsURL string, size int64, gz bool) error {
	const key = "hostile1.20260105.bbg"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /eap/catalogs/acct/content/responses/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"contains":[{"key":%q,"headers":{"Content-Length":"%d"}}]}`, key, size)
	})
	mux.HandleFunc("GET /eap/catalogs/acct/content/responses/{key}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		var body io.Reader = f
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
		} else {
			zr, err := gzip.NewReader(f)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			body = zr
		}
		io.Copy(w, body)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(l, mux)
	v, err := vendor.New(vendor.Config{BaseURL: "http://" + l.Addr().String() + "/eap", Account: "acct", MaxRetries: -1})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	streams, err := natsx.Setup(ctx, js, natsx.Retention{})
	if err != nil {
		return err
	}
	j := events.Job{ID: "job-hostile-" + strconv.FormatBool(gz), VendorRequestID: "hostile1", ResponseKey: key}
	j = j.Advance(events.Ready, time.Now())
	msg, err := deliver(ctx, js, &j)
	if err != nil {
		return err
	}
	h := stage.Jobs(stage.NewPublisher(js), events.Decode, &collector.Handler{Vendor: v, Raw: &rawstore.Store{Objects: streams.Raw}, Now: time.Now})
	if err := h.Handle(ctx, msg); err != nil {
		return fmt.Errorf("handle: %w", err)
	}
	s, err := js.Stream(ctx, events.JobsStream)
	if err != nil {
		return err
	}
	m, err := s.GetLastMsgForSubject(ctx, events.JobSubject(j.ID, "*"))
	if err != nil {
		return err
	}
	got, err := events.Decode(m.Data)
	if err != nil {
		return err
	}
	return fmt.Errorf("job %s: %s", got.State, got.Error)
}

// deliver publishes j's event and returns it as the collector's consumer would deliver it.
func deliver(ctx context.Context, js jetstream.JetStream, j *events.Job) (*stage.Message, error) {
	data, err := j.Encode()
	if err != nil {
		return nil, err
	}
	subj := events.JobSubject(j.ID, j.State)
	ack, err := js.Publish(ctx, subj, data)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateConsumer(ctx, events.JobsStream, jetstream.ConsumerConfig{FilterSubject: subj,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: ack.Sequence, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return nil, err
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return nil, err
	}
	return stage.NewMessage(msg), nil
}

// vmHWM is this process's peak resident set size, in bytes.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}
