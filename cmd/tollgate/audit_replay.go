// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/report"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

func auditReplayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "show a session as it happened: who, from where, each statement with its decision, approvals, results, end",
		ArgsUsage: "SESSION",
		Flags: []cli.Flag{
			configFlag, socketFlag,
			&cli.StringFlag{Name: "speed", Value: "1", Usage: "pace: 1 as it happened, 10 ten times faster, 0 all at once"},
			&cli.StringFlag{Name: "idle-limit", Usage: "longest pause between two lines (e.g. 2s)"},
			&cli.StringFlag{Name: "cast", Usage: "also write an asciicast v2 recording to this file (plays in any asciinema player)"},
		},
		// "replay SESSION --speed X": flags after the argument.
		SkipFlagParsing: true,
		Action:          auditReplay,
	}
}

func auditReplay(c *cli.Context) error {
	var cfgPath, socket, speed, idle, cast string
	speed = "1"
	cfgPath = c.String("config")
	pos, help, err := parseInterspersed(c.Args().Slice(), map[string]*string{
		"config": &cfgPath, "c": &cfgPath, "socket": &socket, "speed": &speed, "idle-limit": &idle, "cast": &cast,
	})
	if help {
		return cli.ShowSubcommandHelp(c)
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: tollgate audit replay SESSION [--speed X] [--idle-limit D] [--cast FILE]")
	}
	opts := report.ReplayOptions{}
	if opts.Speed, err = strconv.ParseFloat(speed, 64); err != nil {
		return fmt.Errorf("--speed %q: %w", speed, err)
	}
	if idle != "" {
		if opts.IdleLimit, err = time.ParseDuration(idle); err != nil {
			return fmt.Errorf("--idle-limit: %w", err)
		}
	}
	recs, err := fetchRecords(c, cfgPath, socket, audit.Filter{Session: pos[0]})
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("session %q: %w", pos[0], report.ErrNoSession)
	}
	if cast != "" {
		if err := atomicfile.WriteFrom(cast, 0o600, func(w io.Writer) error { return report.WriteCast(w, recs) }); err != nil {
			return err
		}
	}
	return report.Replay(c.Context, c.App.Writer, recs, opts)
}

// fetchRecords returns the records f selects, from the running daemon or,
// when it is stopped, from its state directory.
func fetchRecords(c *cli.Context, cfgPath, socket string, f audit.Filter) ([]*audit.Record, error) {
	if err := c.Set("config", cfgPath); err != nil {
		return nil, err
	}
	if socket != "" {
		if err := c.Set("socket", socket); err != nil {
			return nil, err
		}
	}
	sock, cfg, err := apiSocket(c)
	if err != nil {
		return nil, err
	}
	var recs []*audit.Record
	add := func(b []byte) error {
		r, err := audit.DecodeFast(b)
		if err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	}
	err = agent.NewClient(sock).Records(c.Context, f, add)
	if errors.Is(err, agent.ErrDaemonNotRunning) && cfg != nil {
		recs = nil
		l, oerr := openStoppedLog(c, cfg.StateDir)
		if oerr != nil {
			return nil, oerr
		}
		defer l.Close()
		err = l.Select(c.Context, f, func(e audit.Entry) error { return add(e.Bytes) })
	}
	return recs, err
}
