// SPDX-License-Identifier: Apache-2.0

package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy"
)

func TestLoadDesignExample(t *testing.T) {
	c, err := policy.Load("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Workloads[0]; got.Name != "ci-runner" || got.Cgroup != "/system.slice/gitlab-runner.service" || got.UID != nil {
		t.Errorf("workload = %+v", got)
	}
	tg := c.Targets[0]
	if tg.Protocol != policy.ProtocolPostgres || tg.ClientAuth != policy.ClientAuthOIDC || tg.Upstream.SSLMode != policy.SSLModeVerifyFull {
		t.Errorf("target = %+v", tg)
	}
	ms, err := tg.Matches()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	if want := []string{"db.internal:5432", "10.20.0.0/16:5432", "127.0.0.2:5432"}; !reflect.DeepEqual(got, want) {
		t.Errorf("matches = %q, want %q", got, want)
	}
	if want := map[string]string{"repository": "org/app"}; !reflect.DeepEqual(c.Identities[1].OIDC.Claims, want) {
		t.Errorf("claims = %v, want %v", c.Identities[1].OIDC.Claims, want)
	}
	r := c.Rules[1]
	if r.Action != policy.ActionReview || r.Approvers.Min != 1 || time.Duration(r.Approvers.Timeout) != 15*time.Minute {
		t.Errorf("rule = %+v", r)
	}
	if c.Masking[1].Detectors[0] != policy.DetectorCardNumber || c.Masking[0].Style != policy.MaskPartial {
		t.Errorf("masking = %+v", c.Masking)
	}
	if time.Duration(c.Audit.Retention) != 400*24*time.Hour || time.Duration(c.Audit.Ship.Interval) != time.Second {
		t.Errorf("audit = %+v", c.Audit)
	}
}

func TestDefault(t *testing.T) {
	c := policy.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := policy.Audit{
		Sync:               policy.SyncAlways,
		FlushInterval:      policy.Duration(10 * time.Millisecond),
		CheckpointInterval: policy.Duration(time.Second),
		Retention:          policy.Duration(400 * 24 * time.Hour),
		Ship:               policy.Ship{Interval: policy.Duration(time.Second)},
	}
	if c.HostID != "" || c.StateDir != "/var/lib/tollgate" || c.APISocket != "/run/tollgate/api.sock" ||
		c.BPFPinPath != "/sys/fs/bpf/tollgate" || c.ListenAddress != "127.0.0.1" || c.Audit != want {
		t.Errorf("Default() = %+v", c)
	}
}

