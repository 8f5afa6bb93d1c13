// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

var outputFlag = &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}

var socketFlag = &cli.StringFlag{Name: "socket", Usage: "API socket (default: api_socket from the config)"}

// apiSocket returns the socket of the daemon the CLI should talk to, and the
// config (state_dir, pin path) as far as it can be read. A config the daemon
// would reject still names the socket: the running daemon keeps its last good
// config, and the CLI must be able to reach it to show that.
func apiSocket(c *cli.Context) (string, *policy.Config, error) {
	path := c.String("config")
	cfg, err := policy.Load(path)
	if err != nil {
		lenient, lerr := lenientConfig(path)
		if lerr != nil {
			return "", nil, err
		}
		fmt.Fprintf(c.App.ErrWriter, "tollgate: warning: %v\n", err)
		cfg = lenient
	}
	if s := c.String("socket"); s != "" {
		return s, &cfg, nil
	}
	return cfg.APISocket, &cfg, nil
}

// lenientConfig reads only the paths of a config file, ignoring everything
// else, on top of the defaults.
func lenientConfig(path string) (policy.Config, error) {
	cfg := policy.Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	var paths struct {
		StateDir   string `yaml:"state_dir"`
		APISocket  string `yaml:"api_socket"`
		BPFPinPath string `yaml:"bpf_pin_path"`
	}
	if err := yaml.Unmarshal(b, &paths); err != nil {
		return cfg, err
	}
	if paths.StateDir != "" {
		cfg.StateDir = paths.StateDir
	}
	if paths.APISocket != "" {
		cfg.APISocket = paths.APISocket
	}
	if paths.BPFPinPath != "" {
		cfg.BPFPinPath = paths.BPFPinPath
	}
	return cfg, nil
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
	fmt.Fprintf(tw, "kernel counters\tredirected %d, refused (no stash) %d, refused (listener not ours) %d, origin failures %d, own sockets skipped %d\n",
		st.Counters.Redirected, st.Counters.StashFailed, st.Counters.NotOwned, st.Counters.OriginFailed, st.Counters.SkippedMark)
	fmt.Fprintf(tw, "connections\taccepted %d, without origin %d, refused %d\n", st.Accepted, st.LookupMiss, st.Refused)
	health := "healthy"
	if !st.Log.Healthy {
		health = "UNWRITABLE: " + st.Log.Error
	}
	fmt.Fprintf(tw, "audit log\t%s: %d records (%d only in the journal so far), %d bytes, %s\n", st.Log.Path, st.Log.Records, st.Log.Unstored, st.Log.Bytes, health)
	fmt.Fprintf(tw, "log id\t%s\n", st.Log.ID)
	fmt.Fprintf(tw, "host key\t%s\n", st.HostKey)
	fmt.Fprintf(tw, "last checkpoint\t%s\n", st.Log.LastCheckpoint)
	fmt.Fprintf(tw, "shipping\t%s\n", st.Log.ShippingLag)
	pruned := "nothing pruned"
	if p := st.Log.Pruned; p.Below > 0 {
		pruned = fmt.Sprintf("records [0, %d) pruned (newest %s)", p.Below, p.NewestTime.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "retention\t%s; %s\n", st.Log.Retention, pruned)
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
