// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strings"
)

// parseInterspersed parses arguments where flags may follow positional
// arguments ("verify FILE --key K"), which urfave/cli v2 does not do: it
// stops at the first argument. values maps each flag name (and alias) to
// where its value goes; every flag takes a value, as "--name v" or
// "--name=v", with one or two dashes. It returns the positional arguments
// and whether help was asked for.
func parseInterspersed(args []string, values map[string]*string) (pos []string, help bool, err error) {
	return parseInterspersedLists(args, values, nil)
}

// parseInterspersedLists is parseInterspersed with repeatable flags: each
// occurrence of a flag in lists appends its value.
func parseInterspersedLists(args []string, values map[string]*string, lists map[string]*[]string) (pos []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(pos, args[i+1:]...), false, nil
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			pos = append(pos, arg)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if name == "h" || name == "help" {
			return pos, true, nil
		}
		dst, ok := values[name]
		list, isList := lists[name]
		if !ok && !isList {
			return nil, false, fmt.Errorf("unknown flag %s", arg)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, false, fmt.Errorf("flag %s needs a value", arg)
			}
			i++
			val = args[i]
		}
		if isList {
			*list = append(*list, val)
			continue
		}
		*dst = val
	}
	return pos, false, nil
}
