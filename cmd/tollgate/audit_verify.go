// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/mod/sumdb/note"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/audit/collector"
	"github.com/tollgate-dev/tollgate/audit/evidence"
)

func auditVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check an evidence bundle offline; exit status 0 only if everything checks",
		ArgsUsage: "BUNDLE",
		Description: "Checks, with nothing but the host's public key: the checkpoint signatures and origin, that the\n" +
			"records are contiguous and exactly those the signed tree holds, consistency between the\n" +
			"checkpoints and with --trusted-checkpoint (a checkpoint you kept earlier: this detects a log rolled\n" +
			"back or rewritten since), the manifest, and the records' semantics. With --witness-key, the\n" +
			"signed checkpoint must also carry each witness's valid cosignature (C2SP cosignature/v1): the\n" +
			"collector saw this tree before the host could rewrite it (export with --witnessed). The bundle's\n" +
			"VERIFY.md describes the algorithm.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "the host's public key: a host.pub file or its text (name+hash+key); required"},
			&cli.StringFlag{Name: "trusted-checkpoint", Usage: "a checkpoint note you obtained earlier (tollgate audit checkpoint, or an earlier bundle's checkpoint.note)"},
			&cli.StringSliceFlag{Name: "witness-key", Usage: "a witness's public key (the collector's signing_key.pub), as a file or its text; checkpoint.note must carry its valid cosignature (repeat for several witnesses)"},
			outputFlag,
		},
		// urfave/cli v2 stops parsing flags at the first argument, and
		// the documented form is "verify FILE --key PUBKEY": parse them
		// here, in any order.
		SkipFlagParsing: true,
		Action:          auditVerify,
	}
}

// verifyArgs are the parsed arguments of audit verify.
type verifyArgs struct {
	bundle, key, trusted, output string
	witnesses                    []string
}

// parseVerifyArgs parses flags and the bundle path in any order.
func parseVerifyArgs(args []string) (verifyArgs, bool, error) {
	a := verifyArgs{output: "text"}
	pos, help, err := parseInterspersedLists(args, map[string]*string{
		"key": &a.key, "trusted-checkpoint": &a.trusted, "output": &a.output, "o": &a.output,
	}, map[string]*[]string{"witness-key": &a.witnesses})
	switch {
	case help || err != nil:
		return a, help, err
	case len(pos) != 1:
		return a, false, errors.New("usage: tollgate audit verify BUNDLE --key PUBKEY [--trusted-checkpoint FILE] [--witness-key FILE]... [-o json]")
	case a.key == "":
		return a, false, errors.New("--key is required: the host's public key (host.pub), as you obtained it")
	case a.output != "text" && a.output != "json":
		return a, false, fmt.Errorf("-o %q: text or json", a.output)
	}
	a.bundle = pos[0]
	return a, false, nil
}

func auditVerify(c *cli.Context) error {
	args, help, err := parseVerifyArgs(c.Args().Slice())
	if help {
		return cli.ShowSubcommandHelp(c)
	}
	if err != nil {
		return err
	}
	v, err := loadVerifierKey(args.key)
	if err != nil {
		return err
	}
	opts := evidence.VerifyOptions{Key: v}
	for _, w := range args.witnesses {
		wv, err := loadWitnessKey(w)
		if err != nil {
			return err
		}
		opts.Witnesses = append(opts.Witnesses, wv)
	}
	if args.trusted != "" {
		if opts.Trusted, err = os.ReadFile(args.trusted); err != nil {
			return fmt.Errorf("--trusted-checkpoint: %w", err)
		}
	}
	path := args.bundle
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := evidence.Verify(f, opts)
	if err != nil && !errors.Is(err, evidence.ErrVerifyFailed) {
		return err
	}
	if args.output == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printVerifyReport(c.App.Writer, path, rep)
	}
	if !rep.OK {
		return exitError{1}
	}
	return nil
}

// loadVerifierKey accepts verifier key text or a file holding it.
func loadVerifierKey(s string) (note.Verifier, error) {
	if v, err := audit.ParseVerifierKey(s); err == nil {
		return v, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("--key %q is neither a verifier key nor a readable file: %w", s, err)
	}
	v, err := audit.ParseVerifierKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", s, err)
	}
	return v, nil
}

// loadWitnessKey accepts a witness's verifier key text (the collector's
// signing_key.pub) or a file holding it.
func loadWitnessKey(s string) (note.Verifier, error) {
	if v, err := collector.NewCosignVerifier(s); err == nil {
		return v, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("--witness-key %q is neither a witness key nor a readable file: %w", s, err)
	}
	v, err := collector.NewCosignVerifier(string(b))
	if err != nil {
		return nil, fmt.Errorf("--witness-key %s: %w", s, err)
	}
	return v, nil
}

// printVerifyReport writes the report for people.
func printVerifyReport(w io.Writer, path string, rep *evidence.VerifyReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "bundle\t%s\n", path)
	fmt.Fprintf(tw, "sha256\t%s\n", rep.BundleSHA256)
	fmt.Fprintf(tw, "key\t%s\n", rep.Key)
	if rep.Log != "" {
		fmt.Fprintf(tw, "log\t%s\n", rep.Log)
		fmt.Fprintf(tw, "checkpoint\tsize %d, signed %s\n", rep.TreeSize, rep.CheckpointTime.Format(time.RFC3339Nano))
	}
	if rep.Records > 0 {
		fmt.Fprintf(tw, "records\t%d, seq %d to %d, %s to %s\n", rep.Records, rep.Begin, rep.End-1,
			rep.FirstTime.Format(time.RFC3339), rep.LastTime.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "checkpoints\t%d earlier, %d consistency proofs verified\n", rep.Checkpoints, rep.ConsistencyProofs)
	if rep.Trusted != "" {
		fmt.Fprintf(tw, "trusted\t%s\n", rep.Trusted)
	}
	if len(rep.Witnesses) > 0 {
		fmt.Fprintf(tw, "cosigned by\t%s\n", strings.Join(rep.Witnesses, ", "))
	}
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(rep.Kinds)) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, rep.Kinds[k]))
	}
	if len(kinds) > 0 {
		fmt.Fprintf(tw, "kinds\t%s\n", strings.Join(kinds, ", "))
	}
	s := rep.Sessions
	fmt.Fprintf(tw, "sessions\t%d started, %d ended, %d open at the end, %d cut by a restart, %d started before the bundle; %d statements\n",
		s.Started, s.Ended, s.Open, s.Interrupted, s.StartedBefore, s.Statements)
	fmt.Fprintf(tw, "took\t%s (%.0f records/s)\n", rep.Elapsed.Round(time.Millisecond), float64(rep.Records)/max(rep.Elapsed.Seconds(), 1e-9))
	tw.Flush()
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\nWARNINGS (%d)\n", len(rep.Warnings)+rep.WarningsOmitted)
		for _, p := range rep.Warnings {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if rep.WarningsOmitted > 0 {
			fmt.Fprintf(w, "  … and %d more\n", rep.WarningsOmitted)
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "\nVERIFIED: every check passed")
		return
	}
	fmt.Fprintf(w, "\nFAILED (%d)\n", len(rep.Failures)+rep.FailuresOmitted)
	for _, p := range rep.Failures {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if rep.FailuresOmitted > 0 {
		fmt.Fprintf(w, "  … and %d more\n", rep.FailuresOmitted)
	}
}
