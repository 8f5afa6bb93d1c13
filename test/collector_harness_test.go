// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate-dev/tollgate/audit/collector"
)

// collectorDB is the database the collector tests give the collector.
const collectorDB = "tollgate_collector"

// collectorProc is a `tollgate collector serve` process on a throwaway
// cluster, listening on plain HTTP on loopback.
type collectorProc struct {
	t       testing.TB
	pg      *pgCluster
	cfgPath string
	dir     string
	url     string
	cmd     *exec.Cmd
	done    chan error
	stderr  *syncBuffer
}

// newCollector creates the collector's database (owned by the SCRAM role,
// whose password the collector reads from a file) and its config, and
// starts it.
func newCollector(t testing.TB, pg *pgCluster) *collectorProc {
	t.Helper()
	return newCollectorSilence(t, pg, "1h")
}

// newCollectorSilence is newCollector with silence_after set.
func newCollectorSilence(t testing.TB, pg *pgCluster, silence string) *collectorProc {
	t.Helper()
	return newCollectorWith(t, pg, "silence_after: "+silence+"\n")
}

// newCollectorWith is newCollector with more lines of collector.yaml.
func newCollectorWith(t testing.TB, pg *pgCluster, extra string) *collectorProc {
	t.Helper()
	pg.psqlSuper(t, "postgres", "CREATE DATABASE "+collectorDB+" OWNER "+pgScramUser+";")
	dir := t.TempDir()
	pw := filepath.Join(dir, "db-password")
	if err := os.WriteFile(pw, []byte(pgScramPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.0.1")
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\ninsecure_loopback: true\n"+
		"database:\n  dsn: %q\n  password_file: %s\nsigning_key: %s\n%s",
		port, pg.dsn(pgScramUser, collectorDB), pw, filepath.Join(dir, "collector.key"), extra)
	c := &collectorProc{t: t, pg: pg, dir: dir, cfgPath: filepath.Join(dir, "collector.yaml"),
		url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start()
	t.Cleanup(c.stop)
	return c
}

// replica starts a second collector on the same database and key, on
// another port.
func (c *collectorProc) replica(t testing.TB) *collectorProc {
	t.Helper()
	b, err := os.ReadFile(c.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.0.1")
	old := strings.TrimPrefix(c.url, "http://")
	r := &collectorProc{t: t, pg: c.pg, dir: c.dir, cfgPath: filepath.Join(t.TempDir(), "collector.yaml"),
		url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := os.WriteFile(r.cfgPath, []byte(strings.Replace(string(b), old, strings.TrimPrefix(r.url, "http://"), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (c *collectorProc) start() {
	c.t.Helper()
	c.stderr = &syncBuffer{}
	c.cmd = exec.Command(tollgateBin, "collector", "serve", "--config", c.cfgPath, "--log-level", "debug")
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(c.cmd, c.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.url + "/v1/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		select {
		case err := <-c.done:
			c.t.Fatalf("collector exited during start: %v\n%s", err, c.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("collector did not answer: %v\n%s", err, c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL: whatever transaction was open is lost in flight.
func (c *collectorProc) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.cmd = nil
}

func (c *collectorProc) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		c.t.Errorf("collector did not stop on SIGTERM\n%s", c.stderr.String())
	}
	c.cmd = nil
}

// enroll returns a fresh enrollment token for host, from the CLI.
func (c *collectorProc) enroll(t testing.TB, host string) string {
	t.Helper()
	out, err := exec.Command(tollgateBin, "collector", "enroll", "--config", c.cfgPath, "--host", host).Output()
	if err != nil {
		t.Fatalf("collector enroll: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "tge_") {
		t.Fatalf("enroll printed %q", out)
	}
	return tok
}

// hosts runs `tollgate collector hosts -o json`.
func (c *collectorProc) hosts(t testing.TB) ([]collector.HostStatus, []collector.Misbehavior) {
	t.Helper()
	out, err := exec.Command(tollgateBin, "collector", "hosts", "--config", c.cfgPath, "-o", "json").Output()
	if err != nil {
		t.Fatalf("collector hosts: %v", err)
	}
	var v struct {
		Hosts       []collector.HostStatus  `json:"hosts"`
		Misbehavior []collector.Misbehavior `json:"misbehavior"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("collector hosts output %q: %v", out, err)
	}
	return v.Hosts, v.Misbehavior
}

// conn connects to the collector's database as the tests' SCRAM role.
func (c *collectorProc) conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.dsn(pgScramUser, collectorDB)+" password="+pgScramPass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// storedRecords returns the exact bytes the collector holds of origin, by
// seq, failing the test on any duplicate or gap.
func storedRecords(t testing.TB, conn *pgx.Conn, origin string) [][]byte {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT seq, data FROM records WHERE origin = $1 ORDER BY seq", origin)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var seq int64
		var data []byte
		if err := rows.Scan(&seq, &data); err != nil {
			t.Fatal(err)
		}
		if seq != int64(len(out)) {
			t.Fatalf("collector holds seq %d of %s where %d belongs (duplicate or gap)", seq, origin, len(out))
		}
		out = append(out, data)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// count runs a count query.
func count(t testing.TB, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// post sends a JSON body to the collector and returns the status and body.
func post(t testing.TB, url, cred string, body []byte) (int, []byte) {
	t.Helper()
	return postReader(t, url, cred, bytes.NewReader(body))
}

// postChunked sends body without a Content-Length (chunked encoding).
func postChunked(t testing.TB, url, cred string, body []byte) (int, []byte) {
	t.Helper()
	return postReader(t, url, cred, io.MultiReader(bytes.NewReader(body)))
}

func postReader(t testing.TB, url, cred string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}
