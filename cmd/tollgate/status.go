// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/urfave/cli/v2"
)

var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}

var socketFlag = &cli.StringFlag{Name: "socket", Usage: "API socket (default: api_socket from the config)"}

// apiSocket returns the socket of the daemon the CLI should talk to, and the
// config when it could be read.
func apiSocket(c *cli.Context) (string, *policy.Config, error) {
	cfg, err := policy.Load(c.String("config"))
	if s := c.String("socket"); s != "" {
		if err != nil {
			return s, nil, nil
		}
		return s, &cfg, nil
	}
	if err != nil {
		return "", nil, err
	}
	return cfg.APISocket, &cfg, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show attached programs, workloads, targets, open sessions and the audit log",
		Flags: []cli.Flag{configFlag, socketFlag, outputFlag},
		Action: func(c *cli.Context) error {
			sock, _, err := apiSocket(c)
			if err != nil {
				return err
			}
			st, err := agent.NewClient(sock).Status(c.Context)
			if err != nil {
				if errors.Is(err, agent.ErrDaemonNotRunning) {
					fmt.Fprintf(c.App.ErrWriter, "tollgate: daemon not running (no answer on %s)\n", sock)
					return exitError{3}
				}
				return err
			}
			if c.String("output") == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(c.App.Writer, st)
		},
	}
}

func printStatus(w io.Writer, st agent.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "daemon\tpid %d, version %s, up since %s\n", st.PID, st.Version, st.Started.Format("2006-01-02 15:04:05Z07:00"))
	fmt.Fprintf(tw, "host id\t%s\n", st.HostID)
	fmt.Fprintf(tw, "config\t%s\n", st.ConfigHash)
	fmt.Fprintf(tw, "programs\t%s (cgroup2 %s, pinned in %s)\n", strings.Join(st.Programs, ", "), st.Cgroup2, st.PinPath)
	fmt.Fprintf(tw, "kernel counters\tredirected %d, refused (no stash) %d, origin failures %d, own sockets skipped %d\n",
		st.Counters.Redirected, st.Counters.StashFailed, st.Counters.OriginFailed, st.Counters.SkippedMark)
	fmt.Fprintf(tw, "connections\taccepted %d, without origin %d, refused %d\n", st.Accepted, st.LookupMiss, st.Refused)
	health := "healthy"
	if !st.Log.Healthy {
		health = "UNWRITABLE: " + st.Log.Error
	}
	fmt.Fprintf(tw, "audit log\t%s: %d records, %d bytes, %s\n", st.Log.Path, st.Log.Records, st.Log.Bytes, health)
	fmt.Fprintf(tw, "log id\t%s\n", st.Log.ID)
	fmt.Fprintf(tw, "last checkpoint\t%s\n", st.Log.LastCheckpoint)
	fmt.Fprintf(tw, "shipping\t%s\n", st.Log.ShippingLag)
	tw.Flush()

	fmt.Fprintln(w, "\nWORKLOADS")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSELECTOR\tCGROUP\tSTATE")
	for _, wl := range st.Workloads {
		state := "intercepted"
		if wl.Problem != "" {
			state = wl.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", wl.Name, wl.Selector, dash(wl.Cgroup), state)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nTARGETS")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROTOCOL\tLISTEN\tDESTINATIONS\tPROBLEM")
	for _, t := range st.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Protocol, strings.Join(t.Listen, ","), strings.Join(t.Destinations, ","), dash(t.Problem))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nOPEN SESSIONS (%d)\n", len(st.Sessions))
	if len(st.Sessions) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tTARGET\tDST\tPID\tUID\tCOMM\tSTARTED")
		for _, s := range st.Sessions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.Target, s.Dst, s.PID, s.UID, s.Comm, s.Started.Format("15:04:05"))
		}
		tw.Flush()
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
