// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check kernel features, cgroup2 and bpffs mounts, BTF, capabilities and the config; say how to fix each",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			checks := append(agent.KernelChecks(), agent.HostChecks(c.String("config"))...)
			failed := 0
			for _, ch := range checks {
				if ch.Err == nil {
					fmt.Fprintf(c.App.Writer, "ok    %s\n", ch.Name)
					continue
				}
				if ch.Warn {
					// A known limit to act on; the daemon still runs.
					fmt.Fprintf(c.App.Writer, "WARN  %s: %v\n", ch.Name, ch.Err)
				} else {
					failed++
					fmt.Fprintf(c.App.Writer, "FAIL  %s: %v\n", ch.Name, ch.Err)
				}
				if ch.Fix != "" {
					fmt.Fprintf(c.App.Writer, "      fix: %s\n", ch.Fix)
				}
			}
			if failed > 0 {
				fmt.Fprintf(c.App.Writer, "%d of %d checks failed\n", failed, len(checks))
				return exitError{1}
			}
			fmt.Fprintf(c.App.Writer, "all %d checks passed\n", len(checks))
			return nil
		},
	}
}
