// SPDX-License-Identifier: Apache-2.0

package redirect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrUnsafePinPath means a directory the daemon pins under (or one of its
// parents on bpffs) is not the daemon's alone: not owned by root, writable
// by group or others, or not a plain directory. bpffs is often mounted
// world-writable with the sticky bit, so an unprivileged user can create the
// pin directory before the daemon does, then unlink the pinned links and
// turn enforcement off when the daemon stops. The daemon refuses such a
// path instead of using it.
var ErrUnsafePinPath = errors.New("unsafe bpffs pin path")

// pinDirs are the directories Load pins under, relative to the pin path.
var pinDirs = []string{".", "maps", "links"}

// preparePinPath creates the pin path's directories (root-owned, 0700) and
// checks every one of them and their parents on bpffs.
func preparePinPath(pinPath string) error {
	if err := checkPinParents(pinPath); err != nil {
		return err
	}
	for _, d := range pinDirs {
		p := filepath.Join(pinPath, d)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pin path %s: %w", p, err)
		}
		if err := checkPinDir(p, false); err != nil {
			return err
		}
	}
	return nil
}

// CheckPinPath checks, without changing anything, that the directories
// under which the daemon pins (the pin path, its maps and links
// directories when they exist, and the parents up to the bpffs mount) are
// root's alone. A pin path that does not exist yet is fine when its parent
// is safe: the daemon creates it.
func CheckPinPath(pinPath string) error {
	if err := checkPinParents(pinPath); err != nil {
		return err
	}
	for _, d := range pinDirs {
		err := checkPinDir(filepath.Join(pinPath, d), false)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkPinParents checks the parents of pinPath up to and including the
// bpffs mount point: a parent may be writable by others only with the sticky
// bit (as bpffs's root often is), which keeps others from renaming or
// removing root's entries in it.
func checkPinParents(pinPath string) error {
	for p := filepath.Dir(filepath.Clean(pinPath)); ; p = filepath.Dir(p) {
		if err := checkPinDir(p, true); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if !IsBPFFS(filepath.Dir(p)) || p == "/" {
			return nil
		}
	}
}

// checkPinDir checks one directory: a real directory (not a symlink) owned
// by root, not writable by group or others (unless sticky is allowed and
// set).
func checkPinDir(p string, stickyOK bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("pin path %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory: %w", p, ErrUnsafePinPath)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not root (remove it and restart the daemon): %w", p, st.Uid, ErrUnsafePinPath)
	}
	if st.Mode&0o022 != 0 && !(stickyOK && st.Mode&unix.S_ISVTX != 0) {
		return fmt.Errorf("%s has mode %04o, writable by group or others (chmod go-w it): %w", p, st.Mode&0o7777, ErrUnsafePinPath)
	}
	return nil
}
