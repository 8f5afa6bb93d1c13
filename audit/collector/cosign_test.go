// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

func TestCosign(t *testing.T) {
	skey, vkey, err := GenerateCosignKey("collector.example/w1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCosigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if c.VerifierKey != vkey {
		t.Fatalf("verifier key %q, want %q", c.VerifierKey, vkey)
	}
	c.now = func() time.Time { return time.Unix(1679315147, 0) }
	hk, err := audit.ParseHostKey(mustHostKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.SignCheckpoint("tollgate/h/0123456789abcdef", 5, make([]byte, 32), time.Now(), hk.Signer)
	if err != nil {
		t.Fatal(err)
	}
	line, err := c.Cosign(cp.Note)
	if err != nil {
		t.Fatal(err)
	}
	cosigned := append(append([]byte(nil), cp.Note...), line...)
	v, err := NewCosignVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := VerifyCosigned(cosigned, v)
	if err != nil || ts.Unix() != 1679315147 {
		t.Fatalf("verify: %v %v", ts, err)
	}
	// The signature is the C2SP layout, checked by hand: key ID, then the
	// timestamp, then Ed25519 over "cosignature/v1\ntime <t>\n" + body.
	fields := strings.Fields(strings.TrimSpace(line))
	raw, _ := base64.StdEncoding.DecodeString(fields[2])
	if len(raw) != 4+8+64 || binary.BigEndian.Uint32(raw) != c.KeyHash() || binary.BigEndian.Uint64(raw[4:]) != 1679315147 {
		t.Fatalf("signature layout: %x", raw)
	}
	body := cp.Note[:strings.LastIndex(string(cp.Note), "\n\n")+1]
	if !ed25519.Verify(c.priv.Public().(ed25519.PublicKey), append([]byte("cosignature/v1\ntime 1679315147\n"), body...), raw[12:]) {
		t.Fatal("signed message is not cosignature/v1's")
	}
	// The host's checkpoint still opens with the host key.
	if _, err := audit.OpenCheckpoint(cosigned, mustVerifier(t, hk.VerifierKey)); err != nil {
		t.Fatal(err)
	}
	// A cosignature over another body fails.
	tampered := []byte(strings.Replace(string(cosigned), "\n5\n", "\n6\n", 1))
	if _, err := VerifyCosigned(tampered, v); err == nil {
		t.Fatal("tampered checkpoint verified")
	}
	// Other key: not found.
	_, vkey2, _ := GenerateCosignKey("other")
	v2, _ := NewCosignVerifier(vkey2)
	if _, err := VerifyCosigned(cosigned, v2); err == nil {
		t.Fatal("verified with another key")
	}
	for _, bad := range []string{"", "x+00000000+AA==", strings.Replace(vkey, "+", "+0", 1)} {
		if _, err := NewCosignVerifier(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func mustHostKey(t *testing.T) string {
	dir := t.TempDir()
	if _, err := audit.LoadOrCreateHostKey(dir, "h"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, audit.HostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustVerifier(t *testing.T, vkey string) interface {
	Name() string
	KeyHash() uint32
	Verify([]byte, []byte) bool
} {
	v, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadOrCreateCosigner(t *testing.T) {
	p := filepath.Join(t.TempDir(), "collector.key")
	c1, err := LoadOrCreateCosigner(p, "tollgate-collector")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := LoadOrCreateCosigner(p, "tollgate-collector")
	if err != nil || c2.VerifierKey != c1.VerifierKey {
		t.Fatalf("reload: %v", err)
	}
	pub, _ := os.ReadFile(p + ".pub")
	if strings.TrimSpace(string(pub)) != c1.VerifierKey {
		t.Fatalf("pub file %q", pub)
	}
	os.Chmod(p, 0o644)
	if _, err := LoadOrCreateCosigner(p, "tollgate-collector"); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

func TestParseConfig(t *testing.T) {
	ok := "listen: 127.0.0.1:8443\ninsecure_loopback: true\ndatabase: {dsn: \"host=127.0.0.1 dbname=c\"}\nsigning_key: k\n"
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.SilenceAfter) != DefaultSilenceAfter {
		t.Fatalf("silence_after default %v", c.SilenceAfter)
	}
	if c.Retention != 0 {
		t.Fatalf("retention default %v, want 0 (keep everything)", c.Retention)
	}
	if c, err := ParseConfig([]byte(ok + "retention: 30d\n")); err != nil || time.Duration(c.Retention) != 30*24*time.Hour {
		t.Fatalf("retention 30d: %v, %v", c, err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", ok + "keep: 30d\n", "field keep not found"},
		{"negative retention", ok + "retention: -1h\n", "retention must not be negative"},
		{"plain http off loopback", strings.Replace(ok, "127.0.0.1", "10.0.0.1", 1), "only on a loopback address"},
		{"plain http without the flag", strings.Replace(ok, "insecure_loopback: true\n", "", 1), "insecure_loopback: true"},
		{"tls half", ok + "tls: {cert: c.pem}\n", "both cert and key"},
		{"password in dsn", strings.Replace(ok, "dbname=c", "dbname=c password=hunter2", 1), "password_file"},
		{"no dsn", strings.Replace(ok, "database: {dsn: \"host=127.0.0.1 dbname=c\"}\n", "", 1), "dsn is required"},
		{"no key", strings.Replace(ok, "signing_key: k\n", "", 1), "signing_key is required"},
		{"bad silence", ok + "silence_after: 0s\n", "silence_after must be positive"},
		{"metrics off loopback", ok + "metrics_listen: 0.0.0.0:9465\n", "metrics_listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(fmtErr(err), "hunter2") {
				t.Fatal("error echoes the password")
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPackagedConfig: the collector.yaml the packages install is valid.
func TestPackagedConfig(t *testing.T) {
	if _, err := LoadConfig("../../packaging/collector.yaml"); err != nil {
		t.Fatal(err)
	}
}
