// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/urfave/cli/v2"
)

func grantCommand() *cli.Command {
	return &cli.Command{
		Name:  "grant",
		Usage: "time-boxed just-in-time grants (create, list, revoke)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "give an identity statement classes on a target for a while (as an approver)",
				Flags: append([]cli.Flag{configFlag, socketFlag, outputFlag,
					&cli.StringFlag{Name: "identity", Required: true, Usage: "configured identity that gets the grant"},
					&cli.StringFlag{Name: "target", Required: true, Usage: "target name"},
					&cli.StringSliceFlag{Name: "allow", Required: true, Usage: "statement classes, like ddl or ddl,truncate"},
					&cli.StringFlag{Name: "for", Required: true, Usage: "how long, like 30m or 2h (at most 7d)"},
					&cli.StringFlag{Name: "reason", Required: true, Usage: "why (recorded)"},
				}, tokenFlags...),
				Action: grantCreate,
			},
			{
				Name:   "list",
				Usage:  "list grants with their state (active, expired, revoked)",
				Flags:  []cli.Flag{configFlag, socketFlag, outputFlag},
				Action: grantList,
			},
			{
				Name:      "revoke",
				Usage:     "end a grant now (as its creator or an approver who could create it)",
				ArgsUsage: "ID",
				Flags: append([]cli.Flag{configFlag, socketFlag, outputFlag,
					&cli.StringFlag{Name: "reason", Usage: "why (recorded)"}}, tokenFlags...),
				Action: grantRevoke,
			},
		},
	}
}

func grantCreate(c *cli.Context) error {
	d, err := policy.ParseDuration(c.String("for"))
	if err != nil {
		return fmt.Errorf("--for: %w", err)
	}
	var classes []policy.Class
	for _, v := range c.StringSlice("allow") {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cl := policy.Class(s)
				if !cl.Valid() {
					return fmt.Errorf("--allow: unknown class %q", s)
				}
				classes = append(classes, cl)
			}
		}
	}
	cl, sock, tok, err := approverClient(c)
	if err != nil {
		return err
	}
	g, err := cl.CreateGrant(c.Context, agent.GrantRequest{Identity: c.String("identity"), Target: c.String("target"),
		Classes: classes, For: d, Reason: c.String("reason")}, tok)
	if err != nil {
		return controlError(c, sock, err)
	}
	if c.String("output") == "json" {
		return writeJSONOut(c.App.Writer, g)
	}
	fmt.Fprintf(c.App.Writer, "granted %s: %s may run %s on %s until %s\n", g.ID, g.Identity, joinClasses(g.Classes), g.Target,
		g.Until.Local().Format(time.RFC3339))
	return nil
}

func grantList(c *cli.Context) error {
	return listOut(c, func(cl *agent.Client) ([]agent.GrantInfo, error) { return cl.Grants(c.Context) }, "no grants", printGrants)
}

func printGrants(w io.Writer, gs []agent.GrantInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tIDENTITY\tTARGET\tALLOW\tSTATE\tUNTIL\tBY\tREASON")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Identity, g.Target, joinClasses(g.Classes), g.State,
			g.Until.Local().Format("2006-01-02 15:04:05"), requesterName(g.By), oneLine(g.Reason, 60))
	}
	return tw.Flush()
}

func grantRevoke(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return errors.New("want one grant ID (see tollgate grant list)")
	}
	cl, sock, tok, err := approverClient(c)
	if err != nil {
		return err
	}
	g, err := cl.RevokeGrant(c.Context, args[0], c.String("reason"), tok)
	if err != nil {
		return controlError(c, sock, err)
	}
	if c.String("output") == "json" {
		return writeJSONOut(c.App.Writer, g)
	}
	fmt.Fprintf(c.App.Writer, "revoked %s\n", g.ID)
	return nil
}

func joinClasses(cs []policy.Class) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}
