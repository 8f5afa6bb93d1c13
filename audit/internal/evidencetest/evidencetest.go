// SPDX-License-Identifier: Apache-2.0

// Package evidencetest holds the test helpers that the tests of audit,
// audit/evidence and audit/report share: opening a log for a test, a keyed
// log with a realistic history, exporting and verifying its evidence, and
// the benchmarks' typical record. It is for tests only.
//
// Package audit's own internal tests (package audit) cannot import it,
// since it imports audit; its external tests (package audit_test) can.
package evidencetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
)

// Fixed test keys, so that fuzz seeds (audit/evidence/testdata) stay valid
// across runs. Never use them for anything else.
const (
	// SignerKey is the host key of KeyedLog.
	SignerKey = "PRIVATE+KEY+tollgate/test-host+701737bc+AeVqKDbQWk1XX3tYCoSxJ4tSX6S6Oc2t0ZfC2kbNepxn"
	// VerifierKey is SignerKey's verifier key.
	VerifierKey = "tollgate/test-host+701737bc+ASU1LlvNMG1sMvpd5ix6B9esAFztcFGtWRmivMnpxGfZ"
	// OtherSignerKey is another key of the same name, for forgeries.
	OtherSignerKey = "PRIVATE+KEY+tollgate/test-host+b60d7c5a+AQs+/OuN+bscGIP2yTka4Ff+6MdOtRoaRv/wqLGL0YKf"
)

