// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Errors that callers may test for with [errors.Is].
var (
	// ErrEmpty is returned by Parse and Load for a file with no YAML
	// document, or only a null one.
	ErrEmpty = errors.New("config is empty")
	// ErrUnknownKey is wrapped by the error reported for each key the config
	// model does not have.
	ErrUnknownKey = errors.New("unknown key")
)

// A FieldError is one problem in a config: where it is and what is wrong.
// Parse, Load and Validate report problems as FieldErrors, several joined
// with [errors.Join].
type FieldError struct {
	// Path is the key path, like "targets[1].match[0]"; empty when the
	// problem is not tied to a key.
	Path string
	// Line is the YAML line, counted from 1; 0 when unknown, as in a
	// Config built in Go.
	Line int
	// File is the file Line is in when that is not the config file
	// itself: the policy_file.
	File string
	// Err says what is wrong.
	Err error
}

// Error formats e as `targets[1].match[0] (line 14): bad CIDR "10.0.0.0/33"`,
// leaving out what is unknown. A problem in the policy file names it:
// `rules[0].action (/etc/tollgate/policy.yaml line 4): ...`.
func (e *FieldError) Error() string {
	line := fmt.Sprintf("line %d", e.Line)
	if e.File != "" {
		line = e.File + " " + line
	}
	switch {
	case e.Path != "" && e.Line > 0:
		return fmt.Sprintf("%s (%s): %v", e.Path, line, e.Err)
	case e.Path != "":
		return e.Path + ": " + e.Err.Error()
	case e.Line > 0 && e.File != "":
		return fmt.Sprintf("%s: %v", line, e.Err)
	case e.Line > 0:
		return fmt.Sprintf("config %s: %v", line, e.Err)
	default:
		return "config: " + e.Err.Error()
	}
}

// Unwrap returns e.Err.
func (e *FieldError) Unwrap() error { return e.Err }

// Load reads and parses the config file at path and, when it names one, its
// policy_file; see [Parse]. Problems in the policy file name that file.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	c, err := parse(data)
	if err == nil && c.PolicyFile != "" {
		err = c.loadPolicyFile()
	}
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		return Config{}, fmt.Errorf("load %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a YAML config over [Default] and validates it. Unknown keys,
// values of the wrong type and every problem [Config.Validate] finds are
// errors naming the line; an empty document is [ErrEmpty]. Parse keeps data
// for [Config.Hash]. It reads no files: a policy_file is read by [Load].
func Parse(data []byte) (Config, error) {
	c, err := parse(data)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parse decodes a config without validating it.
func parse(data []byte) (Config, error) {
	// First pass: the node tree, for the line of every key path.
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, ErrEmpty
		}
		return Config{}, (&lineIndex{}).decodeError(err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return Config{}, (&lineIndex{}).decodeError(err)
	default:
		return Config{}, &FieldError{Line: more.Line, Err: errors.New("more than one YAML document")}
	}
	if len(doc.Content) == 0 {
		return Config{}, ErrEmpty
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return Config{}, ErrEmpty
	}
	if root.Kind != yaml.MappingNode {
		return Config{}, &FieldError{Line: root.Line, Err: errors.New("want a mapping with keys such as listen_address and targets")}
	}
	ix := indexLines(&doc)

	// Second pass: the values. KnownFields makes yaml report unknown keys.
	c := Default()
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, ix.decodeError(err)
	}
	c.raw = bytes.Clone(data)
	c.lines = ix.lines
	return c, nil
}

