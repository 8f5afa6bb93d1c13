// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/report"
	"github.com/tollgate-dev/tollgate/internal/atomicfile"
	"github.com/tollgate-dev/tollgate/metrics"
	"github.com/urfave/cli/v2"
)

// defaultCollectorConfig is where packages install the collector's config.
const defaultCollectorConfig = "/etc/tollgate/collector.yaml"

var collectorConfigFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "collector config file",
	Value:   defaultCollectorConfig,
	EnvVars: []string{"TOLLGATE_COLLECTOR_CONFIG"},
}

func collectorCommand() *cli.Command {
	return &cli.Command{
		Name:  "collector",
		Usage: "the central collector: ingest, witness and fleet view over PostgreSQL",
		Subcommands: []*cli.Command{
			{
				Name:  "serve",
				Usage: "run the collector in the foreground (migrates the schema first; SIGTERM stops)",
				Flags: []cli.Flag{collectorConfigFlag,
					&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
					&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
				},
				Action: func(c *cli.Context) error {
					log, err := newLogger(os.Stderr, c.String("log-level"), c.String("log-format"))
					if err != nil {
						return fmt.Errorf("log level: %w", err)
					}
					cfg, err := collector.LoadConfig(c.String("config"))
					if err != nil {
						return err
					}
					store, err := collector.Open(c.Context, cfg, log)
					if err != nil {
						return fmt.Errorf("collector: %w", err)
					}
					defer store.Close()
					var obs collector.Observer
					if cfg.MetricsListen != "" {
						m := metrics.NewCollector(metrics.Build{Version: version, Commit: commit})
						ln, err := metrics.Listener(cfg.MetricsListen)
						if err != nil {
							return fmt.Errorf("collector: %w", err)
						}
						srv := m.Server()
						go srv.Serve(ln)
						defer srv.Close()
						log.Info("serving metrics", "listen", ln.Addr().String())
						obs = m
					}
					return collector.Serve(c.Context, cfg, store, log, obs, nil)
				},
			},
			{
				Name:  "migrate",
				Usage: "create or upgrade the collector's schema, then exit",
				Flags: []cli.Flag{collectorConfigFlag},
				Action: func(c *cli.Context) error {
					store, err := openStore(c)
					if err != nil {
						return err
					}
					store.Close()
					fmt.Fprintf(c.App.Writer, "schema at version %d\n", collector.SchemaVersion())
					return nil
				},
			},
			{
				Name:  "enroll",
				Usage: "print a single-use, expiring enrollment token for a host (its audit.ship.token_file)",
				Flags: []cli.Flag{collectorConfigFlag,
					&cli.StringFlag{Name: "host", Required: true, Usage: "the host's host_id"},
					&cli.DurationFlag{Name: "ttl", Value: time.Hour, Usage: "how long the token is valid"},
				},
				Action: func(c *cli.Context) error {
					store, err := openStore(c)
					if err != nil {
						return err
					}
					defer store.Close()
					tok, err := store.CreateToken(c.Context, c.String("host"), c.Duration("ttl"))
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, tok)
					return nil
				},
			},
			{
				Name:  "report",
				Usage: "the access report of `audit report` over the records the collector holds, for all hosts or one",
				Flags: []cli.Flag{collectorConfigFlag,
					&cli.StringFlag{Name: "host", Usage: "one host's records only"},
					&cli.StringFlag{Name: "since", Usage: "RFC 3339, a date (2026-11-01) or a duration ago (720h)"},
					&cli.StringFlag{Name: "until", Usage: "same forms as --since"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text, csv, json or html"},
					&cli.StringFlag{Name: "out", Usage: "write to this file instead of stdout"},
				},
				Action: collectorReport,
			},
			{
				Name:  "export",
				Usage: "an evidence bundle of one host's log from the records the collector holds, for `audit verify --key host.pub --witness-key collector.pub`",
				Description: "Writes records [--from, --to) of the log (default: all up to the newest checkpoint the collector\n" +
					"cosigned) with that checkpoint, which carries the host's signature and the collector's cosignature,\n" +
					"and the range proof, in the format of `tollgate audit export`. Records the collector's retention\n" +
					"dropped cannot be exported; the error names them.",
				Flags: []cli.Flag{collectorConfigFlag,
					&cli.StringFlag{Name: "host", Usage: "the host's name (its host_id)"},
					&cli.StringFlag{Name: "origin", Usage: "the log id, tollgate/<host-id>/<epoch> (instead of --host)"},
					&cli.Uint64Flag{Name: "from", Usage: "first record (seq)"},
					&cli.Uint64Flag{Name: "to", Usage: "records before this seq (default: the newest cosigned checkpoint's size)"},
					&cli.Uint64SliceFlag{Name: "prove-from", Usage: "also prove consistency from this tree size (of a host checkpoint the auditor holds)"},
					&cli.StringFlag{Name: "out", Required: true, Usage: "bundle file to write (a tar archive)"},
				},
				Action: collectorExport,
			},
			{
				Name:  "hosts",
				Usage: "every enrolled host: origin, size, cosigned size, lag, last seen, silent, misbehavior",
				Flags: []cli.Flag{collectorConfigFlag, outputFlag},
				Action: func(c *cli.Context) error {
					store, err := openStore(c)
					if err != nil {
						return err
					}
					defer store.Close()
					hosts, err := store.Hosts(c.Context)
					if err != nil {
						return err
					}
					mis, err := store.MisbehaviorOf(c.Context, "")
					if err != nil {
						return err
					}
					if c.String("output") == "json" {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(struct {
							Hosts       []collector.HostStatus  `json:"hosts"`
							Misbehavior []collector.Misbehavior `json:"misbehavior"`
						}{hosts, mis})
					}
					return printHosts(c, hosts, mis)
				},
			},
		},
	}
}

