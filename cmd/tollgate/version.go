// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"runtime"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/urfave/cli/v2"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print version, commit, Go and kernel feature summary",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			fmt.Fprintf(w, "tollgate %s (commit %s)\n", version, commit)
			fmt.Fprintf(w, "go        %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			for _, ch := range agent.KernelChecks() {
				state := "yes"
				if ch.Err != nil {
					state = "no: " + ch.Err.Error()
				}
				fmt.Fprintf(w, "%-56s %s\n", ch.Name, state)
			}
			return nil
		},
	}
}
