// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"strings"
)

// SSH request classes: what a channel or global request of an SSH session
// does. Rules name them like statement classes.
const (
	// ClassExec is a command run with `ssh host command` (an exec
	// request); rules can match it by program and arguments (commands).
	ClassExec Class = "exec"
	// ClassShell is an interactive shell (a shell request).
	ClassShell Class = "shell"
	// ClassSFTP is the sftp subsystem (sftp, and scp since OpenSSH 9).
	ClassSFTP Class = "sftp"
	// ClassSubsystem is any other subsystem.
	ClassSubsystem Class = "subsystem"
	// ClassForwardLocal is a connection the client forwards through the
	// target (ssh -L, -D, -W: a direct-tcpip channel).
	ClassForwardLocal Class = "forward_local"
	// ClassForwardRemote is a port the client asks the target to listen
	// on (ssh -R: a tcpip-forward request).
	ClassForwardRemote Class = "forward_remote"
	// ClassAgentForward is SSH agent forwarding (ssh -A).
	ClassAgentForward Class = "agent_forward"
	// ClassX11 is X11 forwarding (ssh -X).
	ClassX11 Class = "x11"
)

// explicitOnly reports classes that a rule without classes does not cover:
// what cannot be judged (unknown), and the SSH requests that open a path
// past the target (forwarding of ports, the agent or X11). A rule must name
// them to allow them.
func explicitOnly(c Class) bool {
	switch c {
	case ClassUnknown, ClassForwardLocal, ClassForwardRemote, ClassAgentForward, ClassX11:
		return true
	}
	return false
}

// ErrCompoundCommand means a command line is not one simple command: it
// has shell syntax (a separator, pipe, redirection, substitution or
// expansion) that the remote shell interprets. Command rules never match
// it, so only a rule without commands can allow it.
var ErrCompoundCommand = errors.New("not a simple command: it has shell syntax")

// SplitCommand splits an SSH exec command line into words the way a POSIX
// shell would for a simple command: blanks separate words, single quotes
// keep everything, double quotes keep everything but \ before $ ` " \ and
// newline, and a backslash outside quotes escapes the next character. Any
// unquoted shell syntax that could run something else or change the words
// (; & | < > ( ) $ ` newline, or a comment) gives ErrCompoundCommand, as
// does $ or ` inside double quotes.
func SplitCommand(cmd string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inW   bool
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch c {
		case ' ', '\t':
			if inW {
				words = append(words, cur.String())
				cur.Reset()
				inW = false
			}
		case '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(cmd[i+1 : i+1+j])
			i += j + 1
			inW = true
		case '"':
			i++
			for ; i < len(cmd) && cmd[i] != '"'; i++ {
				switch cmd[i] {
				case '$', '`':
					return nil, ErrCompoundCommand
				case '\\':
					if i+1 < len(cmd) && strings.IndexByte("$`\"\\\n", cmd[i+1]) >= 0 {
						i++
					}
				}
				cur.WriteByte(cmd[i])
			}
			if i >= len(cmd) {
				return nil, errors.New("unterminated double quote")
			}
			inW = true
		case '\\':
			if i+1 >= len(cmd) {
				return nil, errors.New("trailing backslash")
			}
			i++
			if cmd[i] == '\n' {
				return nil, ErrCompoundCommand
			}
			cur.WriteByte(cmd[i])
			inW = true
		case ';', '&', '|', '<', '>', '(', ')', '$', '`', '\n', '\r':
			return nil, ErrCompoundCommand
		case '#':
			if !inW {
				return nil, ErrCompoundCommand
			}
			cur.WriteByte(c)
		case '*', '?', '[', '{', '~':
			// Globs, braces and tildes expand into other words.
			return nil, ErrCompoundCommand
		default:
			cur.WriteByte(c)
			inW = true
		}
	}
	if inW {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}

// MatchCommand reports whether a command's words match a rule's command
// pattern. The pattern is split into words like a command, without the
// shell-syntax check: in a pattern word, * matches any run of characters
// (including /) and ? one character. The first word names the program: a
// pattern without a / matches the program's base name ("systemctl" matches
// "/usr/bin/systemctl"). A last pattern word of ** matches any number of
// remaining arguments, none included; otherwise the number of words must
// be the same.
func MatchCommand(pattern string, words []string) bool {
	pw := strings.Fields(pattern)
	if len(pw) == 0 || len(words) == 0 {
		return false
	}
	prog := words[0]
	if !strings.Contains(pw[0], "/") {
		prog = prog[strings.LastIndexByte(prog, '/')+1:]
	}
	if !globMatch(pw[0], prog) {
		return false
	}
	pw, words = pw[1:], words[1:]
	for i, p := range pw {
		if p == "**" && i == len(pw)-1 {
			return true
		}
		if i >= len(words) || !globMatch(p, words[i]) {
			return false
		}
	}
	return len(pw) == len(words)
}

// MatchForward reports whether a forward destination "host:port" matches
// a host:port glob pattern (* and ? as in MatchCommand, case-insensitive).
func MatchForward(pattern, dst string) bool {
	return globMatch(strings.ToLower(pattern), strings.ToLower(dst))
}

// globMatch matches s against a pattern where * is any run of characters
// and ? is any one byte. It runs in O(len(p)*len(s)) at worst.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// anyCommand reports whether the rule's commands and forwards conditions
// hold for req: a rule with commands matches only an exec request whose
// words one of them matches, a rule with forwards only a forward whose
// destination one of them matches.
func (c *Conditions) anyCommand(req Request) bool {
	if len(c.Commands) > 0 {
		if req.Command == nil {
			return false
		}
		ok := false
		for _, p := range c.Commands {
			if MatchCommand(p, req.Command) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.Forwards) > 0 {
		if req.Forward == "" {
			return false
		}
		for _, p := range c.Forwards {
			if MatchForward(p, req.Forward) {
				return true
			}
		}
		return false
	}
	return true
}
