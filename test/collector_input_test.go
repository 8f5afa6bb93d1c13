// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
)

// hostLog is a host's log and key without a daemon: the tests below speak
// the protocol by hand with real records and real signatures.
type hostLog struct {
	name string
	key  *audit.HostKey
	log  *audit.Log
}

func newHostLog(t *testing.T, name string, records int) *hostLog {
	t.Helper()
	dir := t.TempDir()
	k, err := audit.LoadOrCreateHostKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{HostID: name, Key: k, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &hostLog{name: name, key: k, log: l}
	h.add(t, records)
	return h
}

func (h *hostLog) add(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := h.log.Append(context.Background(), &audit.Record{Kind: audit.KindHeartbeat,
			Detail: map[string]string{"n": fmt.Sprint(h.log.Size())}}); err != nil {
			t.Fatal(err)
		}
	}
}

// body builds an add-entries body for [from, to) signed by signer.
func (h *hostLog) body(t *testing.T, from, to uint64, signer note.Signer) []byte {
	t.Helper()
	es, err := h.log.Read(from, int(to-from))
	if err != nil {
		t.Fatal(err)
	}
	root, err := h.log.Root(to)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.SignCheckpoint(h.log.ID(), to, root, time.Now(), signer)
	if err != nil {
		t.Fatal(err)
	}
	req := collector.AddEntriesRequest{Origin: h.log.ID(), Start: from, Checkpoint: cp.Note}
	for _, e := range es {
		req.Entries = append(req.Entries, e.Bytes)
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *hostLog) enroll(t *testing.T, c *collectorProc, token string) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(collector.EnrollRequest{Token: token, Host: h.name, Origin: h.log.ID(), Key: h.key.VerifierKey})
	return post(t, c.url+collector.PathEnroll, "", b)
}

