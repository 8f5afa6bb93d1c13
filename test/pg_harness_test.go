// SPDX-License-Identifier: Apache-2.0

package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgBin is where Debian installs the PostgreSQL 15 server binaries.
const pgBin = "/usr/lib/postgresql/15/bin"

// Roles every throwaway cluster has. The superuser only logs in over the
// cluster's unix socket (trust); TCP logins need a password: SCRAM-SHA-256
// for pgScramUser, an MD5 challenge for pgMD5User.
const (
	pgSuperuser  = "postgres"
	pgScramUser  = "app_scram"
	pgScramPass  = "scram-secret-Zq8v"
	pgMD5User    = "app_md5"
	pgMD5Pass    = "md5-secret-Kp3w"
	pgDatabase   = "app"
	pgListenHost = "127.0.0.2"
)

// pgCluster is a throwaway PostgreSQL 15 cluster: its own data directory,
// a loopback TCP port, a unix socket directory of its own and a server log
// with every statement in it (log_statement=all).
type pgCluster struct {
	t       testing.TB
	dir     string // the data directory lives under it
	data    string
	sockDir string // the unix socket's directory (mode 0755, like /var/run/postgresql)
	logPath string
	host    string
	port    int
	cmd     *exec.Cmd
	done    chan error
	cred    *syscall.Credential
}

// requirePostgres skips (or, under CI, fails) a test when the server
// binaries are missing.
func requirePostgres(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL 15 is not installed (%v) and CI=true forbids skipping", err)
		}
		t.Skipf("PostgreSQL 15 is not installed: %v", err)
	}
}

// startPostgres initialises and starts a cluster listening on
// 127.0.0.2:<free port>, creates the test roles and the database "app"
// (owned by the SCRAM role), and stops and removes it all in t.Cleanup.
// initdb refuses to run as root, so the cluster runs as the "postgres"
// system user in a directory it owns.
func startPostgres(t testing.TB) *pgCluster {
	t.Helper()
	requireRoot(t)
	requirePostgres(t)
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgres system user is needed to run the cluster: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}

	// Not t.TempDir: its parents are 0700 root, which the postgres user
	// cannot traverse.
	dir, err := os.MkdirTemp("", "tollgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	// The socket directory is a temporary one of its own, open to every
	// user like /var/run/postgresql, so that unprivileged clients can try
	// the unix socket (and tollgate can protect it).
	sockDir, err := os.MkdirTemp("", "tollgate-pgsock-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{t: t, dir: dir, data: filepath.Join(dir, "data"), sockDir: sockDir,
		logPath: filepath.Join(dir, "server.log"), host: pgListenHost, cred: cred}
	t.Cleanup(func() {
		c.stop()
		os.RemoveAll(sockDir)
		if !t.Failed() || os.Getenv("TOLLGATE_KEEP_PG") == "" {
			os.RemoveAll(dir)
		} else {
			t.Logf("kept cluster in %s", dir)
		}
	})

	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte("unused-superuser-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(pwfile, uid, gid)
	c.asPostgres(t, filepath.Join(pgBin, "initdb"), "-D", c.data, "-U", pgSuperuser, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")

	hba := "local all all trust\n" +
		"host all " + pgMD5User + " 127.0.0.0/8 md5\n" +
		"host all all 127.0.0.0/8 scram-sha-256\n" +
		"host all all ::1/128 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join([]string{
		"listen_addresses = '" + pgListenHost + "'",
		"unix_socket_directories = '" + c.sockDir + "'",
		"log_statement = 'all'",
		"log_line_prefix = '%m [%p] %u@%d '",
		"logging_collector = off",
		"fsync = off", // a throwaway cluster: durability of its data is not what is tested
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = 200",
		"shared_buffers = 128MB",
		"password_encryption = 'scram-sha-256'",
	}, "\n") + "\n"
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()

	c.start()
	c.psqlSuper(t, "postgres",
		"CREATE ROLE "+pgScramUser+" LOGIN PASSWORD '"+pgScramPass+"';",
		"SET password_encryption = 'md5';",
		"CREATE ROLE "+pgMD5User+" LOGIN PASSWORD '"+pgMD5Pass+"';",
		"CREATE DATABASE "+pgDatabase+" OWNER "+pgScramUser+";",
		"GRANT ALL ON DATABASE "+pgDatabase+" TO "+pgMD5User+";")
	return c
}

