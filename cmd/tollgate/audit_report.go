// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/report"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
)

func auditReportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "access summaries of a period (identity × target, approvals, denials, grants, masking, clock), mapped to ISO/IEC 27001:2022 controls",
		Flags: []cli.Flag{
			configFlag, socketFlag,
			&cli.StringFlag{Name: "since", Usage: "RFC 3339, a date (2026-11-01) or a duration ago (720h)"},
			&cli.StringFlag{Name: "until", Usage: "same forms as --since"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text, csv, json or html"},
			&cli.StringFlag{Name: "out", Usage: "write to this file instead of stdout"},
		},
		Action: auditReport,
	}
}

func auditReport(c *cli.Context) error {
	var f audit.Filter
	now := time.Now()
	var err error
	if s := c.String("since"); s != "" {
		if f.Since, err = audit.ParseTime(s, now); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	if s := c.String("until"); s != "" {
		if f.Until, err = audit.ParseTime(s, now); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	write := map[string]func(*report.Report, io.Writer) error{
		"text": (*report.Report).WriteText, "csv": (*report.Report).WriteCSV,
		"json": (*report.Report).WriteJSON, "html": (*report.Report).WriteHTML,
	}[c.String("output")]
	if write == nil {
		return fmt.Errorf("-o %q: text, csv, json or html", c.String("output"))
	}
	recs, err := fetchRecords(c, c.String("config"), c.String("socket"), f)
	if err != nil {
		return err
	}
	b := report.NewBuilder("", f.Since, f.Until)
	for _, r := range recs {
		b.Add(r)
	}
	rep := b.Finish()
	if sock, _, err := apiSocket(c); err == nil {
		if st, err := agent.NewClient(sock).Status(c.Context); err == nil {
			rep.CheckpointSize, rep.CheckpointTime = st.Log.CheckpointSize, st.Log.CheckpointTime
		}
	}
	if out := c.String("out"); out != "" {
		return atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error { return write(rep, w) })
	}
	return write(rep, c.App.Writer)
}