// TestCollectorBadInput: every malformed, unauthenticated or forged
// request gets a clear 4xx and stores nothing; a repeat returns the same
// cosignature; a second tree of a stored size is recorded as a fork with
// both signed checkpoints, and the log is halted.
func TestCollectorBadInput(t *testing.T) {
	pg := startPostgres(t)
	c := newCollector(t, pg)
	conn := c.conn(t)
	h := newHostLog(t, "host-a", 20)
	other := newHostLog(t, "host-b", 5)

	tok := c.enroll(t, "host-a")
	code, b := h.enroll(t, c, tok)
	if code != http.StatusOK {
		t.Fatalf("enroll: %d %s", code, b)
	}
	var er collector.EnrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		t.Fatal(err)
	}
	ver, err := collector.NewCosignVerifier(er.CollectorKey)
	if err != nil {
		t.Fatal(err)
	}
	// Reused token, token for another host, unknown token.
	if code, b := h.enroll(t, c, tok); code != http.StatusUnauthorized || !strings.Contains(string(b), "already used") {
		t.Errorf("reused token: %d %s", code, b)
	}
	if code, b := other.enroll(t, c, c.enroll(t, "host-a")); code != http.StatusUnauthorized || !strings.Contains(string(b), "issued for host") {
		t.Errorf("token of another host: %d %s", code, b)
	}
	if code, b := other.enroll(t, c, "tge_nonsense"); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d %s", code, b)
	}
	// A second key for an enrolled name.
	impostor := newHostLog(t, "host-a", 1)
	if code, b := impostor.enroll(t, c, c.enroll(t, "host-a")); code != http.StatusConflict || !strings.Contains(string(b), "already enrolled") {
		t.Errorf("second key for host-a: %d %s", code, b)
	}

	url := c.url + collector.PathAddEntries
	nothingStored := func(what string) {
		t.Helper()
		if n := count(t, conn, "SELECT count(*) FROM records"); n != 0 {
			t.Errorf("%s: %d records stored", what, n)
		}
		if n := count(t, conn, "SELECT count(*) FROM misbehavior"); n != 0 {
			t.Errorf("%s: %d misbehavior rows", what, n)
		}
	}
	good := h.body(t, 0, 10, h.key.Signer)
	forger := newHostLog(t, "host-a", 0) // same name, another key
	for _, tc := range []struct {
		name string
		cred string
		body []byte
		code int
		want string
	}{
		{"no credential", "", good, 401, "no credential"},
		{"wrong credential", "tgc_wrong", good, 401, "unknown credential"},
		{"malformed json", er.Credential, []byte(`{"origin":`), 400, "malformed request"},
		{"unknown field", er.Credential, []byte(`{"origin":"x","start":0,"entries":[],"checkpoint":"eA==","extra":1}`), 400, "unknown field"},
		{"trailing data", er.Credential, append(append([]byte{}, good...), []byte(" {}")...), 400, "after the JSON object"},
		{"truncated body", er.Credential, good[:len(good)/2], 400, "malformed request"},
		{"unknown origin", er.Credential, other.body(t, 0, 5, other.key.Signer), 401, "is not the log enrolled"},
		{"wrong key", er.Credential, h.body(t, 0, 10, forger.key.Signer), 403, "not signed by"},
		{"forged signature", er.Credential, forgeSignature(t, good), 403, "does not verify"},
		{"start beyond size", er.Credential, h.body(t, 10, 20, h.key.Signer), 409, "resume from 0"},
		{"oversized body", er.Credential, bytes.Repeat([]byte(" "), collector.MaxBodyBytes+1), 413, "too large"},
		{"too many records", er.Credential, tooMany(t, h), 413, "at most 8192"},
	} {
		code, b := post(t, url, tc.cred, tc.body)
		if code != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: got %d %s, want %d with %q", tc.name, code, b, tc.code, tc.want)
		}
		if tc.code == 409 {
			var e collector.ErrorResponse
			if json.Unmarshal(b, &e) != nil || e.Size == nil || *e.Size != 0 {
				t.Errorf("%s: 409 without the stored size: %s", tc.name, b)
			}
		}
		nothingStored(tc.name)
	}

	// A chunked body (no Content-Length) over the limit is refused alike.
	if code, b := postChunked(t, url, er.Credential, bytes.Repeat([]byte(" "), collector.MaxBodyBytes+1)); code != 413 || !strings.Contains(string(b), "too large") {
		t.Errorf("oversized chunked body: %d %s", code, b)
	}
	nothingStored("oversized chunked body")

	// A probe of the empty log (what a shipper sends first when its log
	// has no records yet): size 0, cosigned, nothing stored.
	code, b = post(t, url, er.Credential, h.body(t, 0, 0, h.key.Signer))
	var probe collector.AddEntriesResponse
	if code != http.StatusOK || json.Unmarshal(b, &probe) != nil || probe.Size != 0 {
		t.Fatalf("probe at size 0: %d %s", code, b)
	}
	if _, err := collector.VerifyCosigned(probe.Checkpoint, ver); err != nil {
		t.Errorf("probe's cosignature: %v", err)
	}
	nothingStored("probe at size 0")

	// The good batch (chunked), then its repeat: the same cosigned
	// checkpoint.
	code, b = postChunked(t, url, er.Credential, good)
	if code != http.StatusOK {
		t.Fatalf("add-entries: %d %s", code, b)
	}
	var first collector.AddEntriesResponse
	json.Unmarshal(b, &first)
	if first.Size != 10 {
		t.Fatalf("size after the first batch: %d", first.Size)
	}
	if _, err := collector.VerifyCosigned(first.Checkpoint, ver); err != nil {
		t.Fatalf("cosignature: %v", err)
	}
	code, b = post(t, url, er.Credential, good)
	var again collector.AddEntriesResponse
	json.Unmarshal(b, &again)
	if code != http.StatusOK || !bytes.Equal(again.Checkpoint, first.Checkpoint) {
		t.Errorf("repeat: %d %s, want the same cosigned checkpoint", code, b)
	}
	if n := count(t, conn, "SELECT count(*) FROM records"); n != 10 {
		t.Errorf("after the repeat: %d records stored, want 10", n)
	}
	if got := storedRecords(t, conn, h.log.ID()); len(got) != 10 {
		t.Errorf("stored %d records", len(got))
	}

	// A different tree of size 10, validly signed by the host's key: a fork.
	es, _ := h.log.Read(0, 10)
	var entries [][]byte
	for i, e := range es {
		if i == 3 {
			e.Bytes = bytes.Replace(e.Bytes, []byte(`"n":"3"`), []byte(`"n":"X"`), 1)
		}
		entries = append(entries, e.Bytes)
	}
	root := rootOf(entries)
	cp, err := audit.SignCheckpoint(h.log.ID(), 10, root, time.Now(), h.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := json.Marshal(collector.AddEntriesRequest{Origin: h.log.ID(), Start: 0, Entries: entries, Checkpoint: cp.Note})
	code, b = post(t, url, er.Credential, fb)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "fork") {
		t.Errorf("fork: %d %s", code, b)
	}
	_, mis := c.hosts(t)
	if len(mis) != 1 || mis[0].Kind != collector.MisbehaviorFork || len(mis[0].Stored) == 0 || len(mis[0].New) == 0 {
		t.Fatalf("misbehavior after the fork: %+v", mis)
	}
	if _, err := audit.OpenCheckpoint(mis[0].New, mustVerifier(t, h.key.VerifierKey)); err != nil {
		t.Errorf("the fork's proof is not signed by the host: %v", err)
	}
	// The log is halted: even the next good batch is refused.
	code, b = post(t, url, er.Credential, h.body(t, 10, 20, h.key.Signer))
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "halted") {
		t.Errorf("after the fork: %d %s", code, b)
	}
	if n := count(t, conn, "SELECT count(*) FROM records"); n != 10 {
		t.Errorf("after the fork: %d records stored, want 10", n)
	}
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	v, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rootOf is the RFC 6962 root of entries, computed independently.
func rootOf(entries [][]byte) []byte {
	hs := make([][]byte, len(entries))
	for i, e := range entries {
		hs[i] = audit.LeafHash(e)
	}
	var rec func([][]byte) []byte
	rec = func(hs [][]byte) []byte {
		if len(hs) == 1 {
			return hs[0]
		}
		k := 1
		for k*2 < len(hs) {
			k *= 2
		}
		l, r := rec(hs[:k]), rec(hs[k:])
		return rfc6962.DefaultHasher.HashChildren(l, r)
	}
	return rec(hs)
}

