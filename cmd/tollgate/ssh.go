// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"

	sshproxy "github.com/tollgate-dev/tollgate/agent/ssh"
)

// sshCommand prints the lines that make clients and targets trust
// tollgate's SSH CAs. The CAs live in state_dir and are created by the
// daemon at its first start (or here, if it has not started yet).
func sshCommand() *cli.Command {
	stateDir := func(c *cli.Context) (string, error) {
		if d := c.String("state-dir"); d != "" {
			return d, nil
		}
		cfg, err := lenientConfig(c.String("config"))
		if err != nil {
			return "", err
		}
		return cfg.StateDir, nil
	}
	flags := []cli.Flag{configFlag, &cli.StringFlag{Name: "state-dir", Usage: "state directory (default: state_dir from the config)"}}
	return &cli.Command{
		Name:  "ssh",
		Usage: "the trust lines of tollgate's SSH certificate authorities",
		Subcommands: []*cli.Command{
			{
				Name:      "known-hosts",
				Usage:     "print the @cert-authority line for clients' known_hosts (e.g. /etc/ssh/ssh_known_hosts), or put it there with --install",
				ArgsUsage: "[host-patterns]",
				Flags:     slices.Concat(flags, []cli.Flag{&cli.StringFlag{Name: "install", Usage: "put the line into this known_hosts `FILE`, in place of an earlier tollgate host CA line"}}),
				Action:    caAction(stateDir, knownHosts),
			},
			{
				Name:  "user-ca",
				Usage: "print the user CA key for targets' TrustedUserCAKeys file",
				Flags: flags,
				Action: caAction(stateDir, func(c *cli.Context, ca *sshproxy.CA) error {
					_, err := fmt.Fprintln(c.App.Writer, ca.UserCALine())
					return err
				}),
			},
		},
	}
}

// caAction is the action of a command that uses the CAs in the state
// directory.
func caAction(stateDir func(*cli.Context) (string, error), act func(*cli.Context, *sshproxy.CA) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		dir, err := stateDir(c)
		if err != nil {
			return err
		}
		ca, err := sshproxy.LoadCA(dir)
		if err != nil {
			return err
		}
		return act(c, ca)
	}
}

// knownHosts prints the host CA's known_hosts line, or with --install puts
// it into a file.
func knownHosts(c *cli.Context, ca *sshproxy.CA) error {
	line := ca.KnownHostsLine(c.Args().First())
	file := c.String("install")
	if file == "" {
		_, err := fmt.Fprintln(c.App.Writer, line)
		return err
	}
	changed, err := sshproxy.InstallKnownHosts(file, line)
	if err != nil {
		return err
	}
	if changed {
		fmt.Fprintf(c.App.Writer, "%s: tollgate host CA line installed\n", file)
	} else {
		fmt.Fprintf(c.App.Writer, "%s: tollgate host CA line already there\n", file)
	}
	return nil
}