// start runs the server on a free port and waits until it accepts
// connections. The port is probed free first; if the server still loses
// the race for it, another port is tried.
func (c *pgCluster) start() {
	c.t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		if c.port == 0 || attempt > 0 {
			c.port = freePort(c.t, c.host)
		}
		logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			c.t.Fatal(err)
		}
		c.cmd = exec.Command(filepath.Join(pgBin, "postgres"), "-D", c.data, "-p", strconv.Itoa(c.port))
		c.cmd.Stdout, c.cmd.Stderr = logf, logf
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
		if err := c.cmd.Start(); err != nil {
			logf.Close()
			c.t.Fatal(err)
		}
		logf.Close()
		c.done = make(chan error, 1)
		go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(c.cmd, c.done)
		if c.waitReady() {
			return
		}
		c.stop()
	}
	log, _ := os.ReadFile(c.logPath)
	c.t.Fatalf("postgres did not start\n%s", log)
}

// waitReady polls pg_isready until the server answers, or it exits.
func (c *pgCluster) waitReady() bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			c.cmd = nil
			return false
		default:
		}
		err := exec.Command(filepath.Join(pgBin, "pg_isready"), "-q", "-h", c.host, "-p", strconv.Itoa(c.port)).Run()
		if err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// stop shuts the server down fast (SIGINT: abort transactions, no
// checkpoint wait) and kills it if it lingers.
func (c *pgCluster) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.cmd = nil
}

// addr is the server's TCP address, "127.0.0.2:port".
func (c *pgCluster) addr() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// dsn is a libpq keyword/value connection string for a TCP login as user,
// without a password (pass it in PGPASSWORD, or not at all through the
// proxy).
func (c *pgCluster) dsn(user, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.host, c.port, user, db)
}

// serverLog returns the server's log so far.
func (c *pgCluster) serverLog() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

// asPostgres runs a command as the postgres user and fails the test with
// its output if it fails.
func (c *pgCluster) asPostgres(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// psqlSuper runs SQL as the superuser over the unix socket.
func (c *pgCluster) psqlSuper(t testing.TB, db string, sql ...string) string {
	t.Helper()
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", c.sockDir, "-p", strconv.Itoa(c.port), "-U", pgSuperuser, "-d", db, "-At"}
	for _, s := range sql {
		args = append(args, "-c", s)
	}
	return c.asPostgres(t, filepath.Join(pgBin, "psql"), args...)
}

// freePort returns a TCP port on host that nothing listens on right now.
// It is taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so that no outgoing connection, of this
// test or of anything else running, can take it before whoever it is for
// binds it: a port the kernel picked for a listener on port 0 is also one
// it may pick for the next connect.
func freePort(t testing.TB, host string) int {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	const from = 10000
	if lo-from < 1000 {
		// An unusual range: fall back to the kernel's choice.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	for range 1000 {
		port := from + mrand.IntN(lo-from)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // taken: try another
		}
		ln.Close()
		return port
	}
	t.Fatalf("no free port on %s below %d", host, lo)
	return 0
}

