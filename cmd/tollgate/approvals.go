// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
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

func approvalsCommand() *cli.Command {
	list := &cli.Command{
		Name:   "list",
		Usage:  "list the statements held for approval",
		Flags:  []cli.Flag{configFlag, socketFlag, outputFlag},
		Action: approvalsList,
	}
	return &cli.Command{
		Name:        "approvals",
		Usage:       "statements held for approval (list)",
		Flags:       list.Flags,
		Action:      approvalsList,
		Subcommands: []*cli.Command{list},
	}
}

func approvalsList(c *cli.Context) error {
	return listOut(c, func(cl *agent.Client) ([]policy.Hold, error) { return cl.Approvals(c.Context) },
		"no statements held for approval", func(w io.Writer, hs []policy.Hold) error { return printHolds(w, hs, time.Now()) })
}

func printHolds(w io.Writer, hs []policy.Hold, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWAITING\tTARGET\tREQUESTER\tRULE\tAPPROVALS\tDEADLINE\tSTATEMENT")
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", h.ID, now.Sub(h.Created).Round(time.Second), h.Target,
			requesterName(h.Requester), h.Rule, len(h.Approvals), max(h.Approvers.Min, 1),
			h.Deadline.Local().Format("15:04:05"), oneLine(h.Statement, 80))
	}
	return tw.Flush()
}

func requesterName(p policy.Person) string {
	switch {
	case p.Name != "" && p.Subject != "":
		return p.Name + " (" + p.Subject + ")"
	case p.Name != "":
		return p.Name
	case p.Subject != "":
		return p.Subject
	}
	return "-"
}

// oneLine shortens a statement for a table row.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func approveCommand() *cli.Command {
	return &cli.Command{
		Name:      "approve",
		Usage:     "approve a held statement (as an approver, with your OIDC ID token)",
		ArgsUsage: "ID",
		Flags: append([]cli.Flag{configFlag, socketFlag, outputFlag,
			&cli.StringFlag{Name: "reason", Usage: "why (recorded)"}}, tokenFlags...),
		Action: func(c *cli.Context) error { return decide(c, true) },
	}
}

func denyCommand() *cli.Command {
	return &cli.Command{
		Name:      "deny",
		Usage:     "deny a held statement: the client gets SQLSTATE 42501",
		ArgsUsage: "ID",
		Flags: append([]cli.Flag{configFlag, socketFlag, outputFlag,
			&cli.StringFlag{Name: "reason", Usage: "why (recorded, required)"}}, tokenFlags...),
		Action: func(c *cli.Context) error { return decide(c, false) },
	}
}

func decide(c *cli.Context, approve bool) error {
	args, err := positional(c)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return errors.New("want one approval ID (see tollgate approvals list)")
	}
	id := args[0]
	if !approve && strings.TrimSpace(c.String("reason")) == "" {
		return errors.New("deny needs --reason: the requester and the audit log are told why")
	}
	cl, sock, tok, err := approverClient(c)
	if err != nil {
		return err
	}
	res, err := cl.Decide(c.Context, id, approve, c.String("reason"), tok)
	if err != nil {
		return controlError(c, sock, err)
	}
	if c.String("output") == "json" {
		return writeJSONOut(c.App.Writer, res)
	}
	switch {
	case !res.Final:
		fmt.Fprintf(c.App.Writer, "approval of %s recorded: %d of %d approvals, still held\n", id, res.Approvals, res.Needed)
	case res.Approved:
		fmt.Fprintf(c.App.Writer, "approved %s: the statement runs now\n", id)
	default:
		fmt.Fprintf(c.App.Writer, "denied %s: the client gets SQLSTATE 42501\n", id)
	}
	if !res.Recorded {
		fmt.Fprintf(c.App.ErrWriter, "tollgate: warning: the held session has not recorded the decision yet; check tollgate audit tail\n")
	}
	return nil
}
