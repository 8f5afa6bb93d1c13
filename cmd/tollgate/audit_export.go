// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/evidence"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

func auditExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write an evidence bundle that `tollgate audit verify` checks offline",
		Description: "Selects the whole log, a time range (--since/--until: every record from the first at or after\n" +
			"--since to the last before --until) or a session (--session: every record from its first to its\n" +
			"last, other sessions' records in between included, so none of its records can be left out).\n" +
			"Talks to the running daemon over its API socket, or reads the state directory when it is stopped.",
		Flags: []cli.Flag{
			configFlag, socketFlag,
			&cli.StringFlag{Name: "out", Required: true, Usage: "bundle file to write (a tar archive)"},
			&cli.StringFlag{Name: "since", Usage: "first record time: RFC 3339, a date (2026-11-26) or a duration ago (24h)"},
			&cli.StringFlag{Name: "until", Usage: "records before this time (same forms as --since)"},
			&cli.StringFlag{Name: "session", Usage: "the records of this session"},
			&cli.Uint64SliceFlag{Name: "prove-from", Usage: "also prove consistency from this tree size (of a checkpoint the auditor holds)"},
			&cli.BoolFlag{Name: "witnessed", Usage: "end the bundle at the newest checkpoint the collector cosigned (its cosignature is in checkpoint.note, for `audit verify --witness-key`); later records are left out"},
		},
		Action: auditExport,
	}
}

func auditExport(c *cli.Context) error {
	var opts evidence.ExportOptions
	now := time.Now()
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &opts.Since}, {"until", &opts.Until}} {
		if s := c.String(f.name); s != "" {
			t, err := audit.ParseTime(s, now)
			if err != nil {
				return fmt.Errorf("--%s: %w", f.name, err)
			}
			*f.dst = t
		}
	}
	opts.Session = c.String("session")
	opts.ProveFrom = c.Uint64Slice("prove-from")
	opts.Witnessed = c.Bool("witnessed")
	opts.Tool = "tollgate " + version
	if opts.Session != "" && (!opts.Since.IsZero() || !opts.Until.IsZero()) {
		return errors.New("--session selects its own range; do not combine it with --since or --until")
	}
	sock, cfg, err := apiSocket(c)
	if err != nil {
		return err
	}
	out := c.String("out")
	err = atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error {
		return agent.NewClient(sock).Export(c.Context, opts, w)
	})
	if errors.Is(err, agent.ErrDaemonNotRunning) && cfg != nil {
		l, oerr := openStoppedLog(c, cfg.StateDir)
		if oerr != nil {
			return oerr
		}
		defer l.Close()
		if opts.Witnessed {
			if opts.Cosigned, err = agent.CosignedNotes(cfg.StateDir); err != nil {
				return err
			}
		}
		ex, perr := evidence.PrepareExport(c.Context, l, opts)
		if perr != nil {
			return perr
		}
		if size := l.Size(); size > ex.Manifest().TreeSize {
			fmt.Fprintf(c.App.ErrWriter, "tollgate: records %d to %d are not signed yet (the daemon stopped before signing them) and are not in the bundle; start the daemon to sign them\n",
				ex.Manifest().TreeSize, size-1)
		}
		err = atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error {
			_, err := ex.WriteTo(c.Context, w)
			return err
		})
	}
	if err != nil {
		return err
	}
	m, sum, err := bundleSummary(out)
	if err != nil {
		return fmt.Errorf("read back %s: %w", out, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s: records %d to %d (%d) of log %s, signed tree of %d records at %s\nsha256 %s\n",
		out, m.Begin, m.End-1, m.Records, m.Log, m.TreeSize, m.CheckpointTime.Format(time.RFC3339), sum)
	return nil
}

// bundleSummary reads the manifest of a bundle file and hashes the file.
func bundleSummary(path string) (*evidence.Manifest, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(f, h))
	var m *evidence.Manifest
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", err
		}
		if hdr.Name == evidence.BundleManifest {
			m = &evidence.Manifest{}
			if err := json.NewDecoder(tr).Decode(m); err != nil {
				return nil, "", err
			}
		}
	}
	if _, err := io.Copy(h, f); err != nil {
		return nil, "", err
	}
	if m == nil {
		return nil, "", errors.New("no manifest in the bundle")
	}
	return m, hex.EncodeToString(h.Sum(nil)), nil
}
