// SPDX-License-Identifier: Apache-2.0

package ship

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

// Files the shipper keeps in the daemon's state directory, beside the log.
const (
	// CredentialFile holds the collector credential and the collector's
	// verifier key received at enrollment (JSON, mode 0600).
	CredentialFile = "collector.cred"
	// CosignedFile holds every checkpoint the collector cosigned, one JSON
	// object per line ({"size":N,"checkpoint":"<base64 cosigned note>"}),
	// appended and synced before the shipper moves on.
	CosignedFile = "cosigned.jsonl"
)

// credential is CredentialFile's content.
type credential struct {
	URL          string `json:"url"`
	Credential   string `json:"credential"`
	CollectorKey string `json:"collector_key"`
}

func loadCredential(dir string) (*credential, error) {
	path := filepath.Join(dir, CredentialFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("collector credential: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("collector credential: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("collector credential %s has mode %#o: others than its owner can read it; chmod 600 it", path, fi.Mode().Perm())
	}
	var c credential
	if err := json.Unmarshal(b, &c); err != nil || c.Credential == "" || c.CollectorKey == "" {
		return nil, fmt.Errorf("collector credential %s: not a credential file", path)
	}
	return &c, nil
}

func saveCredential(dir string, c *credential) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CredentialFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save collector credential: %w", err)
	}
	return nil
}

// Cosigned is one checkpoint the collector cosigned.
type Cosigned struct {
	Size uint64 `json:"size"`
	// Checkpoint is the host's signed checkpoint with the collector's
	// cosignature line.
	Checkpoint []byte `json:"checkpoint"`
}

// cosignedLog is the append-only CosignedFile.
type cosignedLog struct {
	f    *os.File
	last *Cosigned
}

// openCosigned opens CosignedFile, dropping a torn last line (a crash
// during an append: that cosignature is fetched again by the next request).
func openCosigned(dir string) (*cosignedLog, error) {
	path := filepath.Join(dir, CosignedFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cosigned checkpoints: %w", err)
	}
	cl := &cosignedLog{f: f}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var good int64
	for sc.Scan() {
		line := sc.Bytes()
		var c Cosigned
		if err := json.Unmarshal(line, &c); err != nil {
			break
		}
		good += int64(len(line)) + 1
		cl.last = &c
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cosigned checkpoints: %w", err)
	}
	if fi.Size() != good {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("cosigned checkpoints: %w", err)
		}
	}
	if _, err := f.Seek(good, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("cosigned checkpoints: %w", err)
	}
	return cl, nil
}

func (cl *cosignedLog) append(c Cosigned) error {
	if cl.last != nil && cl.last.Size == c.Size && bytes.Equal(cl.last.Checkpoint, c.Checkpoint) {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := cl.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("save cosigned checkpoint: %w", err)
	}
	if err := cl.f.Sync(); err != nil {
		return fmt.Errorf("save cosigned checkpoint: %w", err)
	}
	cl.last = &c
	return nil
}

// ReadCosigned returns every cosigned checkpoint kept in dir, in the order
// received.
func ReadCosigned(dir string) ([]Cosigned, error) {
	b, err := os.ReadFile(filepath.Join(dir, CosignedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cosigned checkpoints: %w", err)
	}
	var out []Cosigned
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var c Cosigned
		if err := json.Unmarshal(line, &c); err != nil {
			break
		}
		out = append(out, c)
	}
	return out, nil
}
