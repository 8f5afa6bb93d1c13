// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/urfave/cli/v2"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "read the audit log, export and verify evidence",
		Subcommands: []*cli.Command{
			{
				Name:  "tail",
				Usage: "print the newest records (-o json: one record per line, exactly as stored)",
				Flags: []cli.Flag{
					configFlag, socketFlag, outputFlag,
					&cli.IntFlag{Name: "n", Value: 10, Usage: "number of records"},
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new records"},
				},
				Action: auditTail,
			},
			auditCheckpointCommand(),
			auditExportCommand(),
			auditVerifyCommand(),
			auditReplayCommand(),
			auditReportCommand(),
		},
	}
}

func auditTail(c *cli.Context) error {
	n := c.Int("n")
	if n < 0 {
		return errors.New("-n must not be negative")
	}
	follow := c.Bool("follow")
	jsonOut := c.String("output") == "json"
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	emit := func(b []byte) error {
		if jsonOut {
			w.Write(b)
			w.WriteByte('\n')
		} else {
			w.WriteString(formatRecord(b))
			w.WriteByte('\n')
		}
		if follow {
			return w.Flush()
		}
		return nil
	}
	sock, cfg, err := apiSocket(c)
	if err != nil {
		return err
	}
	err = agent.NewClient(sock).Tail(c.Context, n, follow, emit)
	if !errors.Is(err, agent.ErrDaemonNotRunning) {
		if c.Context.Err() != nil {
			return nil
		}
		return err
	}
	if cfg == nil {
		return err
	}
	// The daemon is stopped: read the log in the state directory.
	l, oerr := audit.Open(filepath.Join(cfg.StateDir, agent.LogFile), audit.Options{ReadOnly: true, Timeout: time.Second})
	if oerr != nil {
		return fmt.Errorf("daemon not running and the log cannot be read: %w", oerr)
	}
	defer l.Close()
	if follow {
		fmt.Fprintln(c.App.ErrWriter, "tollgate: daemon not running; showing the log as stored (no -f)")
	}
	return agent.StreamTail(c.Context, l, n, false, emit, func() error { return nil })
}

// formatRecord renders a stored record as one human-readable line.
func formatRecord(b []byte) string {
	r, err := audit.Decode(b)
	if err != nil {
		return fmt.Sprintf("?? undecodable record (%v): %s", err, b)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %6d %-14s", r.Time.Local().Format("2006-01-02 15:04:05.000"), r.Seq, r.Kind)
	if r.Session != "" {
		fmt.Fprintf(&sb, " session=%s", r.Session)
	}
	if r.Target != "" {
		fmt.Fprintf(&sb, " target=%s", r.Target)
	}
	if r.Dst != "" {
		fmt.Fprintf(&sb, " dst=%s", r.Dst)
	}
	if p := r.Process; p != nil {
		fmt.Fprintf(&sb, " pid=%d uid=%d comm=%s", p.Pid, p.UID, p.Comm)
		if p.Cgroup != "" {
			fmt.Fprintf(&sb, " cgroup=%s", p.Cgroup)
		}
	}
	if id := r.Identity; id != nil && id.Name != "" {
		fmt.Fprintf(&sb, " identity=%s", id.Name)
	}
	if d := r.Decision; d != nil {
		fmt.Fprintf(&sb, " decision=%s", d.Action)
		if d.Rule != "" {
			fmt.Fprintf(&sb, " rule=%s", d.Rule)
		}
		if d.Reason != "" && d.Action != "allow" {
			fmt.Fprintf(&sb, " why=%q", d.Reason)
		}
	}
	if st := r.Statement; st != nil {
		// Normalised text: literals were replaced before it was stored.
		fmt.Fprintf(&sb, " classes=%s sql=%q", strings.Join(st.Classes, ","), st.Text)
	}
	if r.Bytes != nil {
		fmt.Fprintf(&sb, " up=%d down=%d", r.Bytes.Up, r.Bytes.Down)
	}
	if r.DurationNS != 0 {
		fmt.Fprintf(&sb, " duration=%s", time.Duration(r.DurationNS).Round(time.Microsecond))
	}
	if r.CloseReason != "" {
		fmt.Fprintf(&sb, " reason=%q", r.CloseReason)
	}
	if r.Error != "" {
		fmt.Fprintf(&sb, " error=%q", r.Error)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Detail)) {
		fmt.Fprintf(&sb, " %s=%s", k, r.Detail[k])
	}
	return sb.String()
}
