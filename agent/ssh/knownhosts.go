// SPDX-License-Identifier: Apache-2.0

package ssh

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

// hostCAComment ends the known_hosts line of KnownHostsLine; it is how
// InstallKnownHosts finds the line it wrote before.
const hostCAComment = "tollgate-host-ca"

// InstallKnownHosts puts line, a KnownHostsLine, into the known_hosts file
// at path, in place of any earlier tollgate host CA line, and keeps every
// other line as it was. It reports whether the file changed. The file is
// replaced whole (atomicfile), so a client never reads it half written; a
// new file is mode 0644 (clients of every user read the system file), an
// existing one keeps its mode.
func InstallKnownHosts(path, line string) (bool, error) {
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("known_hosts: %w", err)
	default:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	}
	var b strings.Builder
	for l := range strings.Lines(string(old)) {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "@cert-authority" && f[len(f)-1] == hostCAComment {
			continue
		}
		b.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	b.WriteString(line + "\n")
	if b.String() == string(old) {
		return false, nil
	}
	if err := atomicfile.WriteFile(path, []byte(b.String()), mode); err != nil {
		return false, fmt.Errorf("known_hosts: %w", err)
	}
	return true, nil
}
