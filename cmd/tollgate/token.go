// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tollgate-dev/tollgate/agent"
	"github.com/tollgate-dev/tollgate/agent/oidcdevice"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// tokenFlags are how an approver proves who they are: an OIDC ID token
// from a file, or one obtained now with the device authorization flow.
var tokenFlags = []cli.Flag{
	&cli.StringFlag{Name: "token-file", Usage: "file holding your OIDC ID token (- for stdin)", EnvVars: []string{"TOLLGATE_TOKEN_FILE"}},
	&cli.BoolFlag{Name: "device", Usage: "sign in with the OIDC device authorization flow to get a token"},
	&cli.StringFlag{Name: "issuer", Usage: "OIDC issuer for --device (default: the config's only issuer)"},
	&cli.StringFlag{Name: "client-id", Usage: "OAuth client id for --device (default: that issuer's audience)"},
	&cli.StringSliceFlag{Name: "scope", Usage: "extra scopes for --device, like groups"},
}

// errNoToken means neither --token-file nor --device was given.
var errNoToken = errors.New("approvers prove who they are with an OIDC ID token: give --token-file FILE or --device")

// approverToken returns the caller's ID token. Its text is never printed.
func approverToken(c *cli.Context, cfg *policy.Config) (string, error) {
	if f := c.String("token-file"); f != "" {
		var b []byte
		var err error
		if f == "-" {
			b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		} else {
			b, err = os.ReadFile(f)
		}
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", f)
		}
		return tok, nil
	}
	if !c.Bool("device") {
		return "", errNoToken
	}
	issuer, clientID := c.String("issuer"), c.String("client-id")
	if issuer == "" || clientID == "" {
		iss := configIssuers(c.String("config"), cfg)
		switch {
		case issuer == "" && len(iss) == 1:
			issuer = iss[0].URL
		case issuer == "":
			return "", fmt.Errorf("--device needs --issuer: the config lists %d issuers", len(iss))
		}
		if clientID == "" {
			for _, is := range iss {
				if is.URL == issuer {
					clientID = is.Audience
				}
			}
		}
		if clientID == "" {
			return "", errors.New("--device needs --client-id")
		}
	}
	w := c.App.ErrWriter
	return oidcdevice.Login(c.Context, oidcdevice.Config{Issuer: issuer, ClientID: clientID, Scopes: c.StringSlice("scope")},
		func(p oidcdevice.Prompt) {
			fmt.Fprintf(w, "To sign in, open %s and enter the code %s", p.VerificationURI, p.UserCode)
			if p.VerificationURIComplete != "" {
				fmt.Fprintf(w, " (or open %s)", p.VerificationURIComplete)
			}
			fmt.Fprintf(w, "\nwaiting until %s ...\n", p.Expires.Format("15:04:05"))
		})
}

// configIssuers returns the config's OIDC issuers, read leniently when the
// config as a whole cannot be loaded (an approver may not be able to read
// the policy file, for instance).
func configIssuers(path string, cfg *policy.Config) []policy.Issuer {
	if cfg != nil && len(cfg.OIDC.Issuers) > 0 {
		return cfg.OIDC.Issuers
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var c struct {
		OIDC policy.OIDC `yaml:"oidc"`
	}
	if yaml.Unmarshal(b, &c) != nil {
		return nil
	}
	return c.OIDC.Issuers
}

// controlError turns the daemon's refusals into messages that say what to
// do, and exit status 3 for a daemon that is not running (as status does).
// approverClient returns the daemon's API client, its socket (for
// controlError) and the approver's ID token, for the calls that change
// state.
func approverClient(c *cli.Context) (*agent.Client, string, string, error) {
	sock, cfg, err := apiSocket(c)
	if err != nil {
		return nil, "", "", err
	}
	tok, err := approverToken(c, cfg)
	if err != nil {
		return nil, "", "", err
	}
	return agent.NewClient(sock), sock, tok, nil
}

// listOut fetches a list from the daemon and prints it: as JSON with
// -o json, none as a note on stderr, else with print.
func listOut[T any](c *cli.Context, fetch func(*agent.Client) ([]T, error), none string, print func(io.Writer, []T) error) error {
	sock, _, err := apiSocket(c)
	if err != nil {
		return err
	}
	items, err := fetch(agent.NewClient(sock))
	if err != nil {
		return controlError(c, sock, err)
	}
	if c.String("output") == "json" {
		return writeJSONOut(c.App.Writer, items)
	}
	if len(items) == 0 {
		fmt.Fprintln(c.App.ErrWriter, none)
		return nil
	}
	return print(c.App.Writer, items)
}

func controlError(c *cli.Context, sock string, err error) error {
	switch {
	case errors.Is(err, agent.ErrDaemonNotRunning):
		fmt.Fprintf(c.App.ErrWriter, "tollgate: daemon not running (no answer on %s)\n", sock)
		return exitError{3}
	case errors.Is(err, agent.ErrTokenExpired):
		return fmt.Errorf("%w: get a fresh one (--device, or renew the --token-file)", err)
	case errors.Is(err, policy.ErrNoSuchApproval):
		return fmt.Errorf("%w (decided, timed out or cancelled already? see tollgate approvals list)", err)
	}
	return err
}

// positional returns the command's positional arguments after applying
// any flags that follow them ("deny ID --reason R"): urfave/cli v2 stops
// parsing flags at the first argument, so the rest is parsed here with the
// command's own flag definitions and set on c.
func positional(c *cli.Context) ([]string, error) {
	args := c.Args().Slice()
	if len(args) < 2 {
		return args, nil
	}
	fs := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(fs); err != nil {
			return nil, err
		}
	}
	pos := []string{args[0]}
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		vals := []string{f.Value.String()}
		if sl, ok := f.Value.(interface{ Value() []string }); ok {
			vals = sl.Value() // a slice flag: each value, not "[a b]"
		}
		for _, v := range vals {
			if err == nil {
				err = c.Set(f.Name, v)
			}
		}
	})
	return pos, err
}
