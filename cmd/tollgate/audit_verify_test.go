// SPDX-License-Identifier: Apache-2.0

package main

import (
	"reflect"
	"testing"
)

func TestParseVerifyArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want verifyArgs
		ok   bool
	}{
		{[]string{"b.tar", "--key", "k"}, verifyArgs{bundle: "b.tar", key: "k", output: "text"}, true},
		{[]string{"--key=k", "b.tar", "-o", "json", "--trusted-checkpoint", "t"}, verifyArgs{bundle: "b.tar", key: "k", output: "json", trusted: "t"}, true},
		{[]string{"-key", "k", "--", "-b.tar"}, verifyArgs{bundle: "-b.tar", key: "k", output: "text"}, true},
		{[]string{"--witness-key", "w1", "b.tar", "--key", "k", "--witness-key=w2"},
			verifyArgs{bundle: "b.tar", key: "k", output: "text", witnesses: []string{"w1", "w2"}}, true},
		{[]string{"b.tar", "--key", "k", "--witness-key"}, verifyArgs{}, false},
		{[]string{"b.tar"}, verifyArgs{}, false},
		{[]string{"--key", "k"}, verifyArgs{}, false},
		{[]string{"a", "b", "--key", "k"}, verifyArgs{}, false},
		{[]string{"a", "--key"}, verifyArgs{}, false},
		{[]string{"a", "--key", "k", "--nope"}, verifyArgs{}, false},
		{[]string{"a", "--key", "k", "-o", "yaml"}, verifyArgs{}, false},
	} {
		got, _, err := parseVerifyArgs(tc.args)
		if (err == nil) != tc.ok || tc.ok && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseVerifyArgs(%q) = %+v, %v", tc.args, got, err)
		}
	}
}
