// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/report"
	"github.com/tollgate-dev/tollgate/policy"
)

// sshd is a real OpenSSH server started by the test on a loopback address.
// It trusts only tollgate's user CA: no authorized keys, no passwords.
type sshd struct {
	addr    string // 127.0.0.2
	port    int
	dir     string
	hostPub string // its host key, as a known_hosts key field
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan error
}

func requireSSHD(t testing.TB) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/sftp", "/usr/bin/scp", "/usr/bin/ssh-keygen", "/usr/bin/script", "/usr/bin/unshare", "/usr/bin/rsync"} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: CI must install openssh-server, openssh-client and rsync", p)
			}
			t.Skipf("%s missing (apt install openssh-server openssh-client)", p)
		}
	}
}

// keygen makes an Ed25519 key pair at path and returns the public key line.
func keygen(t testing.TB, path string) string {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", filepath.Base(path), "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// startSSHD starts sshd on addr with userCA (a public key line) as its
// only way in.
func startSSHD(t testing.TB, addr, userCA, authorized string) *sshd {
	t.Helper()
	// sshd refuses to start without its privilege separation directory,
	// which the package creates at boot through tmpfiles.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s := &sshd{addr: addr, port: freePort(t, addr), dir: t.TempDir(), log: &syncBuffer{}}
	pub := keygen(t, filepath.Join(s.dir, "host_key"))
	f := strings.Fields(pub)
	s.hostPub = f[0] + " " + f[1]
	if err := os.WriteFile(filepath.Join(s.dir, "user_ca.pub"), []byte(userCA+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second address on the same port serves a second target.
	conf := fmt.Sprintf(`ListenAddress %s:%d
ListenAddress 127.0.0.3:%[2]d
HostKey %s/host_key
PidFile %s/sshd.pid
TrustedUserCAKeys %s/user_ca.pub
AuthorizedKeysFile @KEYS@
MaxStartups 400
MaxSessions 100
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
Subsystem sftp internal-sftp
`, addr, s.port, s.dir, s.dir, s.dir)
	// Only benchmarks, which compare with a direct login, let a client key in.
	keys := "none"
	if authorized != "" {
		keys = filepath.Join(s.dir, "authorized_keys")
		if err := os.WriteFile(keys, []byte(authorized+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf = strings.ReplaceAll(conf, "@KEYS@", keys)
	cfgPath := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(s.stop)
	waitFor(t, "sshd listening", func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(s.port)), time.Second)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case err := <-s.done:
			t.Fatalf("sshd exited: %v\n%s", err, s.log.String())
		default:
		}
		return false
	})
	return s
}

func (s *sshd) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// sshSetup is an sshd target protected by a daemon, a workload cgroup and
// the workload's own home with its own key and known_hosts.
type sshSetup struct {
	d       *daemon
	target  *sshd
	cgroup  string
	oncall  string // a second workload, whose shells need a grant
	config  string // a third workload: configuration management (Ansible)
	home    string // bound on /root for the client: its ~/.ssh
	work    string // where commands on the target leave their marks
	known   string // the daemon's known_hosts for the target
	is      *testIssuer
	echo    *net.TCPAddr // a service a rule lets the workload forward to
	metrics string       // the daemon's metrics.listen
}

const sshPolicy = `oidc:
  issuers:
    - url: %[1]q
      audience: tollgate
identities:
  - name: deployer
    process: {cgroup: %[2]s}
  - name: ops
    oidc: {issuer: %[1]q, groups: [ops]}
  - name: oncall
    process: {cgroup: %[4]s}
  - name: ci-token
    oidc: {issuer: %[1]q, subject: ci}
  - name: config-mgmt
    process: {cgroup: %[6]s}
rules:
  - id: config-mgmt
    when: {identities: [config-mgmt], targets: [web], classes: [exec, sftp]}
    action: allow
  - id: token-commands
    when: {identities: [ci-token], targets: [web-oidc], classes: [exec], commands: ["echo **"]}
    action: allow
  - id: oncall-shell
    when: {identities: [oncall], targets: [web], classes: [shell]}
    action: review
    approvers: {groups: [ops], timeout: 5m}
  - id: deploy-commands
    when: {identities: [deployer], targets: [web], classes: [exec], commands: ["echo **", "true", "sleep **", "touch %[3]s/allowed", "sha256sum **", "rsync --server **"]}
    action: allow
  - id: deploy-files
    when: {identities: [deployer], targets: [web], classes: [sftp, shell]}
    action: allow
  - id: restart-review
    when: {identities: [deployer], targets: [web], commands: ["touch %[3]s/held-*"]}
    action: review
    approvers: {groups: [ops], timeout: 5m}
  - id: echo-forward
    when: {identities: [deployer], targets: [web], classes: [forward_local], forwards: ["127.0.0.1:%[5]d"]}
    action: allow
  - id: no-stop
    when: {commands: ["systemctl stop **"]}
    action: deny
    reason: stops go through change management
masking:
  - id: ssh-secrets
    targets: [web]
    detectors: [aws_access_key]
    style: redact
`

func newSSHSetup(t testing.TB) *sshSetup { return newSSHSetupWith(t, false, nil) }

// newSSHSetupWith is newSSHSetup; with direct, the target also accepts the
// workload's own key and the workload knows the target's host key, so a
// benchmark can compare with a direct login. ciphers, when set, are the
// web target's ciphers.
func newSSHSetupWith(t testing.TB, direct bool, ciphers []string) *sshSetup {
	t.Helper()
	requireRoot(t)
	requireSSHD(t)
	s := &sshSetup{cgroup: newCgroup(t), oncall: newCgroup(t), config: newCgroup(t), work: t.TempDir(), is: newTestIssuer(t),
		echo: echoServer(t, "tcp", "127.0.0.1:0", "fwd-echo")}
	cfg := newDaemonConfig(t, fmt.Sprintf("  - name: ssh-workload\n    cgroup: %s\n  - name: oncall\n    cgroup: %s\n  - name: config-mgmt\n    cgroup: %s",
		s.cgroup, s.oncall, s.config), "")
	// The CAs are made before the daemon starts, as an operator would
	// print the user CA line for the targets first.
	userCA, err := runTollgate("ssh", "user-ca", "--state-dir", cfg.StateDir)
	if err != nil {
		t.Fatalf("tollgate ssh user-ca: %v: %s", err, userCA)
	}
	// The workload's home: its own key, and (below) the one line that
	// makes its ssh trust the hosts tollgate presents.
	s.home = t.TempDir()
	os.Chmod(s.home, 0o700)
	os.MkdirAll(filepath.Join(s.home, ".ssh"), 0o700)
	clientKey := keygen(t, filepath.Join(s.home, ".ssh", "id_ed25519"))
	authorized := ""
	if direct {
		authorized = clientKey
	}
	s.target = startSSHD(t, "127.0.0.2", strings.TrimSpace(userCA), authorized)
	s.known = filepath.Join(t.TempDir(), "known_hosts")
	s.writeKnown(t, s.target.hostPub)
	webCiphers := ""
	if len(ciphers) > 0 {
		webCiphers = "    ciphers: [" + strings.Join(ciphers, ", ") + "]\n"
	}
	cfg.Targets = fmt.Sprintf("  - name: web\n    protocol: ssh\n    match: [\"127.0.0.2:%d\"]\n%s    upstream:\n      user: root\n      known_hosts: %s\n",
		s.target.port, webCiphers, s.known) +
		fmt.Sprintf("  - name: web-oidc\n    protocol: ssh\n    client_auth: oidc\n    match: [\"127.0.0.3:%d\"]\n    ciphers: [chacha20-poly1305@openssh.com, aes256-gcm@openssh.com]\n    upstream:\n      user: root\n      known_hosts: %s\n",
			s.target.port, s.known) + fmt.Sprintf(sshPolicy, s.is.URL, s.cgroup, s.work, s.oncall, s.echo.Port, s.config)
	cfg.Metrics = freeLoopbackAddr(t)
	s.metrics = cfg.Metrics
	s.d = startDaemon(t, cfg)

	line, err := runTollgate("ssh", "known-hosts", "--config", s.d.cfgPath)
	if err != nil || !strings.HasPrefix(line, "@cert-authority * ssh-ed25519 ") {
		t.Fatalf("tollgate ssh known-hosts: %v: %q", err, line)
	}
	if direct {
		line += fmt.Sprintf("[127.0.0.2]:%d %s\n", s.target.port, s.target.hostPub)
	}
	if err := os.WriteFile(filepath.Join(s.home, ".ssh", "known_hosts"), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *sshSetup) writeKnown(t testing.TB, key string) {
	t.Helper()
	line := fmt.Sprintf("[127.0.0.2]:%d %s\n[127.0.0.3]:%[1]d %[2]s\n", s.target.port, key)
	if err := os.WriteFile(s.known, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

// client runs an unmodified OpenSSH client program as the workload (in its
// cgroup when through) with the workload's home as ~ (OpenSSH reads ~ from
// the password database, so the home is bound on /root in a private mount
// namespace; the command line is the automation's own).
func (s *sshSetup) client(t testing.TB, ctx context.Context, through bool, stdin string, name string, args ...string) (string, string, error) {
	t.Helper()
	cg := ""
	if through {
		cg = s.cgroup
	}
	return s.clientIn(t, ctx, cg, stdin, name, args...)
}

// clientIn is client in the workload cgroup cg ("" for none).
func (s *sshSetup) clientIn(t testing.TB, ctx context.Context, cg, stdin string, name string, args ...string) (string, string, error) {
	t.Helper()
	return s.clientEnv(t, ctx, cg, nil, stdin, name, args...)
}

// clientEnv is clientIn with more environment variables.
func (s *sshSetup) clientEnv(t testing.TB, ctx context.Context, cg string, env []string, stdin string, name string, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"--mount", "--propagation", "private", "sh", "-c", `mount --bind "$0" /root && exec "$@"`, s.home, name}, args...)
	return runClient(t, ctx, cg, env, stdin, "unshare", full...)
}

// ssh runs `ssh -p <port> root@127.0.0.2 <args>` through interception.
func (s *sshSetup) ssh(t testing.TB, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"-p", strconv.Itoa(s.target.port), "-o", "BatchMode=yes", "root@127.0.0.2"}, args...)
	return s.client(t, ctx, true, "", "ssh", full...)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if ok := asExitError(err, &ee); ok {
		return ee.ExitCode()
	}
	return -1
}

func asExitError(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*ee = e
	}
	return ok
}