func TestParseKeepsDefaults(t *testing.T) {
	c, err := policy.Parse([]byte("host_id: h1\naudit:\n  retention: 30d\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/tollgate" || c.Audit.Sync != policy.SyncAlways ||
		time.Duration(c.Audit.CheckpointInterval) != time.Second || time.Duration(c.Audit.Retention) != 30*24*time.Hour {
		t.Errorf("Parse = %+v", c)
	}
}

func TestParseSyncBatch(t *testing.T) {
	c, err := policy.Parse([]byte("host_id: h1\naudit:\n  sync: batch\n  flush_interval: 5ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Sync != policy.SyncBatch || time.Duration(c.Audit.FlushInterval) != 5*time.Millisecond {
		t.Errorf("audit = %+v", c.Audit)
	}
	c, err = policy.Parse([]byte("host_id: h1\naudit:\n  sync: batch\n"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Audit.FlushInterval) != policy.DefaultFlushInterval {
		t.Errorf("flush interval %v, want the default", c.Audit.FlushInterval)
	}
	if _, err := policy.Parse([]byte("host_id: h1\naudit:\n  sync: lazy\n")); err == nil ||
		!strings.Contains(err.Error(), `audit.sync (line 3): unknown sync mode "lazy" (want always or batch)`) {
		t.Errorf("sync: lazy: %v", err)
	}
}

// tcpTarget is a valid target entry to build test configs from.
const tcpTarget = `targets:
  - name: a
    protocol: tcp
    match: ["10.0.0.1:22"]
`

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		yaml string
		want []string // the error's lines
		is   error
	}{{
		name: "unknown key",
		yaml: "host_id: h1\nstate_dir: /var/lib/tollgate\napi_socket: /run/t.sock\n" +
			"bpf_pin_path: /sys/fs/bpf/t\nworkloads: []\ntargets: []\nliste_address: 127.0.0.1\n",
		want: []string{`config line 7: unknown key "liste_address"`},
		is:   policy.ErrUnknownKey,
	}, {
		name: "unknown nested key",
		yaml: tcpTarget + "    upstrem: {user: u}\n" + "audit: {sync: always, retain: 1d}\n",
		want: []string{
			`targets[0] (line 5): unknown key "upstrem"`,
			`audit (line 6): unknown key "retain"`,
		},
		is: policy.ErrUnknownKey,
	}, {
		name: "type error",
		yaml: tcpTarget + "    listen_port: abc\n",
		want: []string{"targets[0].listen_port (line 5): cannot unmarshal !!str `abc` into int"},
	}, {
		name: "type error of a collection on its own line",
		yaml: tcpTarget + "    upstream:\n      [u]\n",
		want: []string{"targets[0].upstream (line 6): cannot unmarshal !!seq into policy.Upstream"},
	}, {
		name: "type error in flow mapping",
		yaml: "workloads: [{name: w, uid: -1}]\n",
		want: []string{"workloads (line 1): cannot unmarshal !!int `-1` into uint32"},
	}, {
		name: "bad duration",
		yaml: "audit:\n  retention: 4x\n  checkpoint_interval: 1s\n  ship: {interval: [1s]}\n",
		want: []string{
			`audit.retention (line 2): bad duration "4x" (want a number and a unit, like 90s, 15m, 1h30m or 400d)`,
			`audit.ship (line 4): want a duration like 15m or 400d`,
		},
	}, {
		name: "bad CIDR",
		yaml: tcpTarget + "  - name: b\n    protocol: tcp\n    match:\n      - 10.0.0.0/33:5432\n",
		want: []string{`targets[1].match[0] (line 8): bad CIDR "10.0.0.0/33"`},
	}, {
		name: "missing port",
		yaml: tcpTarget + "  - name: b\n    protocol: tcp\n    match: [db.internal]\n",
		want: []string{`targets[1].match[0] (line 7): missing port in "db.internal" (like db.internal:5432)`},
	}, {
		name: "duplicate target",
		yaml: tcpTarget + "  - name: a\n    protocol: tcp\n    match: [\"10.0.0.1:23\"]\n",
		want: []string{`targets[1].name (line 5): duplicate target name "a", already at targets[0] (line 2)`},
	}, {
		name: "same destination twice",
		yaml: tcpTarget + "  - name: b\n    protocol: tcp\n    match: [\"[::ffff:10.0.0.1]:22\"]\n",
		want: []string{`targets[1].match[0] (line 7): "[::ffff:10.0.0.1]:22" is already a destination of target "a" at targets[0].match[0] (line 4)`},
	}, {
		name: "workload with two selectors",
		yaml: "workloads:\n  - name: ci\n    cgroup: /ci.slice\n    uid: 1001\n",
		want: []string{`workloads[0] (line 2): set only one of cgroup, unit and uid, not cgroup and uid`},
	}, {
		name: "unknown rule references",
		yaml: tcpTarget + "rules:\n  - id: r1\n    when: {identities: [ghost], targets: [a, b]}\n    action: allow\n",
		want: []string{
			`rules[0].when.identities[0] (line 7): unknown identity "ghost"`,
			`rules[0].when.targets[1] (line 7): unknown target "b"`,
		},
	}, {
		name: "every problem at once",
		yaml: "listen_address: 0.0.0.0\nworkloads:\n  - cgroup: system.slice\n" +
			"rules:\n  - id: r\n    action: review\n    when: {classes: [selct]}\n",
		want: []string{
			`listen_address (line 1): "0.0.0.0" is not a loopback address: the proxy listens only on loopback`,
			`workloads[0].name (line 3): required`,
			`workloads[0].cgroup (line 3): "system.slice" must start with / (paths are relative to the cgroup2 mount, like /system.slice/cron.service)`,
			`rules[0].when.classes[0] (line 7): unknown class "selct" (want one of select, insert, update, delete, update_without_where, delete_without_where, ddl, truncate, grant, copy_in, copy_out, copy, function_call, transaction, set, multi_statement, unknown, empty, exec, shell, sftp, subsystem, forward_local, forward_remote, agent_forward, x11)`,
			`rules[0].approvers (line 5): review needs approvers: identities, groups or both`,
			`rules[0].approvers (line 5): approvers prove who they are with OIDC tokens: add oidc.issuers`,
			`rules[0].approvers.timeout (line 5): review needs a positive timeout, like 15m`,
		},
	}, {
		name: "empty",
		yaml: "",
		want: []string{"config is empty"},
		is:   policy.ErrEmpty,
	}, {
		name: "only comments",
		yaml: "# nothing yet\n\n",
		want: []string{"config is empty"},
		is:   policy.ErrEmpty,
	}, {
		name: "null document",
		yaml: "---\n",
		want: []string{"config is empty"},
		is:   policy.ErrEmpty,
	}, {
		name: "not a mapping",
		yaml: "- host_id: a\n",
		want: []string{"config line 1: want a mapping with keys such as listen_address and targets"},
	}, {
		name: "two documents",
		yaml: "host_id: a\n---\nhost_id: b\n",
		want: []string{"config line 2: more than one YAML document"},
	}, {
		name: "syntax",
		yaml: "host_id: a\ntargets: [\n",
		want: []string{"config line 2: did not find expected node content"},
	}, {
		name: "duplicate key",
		yaml: "host_id: a\nhost_id: b\n",
		want: []string{`host_id (line 2): mapping key "host_id" already defined at line 1`},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v) = false", tt.is)
			}
		})
	}
}

