// SPDX-License-Identifier: Apache-2.0

package secretfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/secretfile"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("s3cret\n"), 0o640)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() == 0 {
		b, err := secretfile.Read(good, 64)
		if err != nil || string(b) != "s3cret\n" {
			t.Fatalf("good file: %q %v", b, err)
		}
		if _, err := secretfile.Read(good, 3); !errors.Is(err, secretfile.ErrUnsafe) {
			t.Errorf("larger than max: %v", err)
		}
		other := filepath.Join(dir, "other")
		os.WriteFile(other, []byte("x\n"), 0o600)
		os.Chown(other, 65534, 65534)
		if _, err := secretfile.Read(other, 64); !errors.Is(err, secretfile.ErrUnsafe) || !strings.Contains(err.Error(), "root") {
			t.Errorf("not owned by root: %v", err)
		}
	} else if _, err := secretfile.Read(good, 64); !errors.Is(err, secretfile.ErrUnsafe) {
		t.Errorf("not owned by root (unprivileged run): %v", err)
	}
	if _, err := secretfile.Read(loose, 64); !errors.Is(err, secretfile.ErrUnsafe) || !strings.Contains(err.Error(), "-rw-r-----") {
		t.Errorf("mode 0640: %v", err)
	}
	for name, p := range map[string]string{"symlink": link, "fifo": fifo, "directory": dir, "missing": filepath.Join(dir, "nope")} {
		b, err := secretfile.Read(p, 64)
		if err == nil {
			t.Errorf("%s: accepted (%q)", name, b)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error quotes the secret: %v", name, err)
		}
	}
}
