// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/redirect"
	"github.com/urfave/cli/v2"
)

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "detach and unpin every program and map the daemon left (connections go direct again)",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "pin-path", Usage: "bpffs directory (default: bpf_pin_path from the config)"},
			&cli.BoolFlag{Name: "force", Usage: "uninstall even while the daemon is running"},
		},
		Action: func(c *cli.Context) error {
			pin := c.String("pin-path")
			var cfg policy.Config
			var cfgErr error
			cfg, cfgErr = policy.Load(c.String("config"))
			if cfgErr != nil {
				if lenient, err := lenientConfig(c.String("config")); err == nil {
					cfg, cfgErr = lenient, nil
				}
			}
			if pin == "" {
				if cfgErr != nil {
					pin = policy.Default().BPFPinPath
					fmt.Fprintf(c.App.ErrWriter, "tollgate: config unreadable (%v); using %s\n", cfgErr, pin)
				} else {
					pin = cfg.BPFPinPath
				}
			}
			if cfgErr == nil && !c.Bool("force") {
				if _, err := agent.NewClient(cfg.APISocket).Status(c.Context); err == nil {
					return fmt.Errorf("the daemon is running on %s; stop it first or pass --force", cfg.APISocket)
				}
			}
			if err := redirect.Unload(pin); err != nil {
				if errors.Is(err, redirect.ErrNotLoaded) {
					fmt.Fprintf(c.App.Writer, "nothing pinned at %s\n", pin)
					return nil
				}
				return err
			}
			fmt.Fprintf(c.App.Writer, "detached and unpinned %s\n", pin)
			return nil
		},
	}
}
