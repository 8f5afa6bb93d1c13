// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/urfave/cli/v2"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run the agent in the foreground (SIGHUP reloads the config, SIGTERM stops)",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (default: log.level from the config)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json (default: log.format from the config)"},
		},
		Action: func(c *cli.Context) error {
			// The config's log section, unless a flag says otherwise. A
			// config that does not load is reported by agent.Run.
			level, format := c.String("log-level"), c.String("log-format")
			if cfg, err := policy.Load(c.String("config")); err == nil {
				if cfg.Log.Level != "" && !c.IsSet("log-level") {
					level = cfg.Log.Level
				}
				if cfg.Log.Format != "" && !c.IsSet("log-format") {
					format = cfg.Log.Format
				}
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("log format %q: want text or json", format)
			}
			log, err := newLogger(os.Stderr, level, format)
			if err != nil {
				return fmt.Errorf("log level: %w", err)
			}
			procs := daemonProcs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
			runtime.GOMAXPROCS(procs)
			log.Debug("scheduler", "gomaxprocs", procs)
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

// daemonProcs is the daemon's GOMAXPROCS: the GOMAXPROCS environment
// variable's when set (def is then the runtime's reading of it), else
// half of the runtime's default (the CPUs, or the cgroup's CPU limit), at
// least 1. The daemon shares its host with the processes it intercepts and
// with their servers: on 2 vCPUs with pgbench and PostgreSQL, one P cut its
// CPU per statement by about a third (docs/BENCHMARKS.md), since a
// goroutine woken by another (client side, server side, audit log) runs
// on the same thread instead of waking a second one on a busy CPU.
func daemonProcs(env string, def int) int {
	if env != "" {
		return def
	}
	return max(1, def/2)
}
