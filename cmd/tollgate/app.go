// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

// defaultConfig is where packages install the config.
const defaultConfig = "/etc/tollgate/tollgate.yaml"

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "config file",
	Value:   defaultConfig,
	EnvVars: []string{"TOLLGATE_CONFIG"},
}

// run builds the CLI. Nouns read state, verbs change it.
func run(ctx context.Context, args []string) error {
	app := &cli.App{
		Name:                 "tollgate",
		Usage:                "policy and tamper-evident audit on the data path of automation",
		Version:              version,
		EnableBashCompletion: true,
		HideVersion:          true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		Commands: []*cli.Command{
			daemonCommand(),
			statusCommand(),
			doctorCommand(),
			auditCommand(),
			approvalsCommand(),
			approveCommand(),
			denyCommand(),
			grantCommand(),
			uninstallCommand(),
			versionCommand(),
			collectorCommand(),
			sshCommand(),
			completionCommand(),
			manCommand(),
		},
	}
	return app.RunContext(ctx, args)
}

// newLogger returns the daemon's slog logger on stderr.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