// Key parses a host signer key and returns it with its verifier.
func Key(tb testing.TB, skey string) (*audit.HostKey, note.Verifier) {
	tb.Helper()
	k, err := audit.ParseHostKey(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := audit.ParseVerifierKey(k.VerifierKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k, v
}

// Logger routes slog output to tb.Log.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

// OpenLog opens (creating) a log at path and closes it when the test ends.
// A read-write log without a host id gets "test-host", a log without a
// logger logs to the test.
func OpenLog(tb testing.TB, path string, opts audit.Options) *audit.Log {
	tb.Helper()
	if opts.HostID == "" && !opts.ReadOnly {
		opts.HostID = "test-host"
	}
	if opts.Logger == nil {
		opts.Logger = Logger(tb)
	}
	l, err := audit.Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

// KeyedLog is a log signed with SignerKey, whose checkpoints are only
// signed when the test asks (or at Close), with helpers to give it a
// realistic history.
type KeyedLog struct {
	// Path is the log file.
	Path string
	// Log is the open log (after Open).
	Log *audit.Log
	// Key signs the log's checkpoints; Verifier checks them.
	Key      *audit.HostKey
	Verifier note.Verifier
	// IDs are the ids of the sessions Sessions wrote, in order.
	IDs  []string
	next int // number of the next session
}

// NewKeyedLog opens a KeyedLog at path.
func NewKeyedLog(tb testing.TB, path string) *KeyedLog {
	tb.Helper()
	key, v := Key(tb, SignerKey)
	e := &KeyedLog{Path: path, Key: key, Verifier: v}
	e.Open(tb)
	return e
}

// Open opens the log (again, after the test closed it); it is closed when
// the test ends.
func (e *KeyedLog) Open(tb testing.TB) {
	tb.Helper()
	l, err := audit.Open(e.Path, audit.Options{HostID: "test-host", Key: e.Key, NoSync: true, CheckpointInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	e.Log = l
	tb.Cleanup(func() { l.Close() })
}

// Add appends r.
func (e *KeyedLog) Add(tb testing.TB, r *audit.Record) {
	tb.Helper()
	if _, err := e.Log.Append(context.Background(), r); err != nil {
		tb.Fatal(err)
	}
}

// Start writes a daemon start and a heartbeat.
func (e *KeyedLog) Start(tb testing.TB) {
	e.Add(tb, &audit.Record{Kind: audit.KindAgentStart, Detail: map[string]string{"version": "test"}})
	e.Add(tb, &audit.Record{Kind: audit.KindHeartbeat, Detail: map[string]string{"clock_sync": "synchronised", "config": "sha256:x"}})
}

// Sessions writes n complete sessions of a few statements each (eight
// records), and signs a checkpoint after every cpEvery sessions (0:
// never).
func (e *KeyedLog) Sessions(tb testing.TB, n, cpEvery int) {
	tb.Helper()
	for range n {
		id := fmt.Sprintf("sess-%04d", e.next)
		e.next++
		e.IDs = append(e.IDs, id)
		e.Add(tb, &audit.Record{Kind: audit.KindSessionStart, Session: id, Target: "db",
			Process: &audit.Process{Pid: 42, UID: 1000, Comm: "psql"}})
		for j := range 3 {
			e.Add(tb, &audit.Record{Kind: audit.KindStatement, Session: id,
				Statement: &audit.Statement{Text: fmt.Sprintf("SELECT %d FROM t", j), Classes: []string{"select"}},
				Decision:  &audit.Decision{Action: "allow", Rule: "reads"}})
			e.Add(tb, &audit.Record{Kind: audit.KindResult, Session: id, Detail: map[string]string{"tag": "SELECT 1"}})
		}
		e.Add(tb, &audit.Record{Kind: audit.KindSessionEnd, Session: id, Bytes: &audit.Bytes{Up: 10, Down: 20}, CloseReason: "client close"})
		if cpEvery > 0 && e.next%cpEvery == 0 {
			if _, err := e.Log.Checkpoint(context.Background()); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// Export returns an evidence bundle of the log.
func (e *KeyedLog) Export(tb testing.TB, opts evidence.ExportOptions) []byte {
	tb.Helper()
	return ExportBundle(tb, e.Log, opts)
}

// ExportBundle returns an evidence bundle of l.
func ExportBundle(tb testing.TB, l *audit.Log, opts evidence.ExportOptions) []byte {
	tb.Helper()
	ex, err := evidence.PrepareExport(context.Background(), l, opts)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := ex.WriteTo(context.Background(), &buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Verify verifies bundle b with the host key v and an optional trusted
// checkpoint, and returns the report, whether it verifies or not.
func Verify(tb testing.TB, b []byte, v note.Verifier, trusted []byte) *evidence.VerifyReport {
	tb.Helper()
	rep, err := evidence.Verify(bytes.NewReader(b), evidence.VerifyOptions{Key: v, Trusted: trusted})
	if err != nil && !errors.Is(err, evidence.ErrVerifyFailed) {
		tb.Fatal(err)
	}
	if (err == nil) != rep.OK {
		tb.Fatalf("Verify error %v with OK=%v", err, rep.OK)
	}
	return rep
}

// MustVerify is Verify for bundles that must verify.
func MustVerify(tb testing.TB, b []byte, v note.Verifier, trusted []byte) *evidence.VerifyReport {
	tb.Helper()
	rep := Verify(tb, b, v, trusted)
	if !rep.OK {
		tb.Fatalf("bundle does not verify:\n%s", Failures(rep))
	}
	return rep
}

// Failures lists a report's failures, one per line.
func Failures(rep *evidence.VerifyReport) string {
	var sb strings.Builder
	for _, p := range rep.Failures {
		sb.WriteString("  " + p.String() + "\n")
	}
	return sb.String()
}

// BenchRecord is the benchmarks' typical statement record (about 450
// bytes encoded). Package audit's internal benchmarks have the same record
// as benchRecord (they cannot import this package); TestBenchRecord in
// audit keeps the two equal, so that BenchmarkVerify's bundle holds the
// records audit's benchmarks append.
func BenchRecord(i int) *audit.Record {
	return &audit.Record{
		V:       audit.SchemaVersion,
		Log:     "tollgate/bench/0123456789abcdef",
		Time:    time.Now().UTC(),
		Kind:    audit.KindStatement,
		Session: "01JDQ4V9S6Y4D4HW0Z8C8D6M1P",
		Target:  "orders-db",
		Dst:     "127.0.0.2:5432",
		Process: &audit.Process{Pid: 4242, UID: 1001, GID: 1001, Comm: "python3",
			Exe: "/usr/bin/python3.11", Cgroup: "/system.slice/nightly.service"},
		Identity: &audit.Identity{Name: "ci-deploy", Method: "oidc", Issuer: "https://issuer.example",
			Subject: "repo:org/app", Groups: []string{"deploy"}},
		Statement: &audit.Statement{Text: "DELETE FROM orders WHERE id = $" + strconv.Itoa(i),
			Fingerprint: "0a42922fab0bd73f", Classes: []string{"delete"}, Tables: []string{"orders"}},
		Decision: &audit.Decision{Action: "allow", Rule: "deploy-writes",
			Policy: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
	}
}

// CPUTime is the process's user and system CPU time so far: on a shared
// machine, benchmarks report work per CPU-second beside wall-clock rates.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
