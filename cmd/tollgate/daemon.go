// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/urfave/cli/v2"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run the agent in the foreground (SIGHUP reloads the config, SIGTERM stops)",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		},
		Action: func(c *cli.Context) error {
			log, err := newLogger(os.Stderr, c.String("log-level"), c.String("log-format"))
			if err != nil {
				return fmt.Errorf("log level: %w", err)
			}
			err = agent.Run(c.Context, agent.Options{
				ConfigPath: c.String("config"),
				Logger:     log,
				Version:    version,
				Commit:     commit,
			})
			if err != nil {
				// Printed plainly by main: config errors must be readable.
				return fmt.Errorf("daemon: %w", err)
			}
			return nil
		},
	}
}