// forgeSignature flips a bit of the checkpoint's signature in a body.
func forgeSignature(t *testing.T, body []byte) []byte {
	t.Helper()
	var req collector.AddEntriesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	cp := append([]byte(nil), req.Checkpoint...)
	i := bytes.LastIndexByte(cp[:len(cp)-1], ' ')
	if cp[i+10] == 'A' {
		cp[i+10] = 'B'
	} else {
		cp[i+10] = 'A'
	}
	req.Checkpoint = cp
	b, _ := json.Marshal(req)
	return b
}

// tooMany is a well-formed body with MaxRecords+1 entries.
func tooMany(t *testing.T, h *hostLog) []byte {
	t.Helper()
	req := collector.AddEntriesRequest{Origin: h.log.ID(), Start: 0, Checkpoint: []byte("x")}
	for i := 0; i <= collector.MaxRecords; i++ {
		req.Entries = append(req.Entries, []byte("{}"))
	}
	b, _ := json.Marshal(req)
	return b
}

// enrolled enrolls h with c and returns its credential.
func (h *hostLog) enrolled(t *testing.T, c *collectorProc) string {
	t.Helper()
	code, b := h.enroll(t, c, c.enroll(t, h.name))
	if code != http.StatusOK {
		t.Fatalf("enroll %s: %d %s", h.name, code, b)
	}
	var er collector.EnrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		t.Fatal(err)
	}
	return er.Credential
}

// TestCollectorSilence: an enrolled host that sends nothing for longer
// than silence_after is flagged once, shown silent in the fleet view, and
// unflagged when it ships again.
func TestCollectorSilence(t *testing.T) {
	pg := startPostgres(t)
	c := newCollectorSilence(t, pg, "1s")
	h := newHostLog(t, "quiet", 4)
	cred := h.enrolled(t, c)
	if code, b := post(t, c.url+collector.PathAddEntries, cred, h.body(t, 0, 4, h.key.Signer)); code != http.StatusOK {
		t.Fatalf("add-entries: %d %s", code, b)
	}
	waitFor(t, "silence flagged", func() bool {
		hosts, _ := c.hosts(t)
		return len(hosts) == 1 && hosts[0].Silent
	})
	time.Sleep(1500 * time.Millisecond)
	_, mis := c.hosts(t)
	if len(mis) != 1 || mis[0].Kind != collector.MisbehaviorSilence || !strings.Contains(mis[0].Detail, "nothing received since") {
		t.Fatalf("silence recorded %+v, want exactly one entry", mis)
	}
	h.add(t, 2)
	if code, b := post(t, c.url+collector.PathAddEntries, cred, h.body(t, 4, 6, h.key.Signer)); code != http.StatusOK {
		t.Fatalf("add-entries after silence: %d %s", code, b)
	}
	if hosts, _ := c.hosts(t); hosts[0].Silent || hosts[0].Size != 6 {
		t.Errorf("after shipping again: %+v", hosts[0])
	}
}

// TestCollectorReplicas: two collector replicas on one database receive
// the same host's batches at the same time; the row lock lets one store
// each range, the other answers with a repeat, 409 or 429, and every record
// is stored exactly once.
func TestCollectorReplicas(t *testing.T) {
	pg := startPostgres(t)
	c1 := newCollector(t, pg)
	c2 := c1.replica(t)
	h := newHostLog(t, "twice", 0)
	cred := h.enrolled(t, c1)
	conn := c1.conn(t)
	var size uint64
	for round := 0; round < 20; round++ {
		h.add(t, 50)
		body := h.body(t, size, h.log.Size(), h.key.Signer)
		codes := make(chan int, 2)
		for _, c := range []*collectorProc{c1, c2} {
			go func(url string) {
				code, _ := post(t, url+collector.PathAddEntries, cred, body)
				codes <- code
			}(c.url)
		}
		a, b := <-codes, <-codes
		if a != http.StatusOK && b != http.StatusOK {
			// Both lost the race for the lock (429): the host retries.
			if code, rb := post(t, c2.url+collector.PathAddEntries, cred, body); code != http.StatusOK {
				t.Fatalf("round %d: %d %d, retry %d %s", round, a, b, code, rb)
			}
		}
		for _, code := range []int{a, b} {
			if code != http.StatusOK && code != http.StatusConflict && code != http.StatusTooManyRequests {
				t.Fatalf("round %d: status %d\n%s\n%s", round, code, c1.stderr.String(), c2.stderr.String())
			}
		}
		size = h.log.Size()
	}
	held := storedRecords(t, conn, h.log.ID())
	if uint64(len(held)) != size {
		t.Fatalf("collector holds %d records, host has %d", len(held), size)
	}
	if n := count(t, conn, "SELECT count(*) FROM checkpoints WHERE origin = $1", h.log.ID()); n != 20 {
		t.Errorf("%d checkpoints stored, want 20", n)
	}
}
