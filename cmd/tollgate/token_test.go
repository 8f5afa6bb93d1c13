// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestPositional: flags after the ID ("deny ID --reason R --device") are
// applied, as users type them and as the docs show.
func TestPositional(t *testing.T) {
	for _, args := range [][]string{
		{"x", "deny", "ap-1", "--reason", "too risky", "--device", "--scope", "groups"},
		{"x", "deny", "--reason", "too risky", "ap-1", "--device", "--scope=groups"},
		{"x", "deny", "--reason=too risky", "--device", "--scope", "groups", "ap-1"},
	} {
		var got struct {
			pos    []string
			reason string
			device bool
			scopes []string
		}
		cmd := denyCommand()
		cmd.Action = func(c *cli.Context) error {
			pos, err := positional(c)
			got.pos, got.reason, got.device, got.scopes = pos, c.String("reason"), c.Bool("device"), c.StringSlice("scope")
			return err
		}
		app := &cli.App{Commands: []*cli.Command{cmd}}
		if err := app.RunContext(context.Background(), args); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !slices.Equal(got.pos, []string{"ap-1"}) || got.reason != "too risky" || !got.device || !slices.Equal(got.scopes, []string{"groups"}) {
			t.Errorf("%q: got %+v", args, got)
		}
	}
}
