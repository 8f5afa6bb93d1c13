// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

// Files of the CAs in the state directory: OpenSSH private keys, root-only.
const (
	HostCAFile = "ssh_host_ca"
	UserCAFile = "ssh_user_ca"
)

// Certificate lifetimes. A host certificate is made per session, so it
// only has to outlive the handshake; a user certificate must outlive the
// target's login, and no longer: the automation never holds it, and a copy
// stolen from the daemon's memory soon stops working.
const (
	hostCertLifetime = 24 * time.Hour
	userCertLifetime = 5 * time.Minute
	// clockSkew is how far back a certificate's validity starts, for
	// targets whose clock is a little behind.
	clockSkew = 2 * time.Minute
)

// ErrCAKey means a CA key file is unusable: unreadable, malformed or open
// to other users.
var ErrCAKey = errors.New("ssh CA key")

// CA holds tollgate's two SSH certificate authorities: the host CA, whose
// certificates the proxy presents to clients in place of the targets' host
// keys, and the user CA, whose short-lived certificates log in to targets.
type CA struct {
	Host ssh.Signer
	User ssh.Signer
}

// LoadCA reads the CAs from dir, creating each key (Ed25519, mode 0600)
// the first time. A key readable by group or others is refused.
func LoadCA(dir string) (*CA, error) {
	host, err := loadOrCreateKey(filepath.Join(dir, HostCAFile), "tollgate host CA")
	if err != nil {
		return nil, err
	}
	user, err := loadOrCreateKey(filepath.Join(dir, UserCAFile), "tollgate user CA")
	if err != nil {
		return nil, err
	}
	return &CA{Host: host, User: user}, nil
}

func loadOrCreateKey(path, comment string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path, comment)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAKey, err)
	}
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCAKey, path, err)
	}
	return s, nil
}

func createKey(path, comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generate: %w", ErrCAKey, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", ErrCAKey, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAKey, err)
	}
	// Replaced whole, so a crash never leaves a half-written key that the
	// next start would refuse.
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAKey, err)
	}
	return ssh.NewSignerFromKey(priv)
}

// CheckKeyFile refuses a private key file that group or others can read or
// that another user owns: whoever reads it can log in as tollgate does.
func CheckKeyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCAKey, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s is mode %o: it must not be readable by group or others (chmod 600)", ErrCAKey, path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the daemon's user", ErrCAKey, path, sys.Uid)
	}
	return nil
}

// KnownHostsLine is the line for a client's known_hosts (or the system's
// /etc/ssh/ssh_known_hosts) that makes it trust the host certificates the
// proxy presents, for the given host patterns ("*" for any).
func (ca *CA) KnownHostsLine(patterns string) string {
	if patterns == "" {
		patterns = "*"
	}
	return "@cert-authority " + patterns + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.Host.PublicKey()))) + " " + hostCAComment
}

// UserCALine is the user CA's public key, for a target's
// TrustedUserCAKeys file.
func (ca *CA) UserCALine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.User.PublicKey()))) + " tollgate-user-ca"
}

// hostSigner returns a signer that presents a fresh host certificate for
// principals (the addresses and names a client may have dialled), over the
// host key key.
func (ca *CA) hostSigner(key ssh.Signer, principals []string) (ssh.Signer, error) {
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		CertType:        ssh.HostCert,
		KeyId:           "tollgate proxy",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-clockSkew).Unix()),
		ValidBefore:     uint64(now.Add(hostCertLifetime).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca.Host); err != nil {
		return nil, fmt.Errorf("sign host certificate: %w", err)
	}
	return ssh.NewCertSigner(cert, key)
}

// userSigner returns a fresh key with a certificate from the user CA that
// logs in as login for a few minutes. keyID is what the target's sshd logs
// ("Accepted certificate ID ..."): it names the identity and session.
func (ca *CA) userSigner(login, keyID string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate session key: %w", err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{login},
		ValidAfter:      uint64(now.Add(-clockSkew).Unix()),
		ValidBefore:     uint64(now.Add(userCertLifetime).Unix()),
		// What the session may ask of the target is decided by policy at
		// the proxy, request by request; the certificate must not be
		// what refuses an allowed pty or forward.
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-pty": "", "permit-port-forwarding": "", "permit-agent-forwarding": "",
			"permit-X11-forwarding": "", "permit-user-rc": "",
		}},
	}
	if err := cert.SignCert(rand.Reader, ca.User); err != nil {
		return nil, fmt.Errorf("sign user certificate: %w", err)
	}
	return ssh.NewCertSigner(cert, key)
}
