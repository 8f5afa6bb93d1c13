// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

func auditCheckpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "checkpoint",
		Usage: "print the newest signed checkpoint (keep it: `audit verify --trusted-checkpoint` detects a rollback behind it)",
		Flags: []cli.Flag{
			configFlag, socketFlag,
			&cli.StringFlag{Name: "out", Usage: "write the checkpoint to this file instead of stdout"},
		},
		Action: auditCheckpoint,
	}
}

func auditCheckpoint(c *cli.Context) error {
	sock, cfg, err := apiSocket(c)
	if err != nil {
		return err
	}
	note, err := agent.NewClient(sock).Checkpoint(c.Context)
	if errors.Is(err, agent.ErrDaemonNotRunning) && cfg != nil {
		l, oerr := openStoppedLog(c, cfg.StateDir)
		if oerr != nil {
			return oerr
		}
		defer l.Close()
		cp, cerr := l.LastCheckpoint()
		if cerr != nil {
			return fmt.Errorf("daemon not running: %w", cerr)
		}
		note, err = cp.Note, nil
	}
	if err != nil {
		return err
	}
	if out := c.String("out"); out != "" {
		return atomicfile.WriteFile(out, note, 0o644)
	}
	_, err = c.App.Writer.Write(note)
	return err
}

// openStoppedLog opens the log in stateDir read-only, for commands that
// work while the daemon is stopped.
func openStoppedLog(c *cli.Context, stateDir string) (*audit.Log, error) {
	fmt.Fprintf(c.App.ErrWriter, "tollgate: daemon not running; reading the log in %s\n", stateDir)
	l, err := audit.Open(filepath.Join(stateDir, agent.LogFile), audit.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("daemon not running and the log cannot be read: %w", err)
	}
	return l, nil
}
