// SPDX-License-Identifier: Apache-2.0

package report

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/audit"
)

// ErrNoSession is returned by Replay and WriteCast when there are no
// records to show.
var ErrNoSession = errors.New("no records of the session")

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Speed scales the pauses between records: 1 is as it happened, 2
	// twice as fast; 0 or less prints everything at once.
	Speed float64
	// IdleLimit caps every pause (0: no cap).
	IdleLimit time.Duration
	// Sleep waits between lines; nil uses a timer that ctx interrupts.
	Sleep func(ctx context.Context, d time.Duration) error
}

// timedLine is one line of a session's timeline.
type timedLine struct {
	at   time.Duration // since the first record
	text string
	raw  bool // written as it is (terminal bytes), without an offset
}

// sortRecords orders records by time, then seq (records of one session
// are written in order, but a session end recorded late keeps its time).
func sortRecords(recs []*audit.Record) []*audit.Record {
	s := slices.Clone(recs)
	slices.SortStableFunc(s, func(a, b *audit.Record) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return s
}

// timeline renders a session's records: header lines, then one line per
// record with its offset from the first.
func timeline(recs []*audit.Record) (header []string, lines []timedLine) {
	recs = sortRecords(recs)
	first := recs[0]
	var start *audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindSessionStart {
			start = r
			break
		}
	}
	if start == nil {
		start = first
	}
	header = append(header, fmt.Sprintf("session  %s  (log %s)", first.Session, first.Log))
	if start.Target != "" || start.Dst != "" {
		header = append(header, fmt.Sprintf("target   %s  dst %s  client %s", dash(start.Target), dash(start.Dst), dash(start.Client)))
	}
	if p := start.Process; p != nil {
		header = append(header, fmt.Sprintf("process  pid %d  uid %d  gid %d  comm %s  exe %s  cgroup %s", p.Pid, p.UID, p.GID, dash(p.Comm), dash(p.Exe), dash(p.Cgroup)))
	}
	if id := start.Identity; id != nil {
		header = append(header, "identity "+identityString(id))
	}
	header = append(header, "started  "+first.Time.UTC().Format("2006-01-02 15:04:05.000 MST"))

	requests := map[string]time.Time{} // approval request time by id ("" for the last)
	for _, r := range recs {
		text := replayLine(r, requests)
		lines = append(lines, timedLine{at: r.Time.Sub(first.Time), text: text})
	}
	return header, lines
}

// identityString renders an identity on one line.
func identityString(id *audit.Identity) string {
	s := dash(id.Name)
	var parts []string
	for _, p := range []string{id.Method, id.Issuer, id.Subject} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(id.Groups) > 0 {
		parts = append(parts, "groups "+strings.Join(id.Groups, ","))
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, " ") + ")"
	}
	return s
}

