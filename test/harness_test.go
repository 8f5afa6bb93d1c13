// SPDX-License-Identifier: Apache-2.0

// Package test holds tollgate's privileged end-to-end tests: a real kernel,
// real cgroups, real eBPF programs, the real daemon binary, and unmodified
// client processes. Every address used is loopback.
package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/redirect"
)

// tollgateBin is the daemon binary built once for the whole run.
var tollgateBin string

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode, os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "tollgate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tollgateBin = filepath.Join(dir, "tollgate")
	build := exec.Command("go", "build", "-o", tollgateBin, "../cmd/tollgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tollgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips a test that needs root, except under CI where a skipped
// privileged test is a failure: these tests must run there.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("privileged e2e test needs root and CI=true forbids skipping it")
	}
	t.Skip("needs root (real eBPF, cgroups, mounts)")
}

// cgroup2Root returns the cgroup2 mount, found the way the daemon finds it.
func cgroup2Root(t testing.TB) string {
	t.Helper()
	root, err := redirect.FindCgroup2()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// newCgroup creates a fresh cgroup under the cgroup2 root and returns its
// path relative to the mount.
func newCgroup(t testing.TB) string {
	t.Helper()
	root := cgroup2Root(t)
	dir, err := os.MkdirTemp(root, "tollgate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Children have exited by now; retry briefly while the kernel
		// finishes tearing them down.
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("cgroup %s not removed", dir)
	})
	return "/" + filepath.Base(dir)
}

// daemon is a running tollgate daemon with its own state, socket and pins.
type daemon struct {
	t       testing.TB
	cfgPath string
	cfg     daemonConfig
	cmd     *exec.Cmd
	stderr  *syncBuffer
	done    chan error
}

// daemonConfig fills the config template.
type daemonConfig struct {
	StateDir  string
	Socket    string
	PinPath   string
	Workloads string // YAML list items, indented by two spaces
	Targets   string // YAML list items, indented by two spaces
	Metrics   string // metrics.listen; empty: no metrics endpoint
	Audit     string // keys of the audit section, indented by two spaces; empty: the defaults
}

const configTemplate = `host_id: e2e-test
state_dir: {{.StateDir}}
api_socket: {{.Socket}}
bpf_pin_path: {{.PinPath}}
listen_address: 127.0.0.1
workloads:
{{.Workloads}}
targets:
{{.Targets}}
{{- if .Metrics}}
metrics:
  listen: {{.Metrics}}
{{- end}}
{{- if .Audit}}
audit:
{{.Audit}}
{{- end}}
`

// newDaemonConfig returns a config with private state, socket and pin path.
func newDaemonConfig(t testing.TB, workloads, targets string) daemonConfig {
	t.Helper()
	dir := t.TempDir()
	pin := fmt.Sprintf("/sys/fs/bpf/tollgate-e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		if redirect.Loaded(pin) {
			if err := redirect.Unload(pin); err != nil {
				t.Errorf("unload %s: %v", pin, err)
			}
		}
		os.RemoveAll(pin)
	})
	return daemonConfig{
		StateDir:  filepath.Join(dir, "state"),
		Socket:    filepath.Join(dir, "api.sock"),
		PinPath:   pin,
		Workloads: workloads,
		Targets:   targets,
	}
}

func writeConfig(t testing.TB, cfg daemonConfig) string {
	t.Helper()
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(configTemplate)).Execute(&b, cfg); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startDaemon starts the daemon and waits until its API answers.
func startDaemon(t testing.TB, cfg daemonConfig) *daemon {
	t.Helper()
	d := &daemon{t: t, cfg: cfg, cfgPath: writeConfig(t, cfg)}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.stderr = &syncBuffer{}
	d.cmd = exec.Command(tollgateBin, "daemon", "--config", d.cfgPath, "--log-level", "debug")
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(d.cmd, d.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := agent.NewClient(d.cfg.Socket).Status(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case werr := <-d.done:
			d.t.Fatalf("daemon exited during start: %v\n%s", werr, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not answer on %s: %v\n%s", d.cfg.Socket, err, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	select {
	case <-d.done:
		d.cmd = nil
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("daemon exit: %v\n%s", err, d.stderr.String())
		}
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("daemon did not stop on SIGTERM\n%s", d.stderr.String())
	}
	d.cmd = nil
}

// kill sends SIGKILL: no clean-up code of the daemon runs.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.done
	d.cmd = nil
}

func (d *daemon) status() agent.Status {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := agent.NewClient(d.cfg.Socket).Status(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// records returns every record, read with the CLI exactly as a user would
// (`tollgate audit tail -o json`), decoded.
func (d *daemon) records() []*audit.Record {
	d.t.Helper()
	out, err := exec.Command(tollgateBin, "audit", "tail", "--config", d.cfgPath, "-n", "1000000", "-o", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			d.t.Fatalf("audit tail: %v: %s", err, ee.Stderr)
		}
		d.t.Fatal(err)
	}
	var recs []*audit.Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		r, err := audit.Decode(sc.Bytes())
		if err != nil {
			d.t.Fatalf("decode %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// settledRecords returns every record once each started session has its
// session.end: a session ends in the daemon shortly after its client
// exits, and its end record is written after that.
func (d *daemon) settledRecords() []*audit.Record {
	d.t.Helper()
	var recs []*audit.Record
	waitFor(d.t, "every session's end record", func() bool {
		recs = d.records()
		starts, ends := sessionRecords(recs)
		for id := range starts {
			if ends[id] == nil {
				return false
			}
		}
		return true
	})
	return recs
}

// sessionRecords returns the session.start and session.end records by
// session id.
func sessionRecords(recs []*audit.Record) (starts, ends map[string]*audit.Record) {
	starts, ends = map[string]*audit.Record{}, map[string]*audit.Record{}
	for _, r := range recs {
		switch r.Kind {
		case audit.KindSessionStart:
			starts[r.Session] = r
		case audit.KindSessionEnd:
			ends[r.Session] = r
		}
	}
	return starts, ends
}

// waitFor polls cond until it holds or the deadline passes. It is used for
// state that settles asynchronously (records written after a close), never
// to assert on timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoServer serves TCP on addr: it greets with its name, then echoes
// everything until the client half-closes.
func echoServer(t testing.TB, network, addr, name string) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// udpEcho answers each datagram with "udp:" and the payload.
func udpEcho(t testing.TB, addr string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("udp:"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runTollgate runs a CLI command and returns its combined output and error.
func runTollgate(args ...string) (string, error) {
	out, err := exec.Command(tollgateBin, args...).CombinedOutput()
	return string(out), err
}

// freeLoopbackAddr returns a loopback address with a port free now.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
}

// scrapeMetrics reads the daemon's /metrics on addr: each sample, by its
// name and labels as exposed ("name{a=\"x\"}"), with its value.
func scrapeMetrics(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("scrape: bad line %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return out
}
