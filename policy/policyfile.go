// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// policyDoc is what a policy_file may hold: the sections that say who may do
// what, without the host's plumbing (paths, targets, issuers, audit).
type policyDoc struct {
	Identities []Identity `yaml:"identities,omitempty"`
	Rules      []Rule     `yaml:"rules,omitempty"`
	Masking    []Masking  `yaml:"masking,omitempty"`
}

// policySections are the top-level keys a policy_file may set.
var policySections = []string{"identities", "rules", "masking"}

// loadPolicyFile reads c.PolicyFile and puts its sections into c. A section
// set in both files is an error: which one would be in force is not
// obvious to a reader of either. Problems name the policy file and its
// lines.
func (c *Config) loadPolicyFile() error {
	file := c.PolicyFile
	if !path.IsAbs(file) || path.Clean(file) != file {
		return &FieldError{Path: "policy_file", Line: c.lines["policy_file"], Err: fmt.Errorf("%q is not an absolute, clean path", file)}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return &FieldError{Path: "policy_file", Line: c.lines["policy_file"], Err: fmt.Errorf("read: %w", err)}
	}
	doc, lines, err := parsePolicy(data)
	if err != nil {
		return inFile(err, file)
	}
	var errs []error
	both := func(sec string, inConfig, inPolicy bool) {
		if inConfig && inPolicy {
			errs = append(errs, &FieldError{Path: sec, Line: lines[sec], File: file,
				Err: fmt.Errorf("also set in the config file at line %d: keep %s in one file", c.lines[sec], sec)})
		}
	}
	both("identities", len(c.Identities) > 0, len(doc.Identities) > 0)
	both("rules", len(c.Rules) > 0, len(doc.Rules) > 0)
	both("masking", len(c.Masking) > 0, len(doc.Masking) > 0)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.lines == nil {
		c.lines = map[string]int{}
	}
	c.files = map[string]string{}
	for p, l := range lines {
		c.lines[p] = l
	}
	for _, sec := range policySections {
		if _, ok := lines[sec]; ok {
			c.files[sec] = file
		}
	}
	if len(doc.Identities) > 0 {
		c.Identities = doc.Identities
	}
	if len(doc.Rules) > 0 {
		c.Rules = doc.Rules
	}
	if len(doc.Masking) > 0 {
		c.Masking = doc.Masking
	}
	c.policyRaw = bytes.Clone(data)
	return nil
}

// parsePolicy decodes a policy file strictly, like parse does the config:
// unknown keys and wrong types are errors naming the line.
func parsePolicy(data []byte) (policyDoc, map[string]int, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return policyDoc{}, nil, errors.New("policy file is empty")
		}
		return policyDoc{}, nil, (&lineIndex{}).decodeError(err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return policyDoc{}, nil, (&lineIndex{}).decodeError(err)
	default:
		return policyDoc{}, nil, &FieldError{Line: more.Line, Err: errors.New("more than one YAML document")}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null" {
		return policyDoc{}, nil, errors.New("policy file is empty")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return policyDoc{}, nil, &FieldError{Line: root.Line, Err: errors.New("want a mapping with the keys identities, rules and masking")}
	}
	ix := indexLines(&doc)
	var pd policyDoc
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pd); err != nil {
		return policyDoc{}, nil, ix.decodeError(err)
	}
	return pd, ix.lines, nil
}

// inFile marks the FieldErrors in err as being in file, and names the file
// on any other error.
func inFile(err error, file string) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var fe *FieldError
		if errors.As(e, &fe) {
			fe.File = file
			out = append(out, fe)
			continue
		}
		out = append(out, fmt.Errorf("policy file %s: %w", file, e))
	}
	return errors.Join(out...)
}

// fileOf returns the file the key path p is in when it is not the config
// file.
func (c *Config) fileOf(p string) string {
	if c.files == nil {
		return ""
	}
	top := p
	if i := strings.IndexAny(p, ".["); i >= 0 {
		top = p[:i]
	}
	return c.files[top]
}

// FileHashes returns the "sha256:…" hashes of the config file and of the
// policy file ("" without one), as records name them next to [Config.Hash].
func (c *Config) FileHashes() (config, policyFile string) {
	config = hashBytes(c.raw)
	if c.raw == nil {
		config = c.Hash()
	}
	if c.policyRaw != nil {
		policyFile = hashBytes(c.policyRaw)
	}
	return config, policyFile
}