// replayLine renders one record of a session.
func replayLine(r *audit.Record, requests map[string]time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%-7d %-17s", r.Seq, r.Kind)
	used := map[string]bool{}
	switch r.Kind {
	case audit.KindSessionStart:
		fmt.Fprintf(&b, " %s → %s", dash(r.Client), dash(r.Dst))
	case audit.KindStatement:
		if s := r.Statement; s != nil {
			fmt.Fprintf(&b, " %s", s.Text)
			if len(s.Classes) > 0 {
				fmt.Fprintf(&b, "  [%s]", strings.Join(s.Classes, ","))
			}
		}
	case audit.KindApprovalRequest:
		requests[r.Detail[audit.DetailApproval]] = r.Time
		requests[""] = r.Time
		used["approval"] = true
		fmt.Fprintf(&b, " held for approval %s", dash(r.Detail[audit.DetailApproval]))
	case audit.KindApprovalDecision:
		verdict := "DECIDED"
		if d := r.Decision; d != nil {
			switch d.Action {
			case "allow":
				verdict = "APPROVED"
			case "deny":
				verdict = "DENIED"
			}
		}
		if r.Detail[audit.DetailFinal] == "false" {
			// One approver's vote; the hold goes on.
			verdict = "vote to approve"
			if d := r.Decision; d == nil || d.Action != "allow" {
				verdict = "vote to deny"
			}
		}
		fmt.Fprintf(&b, " %s", verdict)
		if r.Identity != nil {
			fmt.Fprintf(&b, " by %s", identityString(r.Identity))
		}
		id := r.Detail[audit.DetailApproval]
		used["approval"] = true
		t, ok := requests[id]
		if !ok {
			t, ok = requests[""]
		}
		if ok {
			fmt.Fprintf(&b, " after %s", r.Time.Sub(t).Round(time.Millisecond))
		}
	case audit.KindSessionEnd:
		fmt.Fprintf(&b, " %s", dash(r.CloseReason))
		if r.Bytes != nil {
			fmt.Fprintf(&b, ", up %d B, down %d B", r.Bytes.Up, r.Bytes.Down)
		}
		if r.DurationNS != 0 {
			fmt.Fprintf(&b, ", %s", time.Duration(r.DurationNS).Round(time.Millisecond))
		}
	}
	if d := r.Decision; d != nil && r.Kind != audit.KindApprovalDecision {
		action := d.Action
		if action == "deny" {
			action = "DENIED"
		}
		fmt.Fprintf(&b, "  → %s", dash(action))
		if d.Rule != "" {
			fmt.Fprintf(&b, " (rule %s)", d.Rule)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "  error: %s", r.Error)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Detail)) {
		if !used[k] {
			fmt.Fprintf(&b, "  %s=%s", k, r.Detail[k])
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Replay writes a session's records to w as a timeline: a header (who, from
// where, to what), then one line per record, in time order, each prefixed
// with its offset, paced as it happened (opts.Speed).
func Replay(ctx context.Context, w io.Writer, recs []*audit.Record, opts ReplayOptions) error {
	if len(recs) == 0 {
		return ErrNoSession
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	header, lines := timeline(recs)
	for _, h := range header {
		if _, err := fmt.Fprintln(w, h); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if isTerminal(recs) {
		lines = terminalLines(recs)
	}
	var prev time.Duration
	for _, l := range lines {
		if opts.Speed > 0 && l.at > prev {
			d := time.Duration(float64(l.at-prev) / opts.Speed)
			if opts.IdleLimit > 0 {
				d = min(d, opts.IdleLimit)
			}
			if err := sleep(ctx, d); err != nil {
				return err
			}
		}
		prev = max(prev, l.at)
		text := fmt.Sprintf("%+10.3fs  %s\n", l.at.Seconds(), l.text)
		if l.raw {
			text = l.text
		}
		if _, err := io.WriteString(w, text); err != nil {
			return err
		}
	}
	return nil
}

// isTerminal reports whether a session recorded channel bytes (an SSH
// session): it replays as the terminal showed it.
func isTerminal(recs []*audit.Record) bool {
	return slices.ContainsFunc(recs, func(r *audit.Record) bool { return r.Kind == audit.KindChannelData })
}

// terminalLines is the replay of an SSH session: the bytes the client's
// terminal received (stdout and stderr), at their pace, and between them,
// each on a line of its own, the requests with their decisions, approvals
// and ends. Input is not shown: the terminal's echo shows what was typed,
// and a password typed with echo off stays unseen, as it was.
func terminalLines(recs []*audit.Record) []timedLine {
	recs = sortRecords(recs)
	first := recs[0]
	requests := map[string]time.Time{}
	var out []timedLine
	midLine := false
	for _, r := range recs {
		at := r.Time.Sub(first.Time)
		switch {
		case r.Kind == audit.KindChannelData:
			if s := r.Detail[audit.DetailStream]; s != "out" && s != "err" {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(r.Detail[audit.DetailData])
			if err != nil || len(b) == 0 {
				continue
			}
			out = append(out, timedLine{at: at, text: string(b), raw: true})
			midLine = b[len(b)-1] != '\n'
		case r.Kind == audit.KindChannelRequest && r.Statement == nil && r.Decision == nil:
			// pty-req, env, window-change: the terminal's plumbing.
		case r.Kind == audit.KindSFTP:
			// Listed by the timeline; a terminal shows no file operations.
		default:
			text := fmt.Sprintf("[tollgate %+.3fs] %s\r\n", at.Seconds(), replayLine(r, requests))
			if midLine {
				text = "\r\n" + text
				midLine = false
			}
			out = append(out, timedLine{at: at, text: text, raw: true})
		}
	}
	return out
}

// WriteCast writes a session's timeline as an asciicast v2 recording
// (https://docs.asciinema.org/manual/asciicast/v2/): a header line, then
// one output event per line at the offset it happened, so that any
// asciinema player replays it.
func WriteCast(w io.Writer, recs []*audit.Record) error {
	if len(recs) == 0 {
		return ErrNoSession
	}
	if isTerminal(recs) {
		return writeTerminalCast(w, recs)
	}
	header, lines := timeline(recs)
	first := sortRecords(recs)[0]
	width := 80
	for _, l := range lines {
		width = max(width, min(len(l.text)+14, 240))
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{
		"version": 2, "width": width, "height": 40,
		"timestamp": first.Time.Unix(),
		"title":     "tollgate session " + first.Session,
	}); err != nil {
		return err
	}
	if err := enc.Encode([]any{0.0, "o", strings.Join(header, "\r\n") + "\r\n\r\n"}); err != nil {
		return err
	}
	for _, l := range lines {
		if err := enc.Encode([]any{l.at.Seconds(), "o", fmt.Sprintf("%+10.3fs  %s\r\n", l.at.Seconds(), l.text)}); err != nil {
			return err
		}
	}
	return nil
}

// writeTerminalCast writes an SSH session as the terminal saw it: the size
// from its pty request, output ("o") and input ("i") events at their
// offsets, and resizes ("r") from window changes.
func writeTerminalCast(w io.Writer, recs []*audit.Record) error {
	recs = sortRecords(recs)
	first := recs[0]
	width, height := 80, 24
	for _, r := range recs {
		if r.Kind == audit.KindChannelRequest && r.Detail[audit.DetailRequest] == "pty-req" {
			if c, err := strconv.Atoi(r.Detail[audit.DetailCols]); err == nil && c > 0 {
				width = c
			}
			if h, err := strconv.Atoi(r.Detail[audit.DetailRows]); err == nil && h > 0 {
				height = h
			}
			break
		}
	}
	title := "tollgate session " + first.Session
	for _, r := range recs {
		if r.Kind == audit.KindSessionStart {
			who := "unidentified"
			if r.Identity != nil && r.Identity.Name != "" {
				who = r.Identity.Name
			}
			title += ": " + who + " on " + dash(r.Target)
			break
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{
		"version": 2, "width": width, "height": height,
		"timestamp": first.Time.Unix(), "title": title,
	}); err != nil {
		return err
	}
	// A chunk may end inside a UTF-8 sequence; its tail waits for the
	// next chunk of the stream, since events are JSON strings.
	carry := map[string][]byte{}
	for _, r := range recs {
		at := r.Time.Sub(first.Time).Seconds()
		var ev []any
		switch {
		case r.Kind == audit.KindChannelData:
			b, err := base64.StdEncoding.DecodeString(r.Detail[audit.DetailData])
			if err != nil {
				continue
			}
			code := "o"
			if r.Detail[audit.DetailStream] == "in" {
				code = "i"
			}
			b = append(carry[code], b...)
			cut := incompleteTail(b)
			carry[code] = slices.Clone(b[cut:])
			if cut == 0 {
				continue
			}
			ev = []any{at, code, string(b[:cut])}
		case r.Kind == audit.KindChannelRequest && r.Detail[audit.DetailRequest] == "window-change":
			ev = []any{at, "r", r.Detail[audit.DetailCols] + "x" + r.Detail[audit.DetailRows]}
		default:
			continue
		}
		if err := enc.Encode(ev); err != nil {
			return err
		}
	}
	return nil
}

// incompleteTail returns where an unfinished UTF-8 sequence at the end of b
// starts, or len(b).
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
