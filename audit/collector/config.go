// SPDX-License-Identifier: Apache-2.0

package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tollgate-dev/tollgate/policy"
	"go.yaml.in/yaml/v3"
)

// DefaultSilenceAfter is how long an enrolled host may stay silent before
// it is flagged, when silence_after is not set.
const DefaultSilenceAfter = 5 * time.Minute

// Config is collector.yaml. Unknown keys are an error.
type Config struct {
	// Listen is the address the service listens on, host:port.
	Listen string `yaml:"listen"`
	// TLS is the server certificate and key (PEM files). Required unless
	// InsecureLoopback is set and Listen is a loopback address.
	TLS TLSConfig `yaml:"tls"`
	// InsecureLoopback allows plain HTTP, and only on a loopback address.
	InsecureLoopback bool `yaml:"insecure_loopback"`
	// Database is the PostgreSQL store.
	Database Database `yaml:"database"`
	// SigningKey is the path of the collector's cosigning key, created
	// (0600, with a .pub next to it) the first time.
	SigningKey string `yaml:"signing_key"`
	// SilenceAfter is how long an enrolled host may send nothing before
	// it is flagged silent (a misbehavior entry); default 5m.
	SilenceAfter policy.Duration `yaml:"silence_after"`
	// MetricsListen is the loopback address and port /metrics is served
	// on; empty serves no metrics.
	MetricsListen string `yaml:"metrics_listen"`
	// Retention is how long records are kept: day partitions whose whole
	// day is older than it are dropped, their leaf hashes kept. Zero (the
	// default) keeps every record.
	Retention policy.Duration `yaml:"retention"`
}

// TLSConfig names the server certificate and key files.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Database is the PostgreSQL connection. The password is never in the DSN:
// it comes from PasswordFile (or from the server's trust of the socket).
type Database struct {
	// DSN is a libpq connection string or URL without a password.
	DSN string `yaml:"dsn"`
	// PasswordFile holds the password (first line), mode 0600 or stricter.
	PasswordFile string `yaml:"password_file"`
}

// LoadConfig reads and checks collector.yaml. Relative paths in it are
// taken relative to the file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("collector config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.TLS.Cert, &c.TLS.Key, &c.Database.PasswordFile, &c.SigningKey} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, nil
}

// ParseConfig parses and checks collector.yaml's content.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{SilenceAfter: policy.Duration(DefaultSilenceAfter)}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.MetricsListen != "" {
		ap, err := netip.ParseAddrPort(c.MetricsListen)
		if err != nil || !ap.Addr().IsLoopback() {
			return bad("metrics_listen %q: want a loopback address and port such as 127.0.0.1:9465 (the endpoint has no authentication)", c.MetricsListen)
		}
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return bad("listen %q: want host:port", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return bad("tls needs both cert and key")
	}
	if c.TLS.Cert == "" {
		ip, err := netip.ParseAddr(host)
		if !c.InsecureLoopback || err != nil || !ip.IsLoopback() {
			return bad("listen %q without tls: plain HTTP is allowed only on a loopback address with insecure_loopback: true", c.Listen)
		}
	} else if c.InsecureLoopback {
		return bad("insecure_loopback with tls set: remove one")
	}
	if c.Database.DSN == "" {
		return bad("database.dsn is required")
	}
	pc, err := pgxpool.ParseConfig(c.Database.DSN)
	if err != nil {
		return bad("database.dsn: %v", redactErr(err))
	}
	if pc.ConnConfig.Password != "" {
		return bad("database.dsn holds a password: put it in database.password_file")
	}
	if c.SigningKey == "" {
		return bad("signing_key is required")
	}
	if c.SilenceAfter <= 0 {
		return bad("silence_after must be positive")
	}
	if c.Retention < 0 {
		return bad("retention must not be negative (leave it out to keep every record)")
	}
	return nil
}

// redactErr keeps a DSN parse error from echoing the DSN.
func redactErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, ":"); i > 0 && strings.Contains(s, "cannot parse") {
		return "cannot parse the connection string"
	}
	return s
}

// PoolConfig returns the pgxpool config: the DSN with the password read
// from PasswordFile.
func (c *Config) PoolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(c.Database.DSN)
	if err != nil {
		return nil, fmt.Errorf("database.dsn: %s", redactErr(err))
	}
	if c.Database.PasswordFile != "" {
		fi, err := os.Stat(c.Database.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("database password: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("database password file %s has mode %#o: others than its owner can read it; chmod 600 it", c.Database.PasswordFile, fi.Mode().Perm())
		}
		b, err := os.ReadFile(c.Database.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("database password: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pc.ConnConfig.Password = strings.TrimRight(line, "\r")
	}
	return pc, nil
}