// Hash returns "sha256:" and the hex SHA-256 of the bytes Parse read, so
// records can name the config in force and anyone can check it with
// sha256sum. With a policy_file it hashes the config file's bytes followed
// by the policy file's (`cat tollgate.yaml policy.yaml | sha256sum`), so the
// hash covers the whole policy in force. For a Config not made by Parse it
// hashes the YAML encoding.
func (c *Config) Hash() string {
	if c.policyRaw != nil {
		h := sha256.New()
		h.Write(c.raw)
		h.Write(c.policyRaw)
		return "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	b := c.raw
	if b == nil {
		var err error
		if b, err = yaml.Marshal(c); err != nil {
			// Every field is a string, number, list, map or Duration, and
			// those always marshal.
			panic("policy: marshal config: " + err.Error())
		}
	}
	return hashBytes(b)
}

// hashBytes returns "sha256:" and the hex SHA-256 of b.
func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// lineIndex says where key paths like "targets[1].match[0]" are in a YAML
// document.
type lineIndex struct {
	lines  map[string]int   // path → line of its key, or of the item in a list
	byLine map[int][]string // line → paths with a key or value on it
}

func indexLines(doc *yaml.Node) *lineIndex {
	ix := &lineIndex{lines: map[string]int{}, byLine: map[int][]string{}}
	ix.walk(doc, "")
	return ix
}

func (ix *lineIndex) walk(n *yaml.Node, path string) {
	// Scalars are recorded by their parent. Aliases are not followed, so
	// nested aliases cannot blow up the index.
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			ix.walk(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ix.lines[p] = k.Line
			ix.byLine[k.Line] = append(ix.byLine[k.Line], p)
			// A value on a line of its own is p's too, unless it is a
			// block collection: then that line is its first entry's.
			block := (v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode) && v.Style&yaml.FlowStyle == 0
			if v.Line != k.Line && !block {
				ix.byLine[v.Line] = append(ix.byLine[v.Line], p)
			}
			ix.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			ix.lines[p] = c.Line
			ix.byLine[c.Line] = append(ix.byLine[c.Line], p)
			ix.walk(c, p)
		}
	}
}

// decodeError turns yaml's errors, which name a line but not a key path,
// into FieldErrors with both.
func (ix *lineIndex) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return ix.lineError(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, ix.lineError(msg))
	}
	return errors.Join(errs...)
}

// lineError parses one of yaml's messages, like "line 7: field x not found
// in type policy.Config" or "line 9: cannot unmarshal !!str `a` into int".
func (ix *lineIndex) lineError(msg string) *FieldError {
	rest, ok := strings.CutPrefix(msg, "line ")
	num, text, ok2 := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(num)
	if !ok || !ok2 || err != nil {
		return &FieldError{Err: errors.New(msg)}
	}
	if key, ok := unknownField(text); ok {
		return &FieldError{Path: ix.parentAt(line, key), Line: line, Err: fmt.Errorf("%w %q", ErrUnknownKey, key)}
	}
	return &FieldError{Path: ix.commonAt(line), Line: line, Err: errors.New(text)}
}

// unknownField returns the key of yaml's "field x not found in type T".
func unknownField(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, "field ")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, " not found in type ")
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

// parentAt returns the path of the mapping holding key on line.
func (ix *lineIndex) parentAt(line int, key string) string {
	for _, p := range ix.byLine[line] {
		if p == key {
			return ""
		}
		if parent, ok := strings.CutSuffix(p, "."+key); ok {
			return parent
		}
	}
	return ""
}

// commonAt returns the innermost path that holds everything on line: the
// value yaml complains about is there.
func (ix *lineIndex) commonAt(line int) string {
	paths := ix.byLine[line]
	if len(paths) == 0 {
		return ""
	}
	common := paths[0]
	for _, p := range paths[1:] {
		common = commonPath(common, p)
	}
	return common
}

// commonPath returns the longest path that is a or b or an ancestor of both.
func commonPath(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	for n > 0 && !(pathBoundary(a, n) && pathBoundary(b, n)) {
		n--
	}
	return a[:n]
}

// pathBoundary reports whether a path segment of p ends at byte n.
func pathBoundary(p string, n int) bool {
	return n == len(p) || p[n] == '.' || p[n] == '['
}
