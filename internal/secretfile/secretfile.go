// SPDX-License-Identifier: Apache-2.0

// Package secretfile reads files that hold secrets (upstream passwords,
// TLS private keys, masking hash keys). A secret is read only from a
// regular file, never through a symlink, owned by root and closed to group
// and others, and from the same open file whose attributes were checked,
// so that nothing can be swapped in between.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrUnsafe means the file exists but is not safe to hold a secret: not a
// regular file, readable by group or others, not owned by root, or larger
// than the caller allows.
var ErrUnsafe = errors.New("unsafe")

// Read returns the contents of path, at most max bytes. Errors never
// contain the contents.
func Read(path string, max int64) ([]byte, error) {
	// O_NONBLOCK: a FIFO put in place of the file must not hang the caller.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrUnsafe)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: mode %v (%#o), want 0600 or stricter (chmod 600)", ErrUnsafe, perm, uint32(perm))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 {
		return nil, fmt.Errorf("%w: not owned by root (chown root)", ErrUnsafe)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrUnsafe, max)
	}
	return b, nil
}