func printHosts(c *cli.Context, hosts []collector.HostStatus, mis []collector.Misbehavior) error {
	w := c.App.Writer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tORIGIN\tSIZE\tCOSIGNED\tLAG\tLAST SEEN\tSILENT\tMISBEHAVIOR")
	for _, h := range hosts {
		lag := "-"
		if h.LastCheckpoint != nil {
			lag = h.Lag.Round(time.Second).String()
		}
		silent := "no"
		if h.Silent {
			silent = "SILENT"
		}
		m := fmt.Sprint(h.Misbehavior)
		if h.Halted != "" {
			m += " (HALTED)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", h.Name, h.Origin, h.Size, h.Cosigned, lag,
			h.LastSeen.UTC().Format(time.RFC3339), silent, m)
	}
	tw.Flush()
	if len(mis) > 0 {
		fmt.Fprintln(w, "\nMISBEHAVIOR")
		for _, m := range mis {
			fmt.Fprintf(w, "%s  %s  %s: %s\n", m.DetectedAt.UTC().Format(time.RFC3339), m.Origin, strings.ToUpper(m.Kind), m.Detail)
		}
	}
	return nil
}

func collectorReport(c *cli.Context) error {
	var since, until time.Time
	now := time.Now()
	var err error
	if s := c.String("since"); s != "" {
		if since, err = audit.ParseTime(s, now); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	if s := c.String("until"); s != "" {
		if until, err = audit.ParseTime(s, now); err != nil {
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
	store, err := openStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := store.Report(c.Context, c.String("host"), since, until)
	if err != nil {
		return err
	}
	days, err := store.DroppedDays(c.Context, since, until)
	if err != nil {
		return err
	}
	if len(days) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "tollgate: the collector's retention dropped the records of %d day(s) in this period (%s to %s); the report covers what is left\n",
			len(days), days[0].Format("2006-01-02"), days[len(days)-1].Format("2006-01-02"))
	}
	if out := c.String("out"); out != "" {
		return atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error { return write(rep, w) })
	}
	return write(rep, c.App.Writer)
}

func collectorExport(c *cli.Context) error {
	store, err := openStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	ex, err := store.Export(c.Context, collector.ExportOptions{Host: c.String("host"), Origin: c.String("origin"),
		From: c.Uint64("from"), To: c.Uint64("to"), ProveFrom: c.Uint64Slice("prove-from"), Tool: "tollgate collector " + version})
	if err != nil {
		return err
	}
	out := c.String("out")
	if err := atomicfile.WriteFrom(out, 0o600, func(w io.Writer) error {
		_, err := ex.WriteTo(c.Context, w)
		return err
	}); err != nil {
		return err
	}
	m, sum, err := bundleSummary(out)
	if err != nil {
		return fmt.Errorf("read back %s: %w", out, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s: records %d to %d (%d) of log %s, cosigned tree of %d records signed %s\nsha256 %s\n",
		out, m.Begin, m.End-1, m.Records, m.Log, m.TreeSize, m.CheckpointTime.Format(time.RFC3339), sum)
	return nil
}

// openStore loads --config and opens the collector's store (running the
// migrations), for the subcommands that only read or enroll; serve opens
// its own with its logger.
func openStore(c *cli.Context) (*collector.Store, error) {
	cfg, err := collector.LoadConfig(c.String("config"))
	if err != nil {
		return nil, err
	}
	store, err := collector.Open(c.Context, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	return store, nil
}