func TestFieldError(t *testing.T) {
	_, err := policy.Parse([]byte(tcpTarget + "    match: [x]\n"))
	var fe *policy.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("%v is not a FieldError", err)
	}
	if fe.Line != 5 {
		t.Errorf("line = %d, want 5", fe.Line)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := policy.Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	p := filepath.Join(dir, "t.yaml")
	if err := os.WriteFile(p, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Load(p)
	if want := "load " + p + `: config line 1: unknown key "bogus"`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
}

// validConfig is a config built in Go, with every kind of entry.
func validConfig() policy.Config {
	uid := uint32(0)
	c := policy.Default()
	c.Workloads = []policy.Workload{{Name: "root", UID: &uid}, {Name: "ci", Unit: "gitlab-runner.service"}}
	c.Targets = []policy.Target{{
		Name:       "db",
		Protocol:   policy.ProtocolPostgres,
		Match:      []string{"db.internal:5432", "[fd00::/64]:5432"},
		ListenPort: 15432,
		ClientAuth: policy.ClientAuthOIDC,
		Upstream:   policy.Upstream{User: "app", PasswordFile: "/etc/tollgate/db.pw", SSLMode: policy.SSLModeVerifyFull},
	}, {
		Name:     "ssh",
		Protocol: policy.ProtocolTCP,
		Match:    []string{"10.0.0.0/8:22"},
	}}
	c.OIDC.Issuers = []policy.Issuer{{URL: "https://issuer.example", Audience: "tollgate"}}
	c.Identities = []policy.Identity{
		{Name: "nightly", Process: &policy.ProcessIdentity{Exe: "/usr/bin/python3"}},
		{Name: "dba", OIDC: &policy.OIDCIdentity{Issuer: "https://issuer.example", Groups: []string{"dba"}}},
	}
	c.Rules = []policy.Rule{{
		ID:     "reads",
		When:   policy.Conditions{Identities: []string{"nightly"}, Targets: []string{"db"}, Classes: []policy.Class{policy.ClassSelect}},
		Action: policy.ActionAllow,
	}, {
		ID:        "ddl",
		When:      policy.Conditions{Classes: []policy.Class{policy.ClassDDL}},
		Action:    policy.ActionReview,
		Approvers: policy.Approvers{Identities: []string{"dba"}, Timeout: policy.Duration(time.Minute)},
	}}
	c.Masking = []policy.Masking{{
		ID: "pii", Targets: []string{"db"}, Columns: []string{"*.*.email"},
		Style: policy.MaskHash, HashKeyFile: "/etc/tollgate/secrets/mask.key",
		Binary: policy.BinaryNullify, Exempt: []string{"nightly"},
	}, {
		ID: "secrets", Detectors: []policy.Detector{policy.DetectorJWT, policy.DetectorIBAN},
		Patterns: []policy.Pattern{{Name: "ssn", Regex: `\b(?P<value>\d{3}-\d{2}-\d{4})\b`}},
		Style:    policy.MaskPartial, Keep: 2,
	}}
	return c
}

func TestValidate(t *testing.T) {
	if c := validConfig(); c.Validate() != nil {
		t.Fatalf("validConfig: %v", c.Validate())
	}
	uid := uint32(1)
	for _, tt := range []struct {
		name   string
		mutate func(c *policy.Config)
		want   string
	}{
		{"host id", func(c *policy.Config) { c.HostID = "a/b" },
			`host_id: bad host id "a/b" (want letters, digits, '.', '-' and '_')`},
		{"state dir", func(c *policy.Config) { c.StateDir = "var/lib" },
			`state_dir: "var/lib" is not an absolute path`},
		{"unclean path", func(c *policy.Config) { c.BPFPinPath = "/sys/fs/bpf/../t" },
			`bpf_pin_path: "/sys/fs/bpf/../t" is not a clean path (want "/sys/fs/t")`},
		{"long socket", func(c *policy.Config) { c.APISocket = "/" + strings.Repeat("s", 107) },
			`api_socket: "/` + strings.Repeat("s", 107) + `" is too long for a unix socket (at most 107 bytes)`},
		{"listen not ip", func(c *policy.Config) { c.ListenAddress = "localhost" },
			`listen_address: "localhost" is not an IP address (want a loopback address like 127.0.0.1)`},
		{"listen not loopback", func(c *policy.Config) { c.ListenAddress = "10.0.0.1" },
			`listen_address: "10.0.0.1" is not a loopback address: the proxy listens only on loopback`},
		{"workload no selector", func(c *policy.Config) { c.Workloads[0].UID = nil },
			`workloads[0]: set one of cgroup, unit and uid`},
		{"workload name", func(c *policy.Config) { c.Workloads[1].Name = "-x" },
			`workloads[1].name: bad workload name "-x" (want at most 63 letters, digits, '.', '-' and '_', starting with a letter or digit)`},
		{"duplicate workload", func(c *policy.Config) { c.Workloads[1].Name = "root" },
			`workloads[1].name: duplicate workload name "root", already at workloads[0]`},
		{"bad unit", func(c *policy.Config) { c.Workloads[1].Unit = "gitlab runner" },
			`workloads[1].unit: bad systemd unit "gitlab runner" (want a name like nightly.service, .scope or .slice)`},
		{"template unit", func(c *policy.Config) { c.Workloads[1].Unit = "runner@.service" },
			`workloads[1].unit: bad systemd unit "runner@.service" (want a name like nightly.service, .scope or .slice)`},
		{"unclean cgroup", func(c *policy.Config) { c.Workloads[1] = policy.Workload{Name: "ci", Cgroup: "/a//b/"} },
			`workloads[1].cgroup: "/a//b/" is not a clean path (want "/a/b")`},
		{"unix socket tcp target", func(c *policy.Config) { c.Targets[1].Match = []string{"unix:/run/pg/.s.PGSQL.5432"} },
			`targets[1].match[0]: unix sockets are protected for postgres targets only`},
		{"unix socket with upstream tls", func(c *policy.Config) { c.Targets[0].Match = []string{"unix:/run/pg/.s.PGSQL.5432"} },
			`targets[0].match[0]: a unix socket has no TLS: set upstream.sslmode to disable, or name the server's TCP address`},
		{"unix socket twice", func(c *policy.Config) {
			c.Targets[0].Upstream.SSLMode = policy.SSLModeDisable
			c.Targets[0].Match = []string{"unix:/run/pg/.s.PGSQL.5432", "unix:/run/pg/.s.PGSQL.5432"}
		}, `targets[0].match[1]: "unix:/run/pg/.s.PGSQL.5432" is already a destination of target "db" at targets[0].match[0]`},
		{"protocol", func(c *policy.Config) { c.Targets[1].Protocol = "telnet" },
			`targets[1].protocol: unknown protocol "telnet" (want postgres, ssh or tcp)`},
		{"log", func(c *policy.Config) { c.Log = policy.Log{Level: "verbose", Format: "xml"} },
			"log.level: unknown level \"verbose\" (want debug, info, warn or error)\n" +
				"log.format: unknown format \"xml\" (want text or json)"},
		{"ssh upstream", func(c *policy.Config) { c.Targets[1].Protocol = "ssh" },
			"targets[1].upstream.user: required: the login tollgate uses on the target\n" +
				"targets[1].upstream.known_hosts: required (an absolute path)"},
		{"ssh postgres settings", func(c *policy.Config) {
			c.Targets[1].Protocol = "ssh"
			c.Targets[1].Upstream = policy.Upstream{User: "deploy", KnownHosts: "/etc/tollgate/known_hosts", SSLMode: "require"}
		}, `targets[1].upstream.sslmode: not an ssh setting (ssh targets use user, known_hosts and key_file)`},
		{"ssh ciphers", func(c *policy.Config) {
			c.Targets[1].Protocol = "ssh"
			c.Targets[1].Upstream = policy.Upstream{User: "deploy", KnownHosts: "/etc/tollgate/known_hosts"}
			c.Targets[1].Ciphers = []string{policy.SSHCipherChaCha20, "aes128-cbc", policy.SSHCipherChaCha20}
		}, "targets[1].ciphers[1]: unknown cipher \"aes128-cbc\" (want one of aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr, aes192-ctr, aes256-ctr)\n" +
			`targets[1].ciphers[2]: "chacha20-poly1305@openssh.com" is listed twice`},
		{"ciphers on postgres", func(c *policy.Config) { c.Targets[0].Ciphers = []string{policy.SSHCipherAES128GCM} },
			`targets[0].ciphers: only ssh targets have ciphers`},
		{"forward without destinations", func(c *policy.Config) {
			c.Rules = append(c.Rules, policy.Rule{ID: "fwd", Action: "allow", When: policy.Conditions{Classes: []policy.Class{"forward_local"}}})
		}, `rules[2].when.forwards: required: a rule that allows port forwarding names the destinations it allows`},
		{"bad forward", func(c *policy.Config) {
			c.Rules = append(c.Rules, policy.Rule{ID: "fwd", Action: "deny", When: policy.Conditions{Forwards: []string{"db.internal"}, Commands: []string{" "}}})
		}, "rules[2].when.commands[0]: empty command pattern\nrules[2].when.forwards[0]: \"db.internal\" is not a host:port pattern"},
		{"no match", func(c *policy.Config) { c.Targets[1].Match = nil },
			`targets[1].match: required: at least one destination, like db.internal:5432`},
		{"bad match", func(c *policy.Config) { c.Targets[1].Match = []string{"10.0.0.0/33:22"} },
			`targets[1].match[0]: bad CIDR "10.0.0.0/33"`},
		{"same match", func(c *policy.Config) { c.Targets[1].Match = []string{"DB.internal.:5432"} },
			`targets[1].match[0]: "DB.internal.:5432" is already a destination of target "db" at targets[0].match[0]`},
		{"listen port range", func(c *policy.Config) { c.Targets[1].ListenPort = 65536 },
			`targets[1].listen_port: port 65536 out of range (1-65535, or 0 to choose one at start)`},
		{"listen port twice", func(c *policy.Config) { c.Targets[1].ListenPort = 15432 },
			`targets[1].listen_port: port 15432 is also the listen_port of targets[0].listen_port`},
		{"client auth unknown", func(c *policy.Config) { c.Targets[0].ClientAuth = "password" },
			`targets[0].client_auth: unknown client_auth "password" (want oidc or process)`},
		{"client auth tcp", func(c *policy.Config) { c.Targets[1].ClientAuth = policy.ClientAuthProcess },
			`targets[1].client_auth: only postgres and ssh targets have client_auth`},
		{"client auth without issuers", func(c *policy.Config) {
			c.OIDC.Issuers = nil
			c.Identities = c.Identities[:1]
			c.Rules = c.Rules[:1]
		}, `targets[0].client_auth: oidc needs at least one entry in oidc.issuers`},
		{"sslmode", func(c *policy.Config) { c.Targets[0].Upstream.SSLMode = "prefer" },
			`targets[0].upstream.sslmode: unknown sslmode "prefer" (want disable, require, verify-ca or verify-full)`},
		{"upstream missing", func(c *policy.Config) { c.Targets[0].Upstream = policy.Upstream{} },
			"targets[0].upstream.user: required: the role tollgate logs in as\n" +
				"targets[0].upstream.password_file: required (an absolute path)\n" +
				"targets[0].upstream.sslmode: required (disable, require, verify-ca or verify-full)"},
		{"upstream on tcp", func(c *policy.Config) { c.Targets[1].Upstream.User = "x" },
			`targets[1].upstream: only postgres targets have an upstream login`},
		{"tls on tcp", func(c *policy.Config) { c.Targets[1].TLS = &policy.ClientTLS{CertFile: "/c", KeyFile: "/k"} },
			`targets[1].tls: only postgres targets offer TLS to clients`},
		{"tls paths", func(c *policy.Config) { c.Targets[0].TLS = &policy.ClientTLS{CertFile: "cert.pem"} },
			"targets[0].tls.cert_file: \"cert.pem\" is not an absolute path\n" +
				"targets[0].tls.key_file: required (an absolute path)"},
		{"issuer http", func(c *policy.Config) { c.OIDC.Issuers[0].URL = "http://issuer.example" },
			`oidc.issuers[0].url: "http://issuer.example" must use https (http only on localhost and loopback addresses)` + "\n" +
				`identities[1].oidc.issuer: issuer "https://issuer.example" is not in oidc.issuers`},
		{"issuer no audience", func(c *policy.Config) { c.OIDC.Issuers[0].Audience = "" },
			`oidc.issuers[0].audience: required: the aud a token must carry`},
		{"issuer not a URL", func(c *policy.Config) {
			c.OIDC.Issuers = append(c.OIDC.Issuers, policy.Issuer{URL: "issuer.example", Audience: "a"})
		}, `oidc.issuers[1].url: bad URL "issuer.example" (want https://host/...)`},
		{"identity empty", func(c *policy.Config) { c.Identities[0].Process = nil },
			`identities[0]: set process, oidc or both`},
		{"identity process empty", func(c *policy.Config) { c.Identities[0].Process = &policy.ProcessIdentity{} },
			`identities[0].process: set at least one of unit, cgroup, uid and exe`},
		{"identity exe", func(c *policy.Config) { c.Identities[0].Process = &policy.ProcessIdentity{UID: &uid, Exe: "python3"} },
			`identities[0].process.exe: "python3" is not an absolute path`},
		{"identity issuer only", func(c *policy.Config) { c.Identities[1].OIDC.Groups = nil },
			`identities[1].oidc: set subject, claims or groups: an issuer alone matches anyone it signs a token for`},
		{"identity claim", func(c *policy.Config) { c.Identities[1].OIDC.Claims = map[string]string{"repo": ""} },
			`identities[1].oidc.claims.repo: claim names and values must not be empty`},
		{"rule id", func(c *policy.Config) { c.Rules[1].ID = "reads" },
			`rules[1].id: duplicate rule id "reads", already at rules[0]`},
		{"rule action", func(c *policy.Config) { c.Rules[0].Action = "permit" },
			`rules[0].action: unknown action "permit" (want allow, deny, review or mask)`},
		{"rule unknown target", func(c *policy.Config) { c.Rules[0].When.Targets = []string{"db", "orders"} },
			`rules[0].when.targets[1]: unknown target "orders"`},
		{"approvers on allow", func(c *policy.Config) { c.Rules[0].Approvers.Groups = []string{"dba"} },
			`rules[0].approvers: only review rules have approvers`},
		{"approver without oidc", func(c *policy.Config) { c.Rules[1].Approvers.Identities = []string{"nightly"} },
			`rules[1].approvers.identities[0]: identity "nightly" has no oidc section: approvers prove who they are with OIDC tokens`},
		{"approver min", func(c *policy.Config) { c.Rules[1].Approvers.Min = -1 },
			`rules[1].approvers.min: -1 approvers: want 1 or more (0 means 1)`},
		{"masking target", func(c *policy.Config) { c.Masking[0].Targets = []string{"nope"} },
			`masking[0].targets[0]: unknown target "nope"`},
		{"masking nothing", func(c *policy.Config) { c.Masking[0].Columns = nil; c.Masking[0].Binary = "" },
			`masking[0]: set columns, detectors, patterns or several of them`},
		{"masking style", func(c *policy.Config) { c.Masking[1].Style = "blur"; c.Masking[1].Keep = 0 },
			`masking[1].style: unknown style "blur" (want redact, partial or hash)`},
		{"masking detector", func(c *policy.Config) { c.Masking[0].Detectors = []policy.Detector{"ssn"} },
			`masking[0].detectors[0]: unknown detector "ssn" (want one of email, card_number, iban, aws_access_key, gcp_key, azure_key, jwt, private_key, password)`},
		{"masking column parts", func(c *policy.Config) { c.Masking[0].Columns = []string{"customers.email", "a..b", ""} },
			"masking[0].columns[0]: bad column pattern \"customers.email\" (want schema.table.column, each part a name or a glob with *, like *.*.ssn)\n" +
				"masking[0].columns[1]: bad column pattern \"a..b\" (want schema.table.column, each part a name or a glob with *, like *.*.ssn)\n" +
				"masking[0].columns[2]: empty column pattern"},
		{"masking pattern built-in name", func(c *policy.Config) { c.Masking[1].Patterns[0].Name = "email" },
			`masking[1].patterns[0].name: "email" is a built-in detector: list it in detectors instead`},
		{"masking pattern duplicate", func(c *policy.Config) {
			c.Masking[1].Patterns = append(c.Masking[1].Patterns, policy.Pattern{Name: "ssn", Regex: "x"})
		}, `masking[1].patterns[1].name: duplicate pattern name "ssn", already at masking[1].patterns[0]`},
		{"masking pattern bad regex", func(c *policy.Config) { c.Masking[1].Patterns[0].Regex = "(a" },
			"masking[1].patterns[0].regex: bad regex: error parsing regexp: missing closing ): `(a`"},
		{"masking pattern empty match", func(c *policy.Config) { c.Masking[1].Patterns[0].Regex = `\d*` },
			`masking[1].patterns[0].regex: regex "\\d*" can match an empty string`},
		{"masking pattern boundary", func(c *policy.Config) { c.Masking[1].Patterns[0].Regex = `\b|x` },
			`masking[1].patterns[0].regex: regex "\\b|x" can match an empty string`},
		{"masking pattern no regex", func(c *policy.Config) { c.Masking[1].Patterns[0].Regex = "" },
			`masking[1].patterns[0].regex: required`},
		{"masking keep not partial", func(c *policy.Config) { c.Masking[0].Keep = 3 },
			`masking[0].keep: only the partial style keeps characters`},
		{"masking keep range", func(c *policy.Config) { c.Masking[1].Keep = 17 },
			`masking[1].keep: keep 17 out of range (0 to 16; 0 means 4)`},
		{"masking hash without key", func(c *policy.Config) { c.Masking[0].HashKeyFile = "" },
			`masking[0].hash_key_file: required by the hash style (an absolute path to a root-only key file): an unkeyed hash can be reversed by trying every value`},
		{"masking hash key relative", func(c *policy.Config) { c.Masking[0].HashKeyFile = "mask.key" },
			`masking[0].hash_key_file: "mask.key" is not an absolute path`},
		{"masking key without hash", func(c *policy.Config) { c.Masking[1].HashKeyFile = "/k" },
			`masking[1].hash_key_file: only the hash style uses a key`},
		{"masking binary", func(c *policy.Config) { c.Masking[0].Binary = "null" },
			`masking[0].binary: unknown binary action "null" (want refuse or nullify)`},
		{"masking binary without columns", func(c *policy.Config) { c.Masking[1].Binary = policy.BinaryRefuse },
			`masking[1].binary: only entries with columns have a binary action`},
		{"masking exempt", func(c *policy.Config) { c.Masking[0].Exempt = []string{"nightly", "root"} },
			`masking[0].exempt[1]: unknown identity "root"`},
		{"audit sync", func(c *policy.Config) { c.Audit.Sync = "never" },
			`audit.sync: unknown sync mode "never" (want always or batch)`},
		{"audit flush interval", func(c *policy.Config) { c.Audit.Sync = policy.SyncBatch; c.Audit.FlushInterval = 0 },
			`audit.flush_interval: want a positive duration, not 0s`},
		{"audit flush interval long", func(c *policy.Config) {
			c.Audit.Sync = policy.SyncBatch
			c.Audit.FlushInterval = policy.Duration(2 * time.Second)
		}, `audit.flush_interval: 2s is more than 1s: a power loss could lose that much of the audit trail`},
		{"audit retention", func(c *policy.Config) { c.Audit.Retention = 0 },
			`audit.retention: want a positive duration, not 0s`},
		{"ship url", func(c *policy.Config) { c.Audit.Ship.URL = "https://collector.example/ingest?x=1" },
			`audit.ship.url: bad URL "https://collector.example/ingest?x=1": user info, query and fragment are not allowed`},
		{"ship url loopback http", func(c *policy.Config) { c.Audit.Ship.URL = "http://[::1]:8443"; c.Audit.Ship.CA = "ca.pem" },
			`audit.ship.ca: "ca.pem" is not an absolute path`},
		{"metrics not loopback", func(c *policy.Config) { c.Metrics.Listen = "0.0.0.0:9464" },
			`metrics.listen: 0.0.0.0 is not a loopback address: the endpoint has no authentication (put a TLS proxy in front to scrape it from elsewhere)`},
		{"metrics host name", func(c *policy.Config) { c.Metrics.Listen = "localhost:9464" },
			`metrics.listen: want a loopback address and port such as 127.0.0.1:9464, not "localhost:9464"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	data, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got, want := c.Hash(), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	// A Config built in Go hashes its YAML encoding: stable, and sensitive
	// to changes.
	g := validConfig()
	h := g.Hash()
	if !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 || g.Hash() != h {
		t.Errorf("Hash = %s", h)
	}
	g.Rules[0].Action = policy.ActionDeny
	if g.Hash() == h {
		t.Error("Hash did not change with the config")
	}
}

func TestValidateSSHCiphers(t *testing.T) {
	c := validConfig()
	c.Targets[1].Protocol = "ssh"
	c.Targets[1].Upstream = policy.Upstream{User: "deploy", KnownHosts: "/etc/tollgate/known_hosts"}
	for _, cs := range [][]string{nil, {policy.SSHCipherChaCha20, policy.SSHCipherAES256GCM}, policy.SSHCiphers} {
		c.Targets[1].Ciphers = cs
		if err := c.Validate(); err != nil {
			t.Errorf("ciphers %v: %v", cs, err)
		}
	}
}
