// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

const day = 24 * time.Hour

// Duration is a time.Duration written in config files either as a Go
// duration ("1s", "15m", "1h30m") or as a whole number of days ("400d").
// It marshals back to the shortest of those forms.
type Duration time.Duration

// ParseDuration parses a Go duration or a whole number of days with the
// suffix "d" (like "400d"). Days cannot be combined with other units.
func ParseDuration(s string) (Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days > int64(time.Duration(1<<63-1)/day) {
			return 0, fmt.Errorf("bad duration %q: out of range", s)
		}
		return Duration(time.Duration(days) * day), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		// time's own message repeats the input; say what is accepted instead.
		return 0, fmt.Errorf("bad duration %q (want a number and a unit, like 90s, 15m, 1h30m or 400d)", s)
	}
	return Duration(d), nil
}

// String formats d as ParseDuration reads it: whole days as "400d",
// everything else as a Go duration without trailing zero units ("15m", not
// "15m0s").
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	s := td.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalText implements [encoding.TextMarshaler]; YAML and JSON use it.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseDuration].
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML implements [yaml.Unmarshaler]. Unlike UnmarshalText it
// reports a bad value as a [yaml.TypeError] naming the line, so decoding
// goes on and every bad value in a file is reported at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf("line %d: want a duration like 15m or 400d", n.Line),
		}}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}