// channelOutput joins the recorded bytes of one stream of a session.
func channelOutput(recs []*audit.Record, session, stream string) string {
	var b bytes.Buffer
	for _, r := range recs {
		if r.Session == session && r.Kind == audit.KindChannelData && r.Detail[audit.DetailStream] == stream {
			d, _ := base64.StdEncoding.DecodeString(r.Detail[audit.DetailData])
			b.Write(d)
		}
	}
	return b.String()
}

// sessionOf returns the id of the ssh session whose exec request ran text.
func sessionOf(t *testing.T, recs []*audit.Record, text string) string {
	t.Helper()
	for _, r := range recs {
		if r.Kind == audit.KindChannelRequest && r.Statement != nil && r.Statement.Text == text {
			return r.Session
		}
	}
	t.Fatalf("no channel.request record for %q", text)
	return ""
}

func recordsOf(recs []*audit.Record, session string, kind audit.Kind) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Session == session && r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// writeRandom writes size random bytes to path and returns their SHA-256.
func writeRandom(t *testing.T, path string, size int) []byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		b := buf[:min(len(buf), size-n)]
		rand.Read(b)
		h.Write(b)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return h.Sum(nil)
}

// fileSum is the SHA-256 of a file.
func fileSum(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// checkCast validates an asciicast v2 file (a header object with version
// 2 and a size, then [time, code, data] events in time order, codes o, i
// or r) and returns its output events joined.
func checkCast(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var h struct {
		Version       int `json:"version"`
		Width, Height int
	}
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil || h.Version != 2 || h.Width <= 0 || h.Height <= 0 {
		t.Fatalf("cast header %q: %v", lines[0], err)
	}
	var out strings.Builder
	last := -1.0
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("cast event %q: %v", l, err)
		}
		at, ok1 := ev[0].(float64)
		code, ok2 := ev[1].(string)
		data, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || at < last || (code != "o" && code != "i" && code != "r") {
			t.Fatalf("cast event %q", l)
		}
		last = at
		if code == "o" {
			out.WriteString(data)
		}
	}
	return out.String()
}