// writeSecret writes a root-only (0600) file, as upstream.password_file
// requires, and returns its path.
func writeSecret(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pg-password")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCmd prepares an unmodified client program. With a cgroup, it starts
// inside that workload cgroup (so its connects are intercepted); without,
// it connects directly. Its environment is minimal and deterministic.
func clientCmd(t testing.TB, cgroup string, env []string, name string, args ...string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{"PATH=/usr/local/go/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/nonexistent",
		"PGCONNECT_TIMEOUT=20", "PAGER=cat"}, env...)
	cleanup := func() {}
	if cgroup != "" {
		f, err := os.Open(filepath.Join(cgroup2Root(t), cgroup))
		if err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		cleanup = func() { f.Close() }
	}
	return cmd, cleanup
}

// runClient runs a client to completion and returns stdout, stderr and
// its exit error (not fatal: differential tests compare failures too).
func runClient(t testing.TB, ctx context.Context, cgroup string, env []string, stdin string, name string, args ...string) (string, string, error) {
	t.Helper()
	cmd, cleanup := clientCmd(t, cgroup, env, name, args...)
	defer cleanup()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", name, args, ctx.Err(), stdout.String(), stderr.String())
		return "", "", ctx.Err()
	}
}

// TestPostgresHarness checks the harness itself: both password methods
// work over TCP and every statement lands in the server log.
func TestPostgresHarness(t *testing.T) {
	pg := startPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct{ user, pass, method string }{
		{pgScramUser, pgScramPass, "scram-sha-256"},
		{pgMD5User, pgMD5Pass, "md5"},
	} {
		out, errOut, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + tc.pass}, "", "psql", "-X", "-At",
			"-d", pg.dsn(tc.user, pgDatabase), "-c", "SELECT current_user, 'harness-"+tc.method+"'")
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.user, err, errOut)
		}
		if want := tc.user + "|harness-" + tc.method + "\n"; out != want {
			t.Fatalf("%s: got %q, want %q", tc.user, out, want)
		}
		// A wrong password is refused: the method really asks for one.
		_, errOut, err = runClient(t, ctx, "", []string{"PGPASSWORD=wrong"}, "", "psql", "-X", "-At",
			"-d", pg.dsn(tc.user, pgDatabase), "-c", "SELECT 1")
		if err == nil || !strings.Contains(errOut, "password authentication failed") {
			t.Fatalf("%s with a wrong password: %v %s", tc.user, err, errOut)
		}
	}
	got := pg.asPostgres(t, filepath.Join(pgBin, "psql"), "-X", "-At", "-h", pg.sockDir, "-p", strconv.Itoa(pg.port),
		"-U", pgSuperuser, "-d", "postgres", "-c", "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = '"+pgMD5User+"'")
	if strings.TrimSpace(got) != "t" {
		t.Fatalf("md5 role's password is not stored as md5: %q", got)
	}
	if log := pg.serverLog(); !strings.Contains(log, "statement: SELECT current_user, 'harness-md5'") {
		t.Fatalf("statement missing from the server log:\n%s", log)
	}
}

// enableTLS gives the cluster a server certificate for 127.0.0.2 from a
// fresh CA, turns ssl on (a reload suffices) and returns the CA's PEM file.
func (c *pgCluster) enableTLS(t testing.TB) string {
	t.Helper()
	caPEM, certPEM, keyPEM := testCertificates(t, c.host)
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caPath, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM} {
		p := filepath.Join(c.data, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, int(c.cred.Uid), int(c.cred.Gid))
	}
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
	f.Close()
	c.cmd.Process.Signal(syscall.SIGHUP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		out, _, err := runClient(t, ctx, "", []string{"PGPASSWORD=" + pgScramPass, "PGSSLMODE=verify-full", "PGSSLROOTCERT=" + caPath},
			"", "psql", "-X", "-At", "-d", fmt.Sprintf("host=%s port=%d user=%s dbname=%s", c.host, c.port, pgScramUser, pgDatabase),
			"-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err == nil && out == "t\n" {
			return caPath
		}
		if ctx.Err() != nil {
			t.Fatalf("TLS did not come up: %v %q", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testCertificates returns a CA certificate and a server certificate and
// key for ip, all PEM.
func testCertificates(t testing.TB, ip string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