// TestSSH carries unmodified ssh, scp and sftp through the proxy to a real
// sshd: commands decided by policy, held and approved, forwarding refused,
// shells and file transfers recorded, and the target's host key verified.
func TestSSH(t *testing.T) {
	s := newSSHSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	t.Run("exec", func(t *testing.T) {
		out, errOut, err := s.ssh(t, ctx, "echo hello")
		if err != nil || out != "hello\n" {
			t.Fatalf("ssh echo hello = %q, %v\nstderr: %s\ndaemon:\n%s", out, err, errOut, s.d.stderr.String())
		}
		// The target's own log names the identity and session.
		waitFor(t, "sshd's certificate login line", func() bool {
			return strings.Contains(s.target.log.String(), `Accepted certificate ID "tollgate identity=deployer session=`)
		})
		recs := s.d.settledRecords()
		id := sessionOf(t, recs, "echo hello")
		starts, ends := sessionRecords(recs)
		st := starts[id]
		if st.Detail["protocol"] != "ssh" || st.Identity == nil || st.Identity.Name != "deployer" ||
			!strings.HasPrefix(st.Detail["client_key"], "SHA256:") || st.Detail["login"] != "root" {
			t.Fatalf("session.start: %+v %+v", st.Detail, st.Identity)
		}
		if !strings.Contains(s.target.log.String(), st.Detail["key_id"]) {
			t.Fatalf("sshd log lacks key id %q:\n%s", st.Detail["key_id"], s.target.log.String())
		}
		req := recordsOf(recs, id, audit.KindChannelRequest)
		found := false
		for _, r := range req {
			if r.Statement != nil && r.Statement.Text == "echo hello" {
				found = r.Decision != nil && r.Decision.Action == "allow" && r.Decision.Rule == "deploy-commands" &&
					r.Seq < ends[id].Seq
			}
		}
		if !found {
			t.Fatalf("exec request record: %+v", req)
		}
		if got := channelOutput(recs, id, "out"); got != "hello\n" {
			t.Fatalf("recorded output %q", got)
		}
		closes := recordsOf(recs, id, audit.KindChannelClose)
		if len(closes) != 1 || closes[0].Detail[audit.DetailExitStatus] != "0" {
			t.Fatalf("channel.close: %+v", closes)
		}
	})

	t.Run("oidc token as the password", func(t *testing.T) {
		// The automation gives its token the way ssh takes passwords
		// without a terminal: an askpass program.
		askpass := filepath.Join(s.home, "askpass")
		os.WriteFile(askpass, []byte("#!/bin/sh\ncat /root/token\n"), 0o755)
		env := []string{"SSH_ASKPASS=/root/askpass", "SSH_ASKPASS_REQUIRE=force"}
		run := func(token string) (string, string, error) {
			os.WriteFile(filepath.Join(s.home, "token"), []byte(token+"\n"), 0o600)
			return s.clientEnv(t, ctx, s.cgroup, env, "", "ssh", "-p", strconv.Itoa(s.target.port), "root@127.0.0.3", "echo oidc")
		}
		out, errOut, err := run(s.is.Token(t, map[string]any{"sub": "ci"}))
		if err != nil || out != "oidc\n" {
			t.Fatalf("ssh with a token: %v %q\n%s", err, out, errOut)
		}
		recs := s.d.settledRecords()
		id := sessionOf(t, recs, "echo oidc")
		starts, _ := sessionRecords(recs)
		st := starts[id]
		if st.Identity == nil || st.Identity.Method != "oidc" || st.Identity.Subject != "ci" || st.Identity.Name != "ci-token" ||
			!strings.HasPrefix(st.Detail["client_key"], "SHA256:") {
			t.Fatalf("session.start identity %+v, detail %v", st.Identity, st.Detail)
		}
		_, errOut, err = run(s.is.Token(t, map[string]any{"sub": "ci", "exp": time.Now().Add(-time.Minute).Unix()}))
		if err == nil || !strings.Contains(errOut, "tollgate: token refused") {
			t.Fatalf("expired token: %v\n%s", err, errOut)
		}
	})

	t.Run("ciphers", func(t *testing.T) {
		// The proxy reads the client's list and offers only the first of
		// the target's ciphers that the client has: web has the default
		// (AES-GCM first, ChaCha20 last), web-oidc lists its own. OpenSSH
		// says in -v which it took; a client with none of them fails the
		// way sshd would fail it, naming the offer.
		port := strconv.Itoa(s.target.port)
		kexCipher := regexp.MustCompile(`kex: client->server cipher: (\S+)`)
		cipherOf := func(host string, args ...string) (string, string, string, error) {
			t.Helper()
			full := append(append([]string{"-v", "-p", port, "-o", "BatchMode=yes"}, args...), "root@"+host, "echo ciphers")
			out, errOut, err := s.client(t, ctx, true, "", "ssh", full...)
			if m := kexCipher.FindStringSubmatch(errOut); m != nil {
				return m[1], out, errOut, err
			}
			return "", out, errOut, err
		}
		if c, out, errOut, err := cipherOf("127.0.0.2"); err != nil || out != "ciphers\n" || c != policy.SSHCipherAES128GCM {
			t.Fatalf("OpenSSH's own list (chacha20 first) against the default: %v %q, cipher %q\n%s", err, out, c, errOut)
		}
		if c, out, errOut, err := cipherOf("127.0.0.2", "-c", policy.SSHCipherChaCha20); err != nil || out != "ciphers\n" || c != policy.SSHCipherChaCha20 {
			t.Fatalf("a client that allows only chacha20: %v %q, cipher %q\n%s", err, out, c, errOut)
		}
		_, _, errOut, err := cipherOf("127.0.0.2", "-c", "aes128-cbc")
		if want := "no matching cipher found. Their offer: " + strings.Join(policy.DefaultSSHCiphers, ","); err == nil || !strings.Contains(errOut, want) {
			t.Fatalf("aes128-cbc against the default list: %v, want %q in\n%s", err, want, errOut)
		}
		// web-oidc wants a token, so the login fails after the key
		// exchange; the exchange is what is checked.
		if c, _, errOut, _ := cipherOf("127.0.0.3"); c != policy.SSHCipherChaCha20 {
			t.Fatalf("web-oidc lists chacha20 first: cipher %q\n%s", c, errOut)
		}
		_, _, errOut, err = cipherOf("127.0.0.3", "-c", policy.SSHCipherAES128CTR)
		if want := "no matching cipher found. Their offer: chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"; err == nil || !strings.Contains(errOut, want) {
			t.Fatalf("aes128-ctr against web-oidc's list: %v, want %q in\n%s", err, want, errOut)
		}
	})

	t.Run("paramiko", func(t *testing.T) {
		// Debian's paramiko 2.12, as Fabric, Netmiko and Ansible's
		// paramiko connection use it: AES-CTR and no AES-GCM or ChaCha20,
		// and no @cert-authority lines, so it takes the host key on first
		// use (AutoAddPolicy, as such scripts commonly do). The script is
		// not named paramiko.py, which would import itself.
		script := `import sys, paramiko
c = paramiko.SSHClient()
c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.2", port=int(sys.argv[1]), username="root", key_filename="/root/.ssh/id_ed25519", allow_agent=False, look_for_keys=False)
_, out, _ = c.exec_command("echo paramiko")
sys.stdout.write(out.read().decode())
t = c.get_transport()
print(t.local_cipher, t.remote_cipher, file=sys.stderr)
c.close()
`
		if err := os.WriteFile(filepath.Join(s.home, "ssh_exec.py"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := s.client(t, ctx, true, "", "/usr/bin/python3", "/root/ssh_exec.py", strconv.Itoa(s.target.port))
		if err != nil || out != "paramiko\n" || strings.TrimSpace(errOut) != "aes128-ctr aes128-ctr" {
			t.Fatalf("paramiko through the proxy: %v %q\n%s", err, out, errOut)
		}
		sessionOf(t, s.d.settledRecords(), "echo paramiko")
	})

	t.Run("masked in the records", func(t *testing.T) {
		const key = "AKIAIOSFODNN7EXAMPLE"
		out, errOut, err := s.ssh(t, ctx, "echo "+key)
		if err != nil || out != key+"\n" {
			t.Fatalf("the client gets its output unmasked: %v %q %s", err, out, errOut)
		}
		recs := s.d.settledRecords()
		id := sessionOf(t, recs, "echo [MASKED:aws_access_key]")
		if got := channelOutput(recs, id, "out"); got != "[MASKED:aws_access_key]\n" {
			t.Fatalf("recorded output %q", got)
		}
		for _, r := range recs {
			if r.Session == id && strings.Contains(fmt.Sprint(r.Detail, r.Statement), key) {
				t.Fatalf("the key is in a record: %+v", r)
			}
		}
	})

	t.Run("own key refused by the target", func(t *testing.T) {
		// Directly, not intercepted: the target does not know the
		// workload's key (and its host key is not what tollgate shows).
		_, errOut, err := s.client(t, ctx, false, "", "ssh", "-p", strconv.Itoa(s.target.port), "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.2", "echo", "direct")
		if err == nil || !strings.Contains(errOut, "Permission denied") {
			t.Fatalf("direct login with the workload's key: %v\n%s", err, errOut)
		}
	})

	t.Run("denied", func(t *testing.T) {
		for _, cmd := range []string{
			"touch " + s.work + "/denied",
			"echo hi; touch " + s.work + "/compound",
			"systemctl stop app",
		} {
			out, errOut, err := s.ssh(t, ctx, cmd)
			if exitCode(err) != 1 || !strings.Contains(errOut, "tollgate: command denied") || out != "" {
				t.Fatalf("%q: exit %d, stdout %q, stderr %q", cmd, exitCode(err), out, errOut)
			}
		}
		if _, errOut, _ := s.ssh(t, ctx, "systemctl stop app"); !strings.Contains(errOut, `rule "no-stop": stops go through change management`) {
			t.Fatalf("deny reason missing: %q", errOut)
		}
		for _, f := range []string{"denied", "compound"} {
			if _, err := os.Stat(filepath.Join(s.work, f)); err == nil {
				t.Fatalf("a denied command ran on the target: %s exists", f)
			}
		}
		if _, errOut, err := s.ssh(t, ctx, "touch "+s.work+"/allowed"); err != nil {
			t.Fatalf("allowed touch: %v: %s", err, errOut)
		}
		if _, err := os.Stat(filepath.Join(s.work, "allowed")); err != nil {
			t.Fatal("the allowed command did not run")
		}
		recs := s.d.settledRecords()
		id := sessionOf(t, recs, "touch "+s.work+"/denied")
		for _, r := range recordsOf(recs, id, audit.KindChannelRequest) {
			if r.Statement != nil && r.Statement.Text == "touch "+s.work+"/denied" && (r.Decision == nil || r.Decision.Action != "deny") {
				t.Fatalf("denied request recorded as %+v", r.Decision)
			}
		}
	})

	t.Run("forwarding refused", func(t *testing.T) {
		_, errOut, err := s.ssh(t, ctx, "-W", "127.0.0.1:9")
		if err == nil || !strings.Contains(errOut, "tollgate: port forwarding to 127.0.0.1:9 denied") {
			t.Fatalf("ssh -W: %v\n%s", err, errOut)
		}
	})

	t.Run("forwarding a rule allows", func(t *testing.T) {
		dst := s.echo.String()
		full := []string{"-p", strconv.Itoa(s.target.port), "-o", "BatchMode=yes", "-W", dst, "root@127.0.0.2"}
		out, errOut, err := s.client(t, ctx, true, "ping\n", "ssh", full...)
		if err != nil || out != "fwd-echo\nping\n" {
			t.Fatalf("ssh -W %s: %v %q\n%s", dst, err, out, errOut)
		}
		recs := s.d.settledRecords()
		found := false
		for _, r := range recs {
			found = found || (r.Kind == audit.KindChannelOpen && r.Detail["forward"] == dst && r.Decision != nil &&
				r.Decision.Action == "allow" && r.Decision.Rule == "echo-forward")
		}
		if !found {
			t.Fatal("no channel.open record of the allowed forward")
		}
	})

	t.Run("hold", func(t *testing.T) {
		ops := filepath.Join(t.TempDir(), "token")
		os.WriteFile(ops, []byte(s.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"ops"}})+"\n"), 0o600)
		type result struct {
			out, errOut string
			err         error
		}
		run := func(cmd string) <-chan result {
			ch := make(chan result, 1)
			go func() {
				o, e, err := s.ssh(t, ctx, cmd)
				ch <- result{o, e, err}
			}()
			return ch
		}
		approvals := func() string {
			out, _ := runTollgate("approvals", "list", "--config", s.d.cfgPath)
			return out
		}
		heldID := func(cmd string) string {
			var id string
			waitFor(t, "a held command", func() bool {
				for _, l := range strings.Split(approvals(), "\n") {
					if strings.Contains(l, cmd) {
						id = strings.Fields(l)[0]
						return true
					}
				}
				return false
			})
			return id
		}
		cmd := "touch " + s.work + "/held-approved"
		res := run(cmd)
		id := heldID(cmd)
		if _, err := os.Stat(filepath.Join(s.work, "held-approved")); err == nil {
			t.Fatal("the held command ran before its approval")
		}
		if out, err := runTollgate("approve", id, "--token-file", ops, "--config", s.d.cfgPath); err != nil {
			t.Fatalf("approve: %v: %s", err, out)
		}
		r := <-res
		if r.err != nil || !strings.Contains(r.errOut, "held for approval "+id) {
			t.Fatalf("approved command: %v\nstderr: %s", r.err, r.errOut)
		}
		if _, err := os.Stat(filepath.Join(s.work, "held-approved")); err != nil {
			t.Fatal("the approved command did not run")
		}

		cmd = "touch " + s.work + "/held-denied"
		res = run(cmd)
		id = heldID(cmd)
		if out, err := runTollgate("deny", id, "--reason", "not today", "--token-file", ops, "--config", s.d.cfgPath); err != nil {
			t.Fatalf("deny: %v: %s", err, out)
		}
		r = <-res
		if exitCode(r.err) != 1 || !strings.Contains(r.errOut, "not today") {
			t.Fatalf("denied command: exit %d\nstderr: %s", exitCode(r.err), r.errOut)
		}
		if _, err := os.Stat(filepath.Join(s.work, "held-denied")); err == nil {
			t.Fatal("a denied held command ran")
		}
	})

	t.Run("shell", func(t *testing.T) {
		// An interactive shell on a real terminal: script(1) gives ssh a
		// pty, as a person at a terminal would.
		sshCmd := fmt.Sprintf("ssh -p %d -o BatchMode=yes root@127.0.0.2", s.target.port)
		out, errOut, err := s.client(t, ctx, true, "echo shell-$((6*7))\nexit\n", "script", "-qec", sshCmd, "/dev/null")
		if err != nil || !strings.Contains(out, "shell-42") {
			t.Fatalf("shell: %v\nstdout: %q\nstderr: %s", err, out, errOut)
		}
		recs := s.d.settledRecords()
		id := sessionOf(t, recs, "shell")
		if got := channelOutput(recs, id, "out"); !strings.Contains(got, "shell-42") {
			t.Fatalf("recorded shell output lacks the command's output: %q", got)
		}
		if got := channelOutput(recs, id, "in"); !strings.Contains(got, "echo shell-$((6*7))") {
			t.Fatalf("recorded shell input: %q", got)
		}
		pty := false
		for _, r := range recordsOf(recs, id, audit.KindChannelRequest) {
			pty = pty || (r.Detail["request"] == "pty-req" && r.Detail["cols"] != "")
		}
		if !pty {
			t.Fatal("no pty-req record")
		}
		// What the terminal received is what was recorded, and the
		// replay plays exactly that.
		recorded := channelOutput(recs, id, "out") + channelOutput(recs, id, "err")
		if !strings.Contains(out, recorded) {
			t.Fatalf("the client's terminal did not receive what was recorded:\nclient %q\nrecorded %q", out, recorded)
		}
		cast := filepath.Join(t.TempDir(), "shell.cast")
		replay, err := runTollgate("audit", "replay", id, "--speed", "0", "--cast", cast, "--config", s.d.cfgPath)
		if err != nil || !strings.Contains(replay, recorded) || !strings.Contains(replay, "channel.request") {
			t.Fatalf("replay: %v\n%q", err, replay)
		}
		if got := checkCast(t, cast); got != recorded {
			t.Fatalf("asciicast output %q, recorded %q", got, recorded)
		}
	})

	t.Run("grant ends the shell", func(t *testing.T) {
		ops := filepath.Join(t.TempDir(), "token")
		os.WriteFile(ops, []byte(s.is.Token(t, map[string]any{"sub": "alice", "groups": []string{"ops"}})+"\n"), 0o600)
		out, err := runTollgate("grant", "create", "--identity", "oncall", "--target", "web", "--allow", "shell", "--for", "30m",
			"--reason", "incident 7", "--token-file", ops, "--config", s.d.cfgPath)
		if err != nil {
			t.Fatalf("grant create: %v: %s", err, out)
		}
		gid := strings.TrimSuffix(strings.Fields(out)[1], ":")
		type result struct {
			out, errOut string
			err         error
		}
		res := make(chan result, 1)
		sshCmd := fmt.Sprintf("ssh -p %d -o BatchMode=yes root@127.0.0.2", s.target.port)
		go func() {
			o, e, err := s.clientIn(t, ctx, s.oncall, "echo granted-$((2+3))\nsleep 120\n", "script", "-qec", sshCmd, "/dev/null")
			res <- result{o, e, err}
		}()
		waitFor(t, "the granted shell's output", func() bool {
			for _, r := range s.d.records() {
				if r.Kind == audit.KindChannelData && strings.Contains(channelOutput([]*audit.Record{r}, r.Session, "out"), "granted-5") {
					return true
				}
			}
			return false
		})
		if out, err := runTollgate("grant", "revoke", gid, "--reason", "incident over", "--token-file", ops, "--config", s.d.cfgPath); err != nil {
			t.Fatalf("grant revoke: %v: %s", err, out)
		}
		r := <-res
		if !strings.Contains(r.out+r.errOut, "tollgate: grant "+gid+" expired or was revoked; ending this session") {
			t.Fatalf("the shell did not end with the grant: %v\nstdout: %q\nstderr: %q", r.err, r.out, r.errOut)
		}
	})

	t.Run("ansible", func(t *testing.T) {
		if _, err := exec.LookPath("ansible"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("ansible missing: CI installs ansible-core")
			}
			t.Skip("ansible missing (apt install ansible-core)")
		}
		// Ansible's own ssh connection (ControlMaster, sftp transfers,
		// /bin/sh -c wrappers) with its defaults; its ssh master lingers
		// in the cgroup, which is emptied afterwards.
		kill := func() { os.WriteFile(filepath.Join(cgroup2Root(t), s.config, "cgroup.kill"), []byte("1"), 0o644) }
		defer kill()
		env := []string{"HOME=/root", "ANSIBLE_LOCAL_TEMP=/root/.ansible/tmp"}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-m", "ping"}, `"ping": "pong"`},
			{[]string{"-m", "command", "-a", "echo via-ansible"}, "via-ansible"},
			{[]string{"-m", "copy", "-a", "content=managed dest=" + s.work + "/ansible.txt"}, "CHANGED"},
		} {
			args := append([]string{"all", "-i", "127.0.0.2,", "-u", "root", "-e", "ansible_port=" + strconv.Itoa(s.target.port)}, tc.args...)
			out, errOut, err := s.clientEnv(t, ctx, s.config, env, "", "ansible", args...)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("ansible %v: %v\nstdout: %s\nstderr: %s", tc.args, err, out, errOut)
			}
		}
		if b, err := os.ReadFile(filepath.Join(s.work, "ansible.txt")); err != nil || string(b) != "managed" {
			t.Fatalf("ansible copy: %q %v", b, err)
		}
		kill() // the lingering master: its session then ends
		recs := s.d.settledRecords()
		py := false
		for _, r := range recs {
			py = py || (r.Kind == audit.KindChannelRequest && r.Statement != nil && strings.Contains(r.Statement.Text, "AnsiballZ_ping.py") &&
				r.Decision != nil && r.Decision.Rule == "config-mgmt")
		}
		if !py {
			t.Fatal("no record of Ansible's module run")
		}
	})

	t.Run("sftp and scp", func(t *testing.T) {
		// 1 GiB, as the issue asks (TOLLGATE_TEST_SSH_MIB lowers it for
		// a quick local run); rsync, whose bytes are all recorded, gets
		// a smaller file.
		size := 1 << 30
		if v, err := strconv.Atoi(os.Getenv("TOLLGATE_TEST_SSH_MIB")); err == nil && v > 0 {
			size = v << 20
		}
		sum := writeRandom(t, filepath.Join(s.home, "up.bin"), size)
		smallSum := writeRandom(t, filepath.Join(s.home, "small.bin"), 8<<20)
		batch := fmt.Sprintf("put /root/up.bin %[1]s/sftp.bin\nget %[1]s/sftp.bin /root/down.bin\nrename %[1]s/sftp.bin %[1]s/moved.bin\nmkdir %[1]s/dir\n", s.work)
		if err := os.WriteFile(filepath.Join(s.home, "batch"), []byte(batch), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errOut, err := s.client(t, ctx, true, "", "sftp", "-b", "/root/batch", "-P", strconv.Itoa(s.target.port), "root@127.0.0.2"); err != nil {
			t.Fatalf("sftp: %v\n%s\n%s", err, out, errOut)
		}
		if out, errOut, err := s.client(t, ctx, true, "", "scp", "-P", strconv.Itoa(s.target.port), "/root/up.bin", "root@127.0.0.2:"+s.work+"/scp.bin"); err != nil {
			t.Fatalf("scp: %v\n%s\n%s", err, out, errOut)
		}
		rsh := "ssh -p " + strconv.Itoa(s.target.port) + " -o BatchMode=yes"
		if out, errOut, err := s.client(t, ctx, true, "", "rsync", "-e", rsh, "/root/small.bin", "root@127.0.0.2:"+s.work+"/rsync.bin"); err != nil {
			t.Fatalf("rsync: %v\n%s\n%s", err, out, errOut)
		}
		for p, want := range map[string][]byte{filepath.Join(s.work, "moved.bin"): sum, filepath.Join(s.home, "down.bin"): sum,
			filepath.Join(s.work, "scp.bin"): sum, filepath.Join(s.work, "rsync.bin"): smallSum} {
			if got := fileSum(t, p); !bytes.Equal(got, want) {
				t.Fatalf("%s: sha256 %s, want %s", p, hex.EncodeToString(got), hex.EncodeToString(want))
			}
		}
		if st, err := os.Stat(filepath.Join(s.work, "dir")); err != nil || !st.IsDir() {
			t.Fatal("sftp mkdir did not arrive")
		}
		recs := s.d.settledRecords()
		want := map[string]bool{
			"close " + s.work + "/sftp.bin written " + strconv.Itoa(size): false,
			"close " + s.work + "/sftp.bin read " + strconv.Itoa(size):    false,
			"close " + s.work + "/scp.bin written " + strconv.Itoa(size):  false,
			"rename " + s.work + "/sftp.bin " + s.work + "/moved.bin":     false,
			"mkdir " + s.work + "/dir":                                    false,
		}
		for _, r := range recs {
			if r.Kind != audit.KindSFTP || r.Detail["status"] != "ok" {
				continue
			}
			d := r.Detail
			for _, k := range []string{
				d["op"] + " " + d["path"] + " written " + d["bytes_written"],
				d["op"] + " " + d["path"] + " read " + d["bytes_read"],
				d["op"] + " " + d["path"] + " " + d["path2"],
				d["op"] + " " + d["path"],
			} {
				if _, ok := want[k]; ok {
					want[k] = true
				}
			}
		}
		for k, seen := range want {
			if !seen {
				t.Errorf("no sftp record %q", k)
			}
		}
	})

	t.Run("wrong host key", func(t *testing.T) {
		other := keygen(t, filepath.Join(t.TempDir(), "other"))
		f := strings.Fields(other)
		s.writeKnown(t, f[0]+" "+f[1])
		defer s.writeKnown(t, s.target.hostPub)
		_, errOut, err := s.ssh(t, ctx, "echo", "never")
		if err == nil || !strings.Contains(errOut, "target host key not trusted") {
			t.Fatalf("wrong host key: %v\n%s", err, errOut)
		}
		recs := s.d.settledRecords()
		found := false
		for _, r := range recs {
			found = found || (r.Kind == audit.KindSessionEnd && strings.Contains(r.Error, "target host key not trusted"))
		}
		if !found {
			t.Fatal("no session.end record of the refused host key")
		}
	})

	t.Run("report", func(t *testing.T) {
		out, err := runTollgate("audit", "report", "-o", "json", "--config", s.d.cfgPath)
		if err != nil {
			t.Fatalf("report: %v: %s", err, out)
		}
		var rep report.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		var cmds, denials []string
		for _, e := range rep.Commands {
			cmds = append(cmds, e.What)
		}
		for _, e := range rep.Denials {
			denials = append(denials, e.What)
		}
		for _, want := range []string{"allow (deploy-commands): echo hello", "allow (deploy-files): shell", "allow (deploy-files): subsystem sftp",
			"deny (no-stop): systemctl stop app"} {
			if !slices.Contains(cmds, want) {
				t.Errorf("report commands lack %q: %q", want, cmds)
			}
		}
		if !slices.Contains(denials, "denied by rule no-stop: systemctl stop app") {
			t.Errorf("report denials: %q", denials)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// Every decided SSH request is counted like a statement, from the
		// same records the log holds.
		recs := s.d.settledRecords()
		want := map[string]float64{}
		for _, r := range recs {
			if r.Kind == audit.KindChannelRequest && r.Decision != nil && r.Statement != nil {
				want[fmt.Sprintf(`tollgate_statements_total{class="%s",decision="%s",target="%s"}`, r.Statement.Classes[0], r.Decision.Action, r.Target)]++
			}
		}
		m := scrapeMetrics(t, s.metrics)
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
		if m[`tollgate_sessions_total{identity_method="process",protocol="ssh",target="web"}`] == 0 {
			t.Errorf("no ssh sessions counted")
		}
		// The redirect maps' occupancy: one protected destination.
		if m[`tollgate_bpf_map_max_entries{map="origins"}`] != 65536 || m[`tollgate_bpf_map_entries{map="targets"}`] < 1 {
			t.Errorf("map occupancy: origins max %v, targets %v", m[`tollgate_bpf_map_max_entries{map="origins"}`], m[`tollgate_bpf_map_entries{map="targets"}`])
		}
	})

	t.Run("evidence verifies", func(t *testing.T) {
		bundle := exportCLI(t, s.d, "ssh.tar")
		if out, ok := verifyCLI(t, bundle, filepath.Join(s.d.cfg.StateDir, "host.pub")); !ok {
			t.Fatalf("verify: %s", out)
		}
	})

	t.Run("daemon killed mid-session", func(t *testing.T) {
		res := make(chan error, 1)
		go func() {
			_, _, err := s.ssh(t, ctx, "sleep 97")
			res <- err
		}()
		waitFor(t, "the command's record", func() bool {
			for _, r := range s.d.records() {
				if r.Kind == audit.KindChannelRequest && r.Statement != nil && r.Statement.Text == "sleep 97" {
					return true
				}
			}
			return false
		})
		s.d.kill()
		if err := <-res; exitCode(err) != 255 {
			t.Fatalf("client after the daemon's SIGKILL: %v (want exit 255: the connection ended)", err)
		}
		s.d.start()
		if out, errOut, err := s.ssh(t, ctx, "echo back"); err != nil || out != "back\n" {
			t.Fatalf("after restart: %v %q %q", err, out, errOut)
		}
	})

	t.Run("target down", func(t *testing.T) {
		s.target.stop()
		_, errOut, err := s.ssh(t, ctx, "echo", "never")
		if err == nil || !strings.Contains(errOut, "tollgate: cannot log in to target web") {
			t.Fatalf("target down: %v\n%s", err, errOut)
		}
	})
}
