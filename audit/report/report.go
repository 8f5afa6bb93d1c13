// SPDX-License-Identifier: Apache-2.0

package report

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate-dev/tollgate/audit"
)

// AccessRow summarises one identity's access to one target.
type AccessRow struct {
	Identity string `json:"identity"`
	Method   string `json:"method"`
	Target   string `json:"target"`
	Sessions int    `json:"sessions"`
	// DurationNS is the total length of the sessions that ended.
	DurationNS int64          `json:"duration_ns"`
	Statements int            `json:"statements"`
	Classes    map[string]int `json:"classes"`
	Denied     int            `json:"denied"`
	// Approval requests, decisions and the total wait for a decision.
	ApprovalRequests int      `json:"approval_requests"`
	Approved         int      `json:"approved"`
	Rejected         int      `json:"rejected"`
	SelfApprovals    int      `json:"self_approvals"`
	ApprovalWaitNS   int64    `json:"approval_wait_ns"`
	Approvers        []string `json:"approvers"`
	Masked           int      `json:"masked"`
	Errors           int      `json:"errors"`
}

// Event is a record worth listing on its own (a denial, a
// self-approval, a grant, a policy change).
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Session  string    `json:"session,omitempty"`
	Identity string    `json:"identity,omitempty"`
	Target   string    `json:"target,omitempty"`
	What     string    `json:"what"`
}

// Report is an access summary of a period, with the ISO/IEC 27001:2022
// controls each part is evidence for.
type Report struct {
	Log       string    `json:"log"`
	Since     time.Time `json:"since,omitempty"`
	Until     time.Time `json:"until,omitempty"`
	Records   int       `json:"records"`
	FirstSeq  uint64    `json:"first_seq"`
	LastSeq   uint64    `json:"last_seq"`
	FirstTime time.Time `json:"first_time"`
	LastTime  time.Time `json:"last_time"`
	// Checkpoint is the newest signed checkpoint, if known.
	CheckpointSize uint64    `json:"checkpoint_size,omitempty"`
	CheckpointTime time.Time `json:"checkpoint_time,omitempty"`

	Access  []AccessRow `json:"access"`
	Denials []Event     `json:"denials"`
	// Commands are the SSH requests that run something on a target
	// (exec commands, shells, subsystems), allowed or not, in order.
	Commands      []Event        `json:"commands"`
	SelfApprovals []Event        `json:"self_approvals"`
	Grants        []Event        `json:"grants"`
	PolicyChanges []Event        `json:"policy_changes"`
	Errors        []Event        `json:"errors"`
	Kinds         map[string]int `json:"kinds"`

	DaemonStarts   int   `json:"daemon_starts"`
	DaemonStops    int   `json:"daemon_stops"`
	Heartbeats     int   `json:"heartbeats"`
	Unsynchronised int   `json:"heartbeats_unsynchronised"`
	MaxClockError  int64 `json:"max_clock_error_us"`
}

// Builder accumulates records into a Report.
type Builder struct {
	r        Report
	rows     map[[2]string]*AccessRow
	sessions map[string]*reportSession
	requests map[string]reportRequest
}

type reportSession struct {
	row      *AccessRow
	identity string
}

type reportRequest struct {
	at        time.Time
	requester string
}

// NewBuilder starts a report of the log logID for [since, until).
func NewBuilder(logID string, since, until time.Time) *Builder {
	return &Builder{
		r:        Report{Log: logID, Since: since, Until: until, Kinds: map[string]int{}},
		rows:     map[[2]string]*AccessRow{},
		sessions: map[string]*reportSession{},
		requests: map[string]reportRequest{},
	}
}

// identityName names a record's identity, or its process when it has none.
func identityName(r *audit.Record) (name, method string) {
	if id := r.Identity; id != nil && id.Name != "" {
		return id.Name, id.Method
	}
	if p := r.Process; p != nil {
		return fmt.Sprintf("uid %d (%s)", p.UID, dash(p.Comm)), "process"
	}
	return "unknown", ""
}

// session returns the state of a session, creating it from r if needed.
func (b *Builder) session(r *audit.Record) *reportSession {
	if s, ok := b.sessions[r.Session]; ok {
		return s
	}
	name, method := identityName(r)
	key := [2]string{name, r.Target}
	row := b.rows[key]
	if row == nil {
		row = &AccessRow{Identity: name, Method: method, Target: r.Target, Classes: map[string]int{}}
		b.rows[key] = row
	}
	s := &reportSession{row: row, identity: name}
	b.sessions[r.Session] = s
	return s
}

// Add adds one record (in seq order).
func (b *Builder) Add(r *audit.Record) {
	rep := &b.r
	if rep.Records == 0 {
		rep.FirstSeq, rep.FirstTime = r.Seq, r.Time
		if rep.Log == "" {
			rep.Log = r.Log
		}
	}
	rep.Records++
	rep.LastSeq, rep.LastTime = r.Seq, r.Time
	rep.Kinds[string(r.Kind)]++
	event := func(what string) Event {
		e := Event{Seq: r.Seq, Time: r.Time, Session: r.Session, Target: r.Target, What: what}
		if r.Session != "" {
			s := b.session(r)
			e.Identity, e.Target = s.identity, s.row.Target
		}
		return e
	}
	var row *AccessRow
	if r.Session != "" {
		row = b.session(r).row
	}
	if row != nil {
		if n, err := strconv.Atoi(r.Detail[audit.DetailMasked]); err == nil && n > 0 {
			row.Masked += n
		}
	}
	switch r.Kind {
	case audit.KindAgentStart:
		rep.DaemonStarts++
	case audit.KindAgentStop:
		rep.DaemonStops++
	case audit.KindPolicyLoad:
		what := fmt.Sprintf("policy %s: %s", dash(r.Detail[audit.DetailResult]), dash(r.Detail[audit.DetailHash]))
		if r.Error != "" {
			what += " (" + r.Error + ")"
		}
		rep.PolicyChanges = append(rep.PolicyChanges, event(what))
	case audit.KindHeartbeat:
		rep.Heartbeats++
		if r.Detail[audit.DetailClockSync] != "synchronised" {
			rep.Unsynchronised++
		}
		if e, err := strconv.ParseInt(r.Detail[audit.DetailClockMaxError], 10, 64); err == nil {
			rep.MaxClockError = max(rep.MaxClockError, e)
		}
	case audit.KindError:
		rep.Errors = append(rep.Errors, event(dash(r.Error)))
		if row != nil {
			row.Errors++
		}
	case audit.KindGrant:
		who := r.Identity.Label()
		rep.Grants = append(rep.Grants, Event{Seq: r.Seq, Time: r.Time, Identity: r.Detail[audit.DetailIdentity], Target: r.Detail[audit.DetailTarget],
			What: fmt.Sprintf("allow %s for %s by %s: %s", dash(r.Detail[audit.DetailAllow]), dash(r.Detail[audit.DetailFor]), dash(who), dash(r.Detail[audit.DetailReason]))})
	}
	if row == nil {
		return
	}
	switch r.Kind {
	case audit.KindSessionStart:
		row.Sessions++
	case audit.KindSessionEnd:
		row.DurationNS += r.DurationNS
	case audit.KindChannelRequest:
		// SSH requests with a decision count like statements: the
		// command is what ran (or was refused) on the target.
		if r.Statement == nil || r.Decision == nil {
			break
		}
		row.Statements++
		for _, c := range r.Statement.Classes {
			row.Classes[c]++
		}
		d := r.Decision
		verdict := d.Action
		if d.Rule != "" {
			verdict += " (" + d.Rule + ")"
		}
		rep.Commands = append(rep.Commands, event(fmt.Sprintf("%s: %s", verdict, r.Statement.Text)))
		if d.Action == "deny" {
			row.Denied++
			by := "rule " + d.Rule
			if d.Rule == "" {
				by = "the default deny"
			}
			rep.Denials = append(rep.Denials, event(fmt.Sprintf("denied by %s: %s", by, r.Statement.Text)))
		}
	case audit.KindStatement:
		row.Statements++
		if s := r.Statement; s != nil {
			for _, c := range s.Classes {
				row.Classes[c]++
			}
		}
		if d := r.Decision; d != nil && d.Action == "deny" {
			row.Denied++
			text := ""
			if r.Statement != nil {
				text = r.Statement.Text
			}
			by := "rule " + d.Rule
			if d.Rule == "" {
				by = "the default deny" // no rule allowed it
			}
			rep.Denials = append(rep.Denials, event(fmt.Sprintf("denied by %s: %s", by, text)))
		}
	case audit.KindApprovalRequest:
		row.ApprovalRequests++
		req := b.sessions[r.Session].identity
		if l := r.Identity.Label(); l != "" {
			req = l
		}
		b.requests[r.Detail[audit.DetailApproval]] = reportRequest{at: r.Time, requester: req}
	case audit.KindApprovalDecision:
		approver := r.Identity.Label()
		// A vote that did not end the hold (final=false, when a rule
		// needs several approvers) names an approver; only the final
		// decision counts as approved or rejected and ends the wait.
		final := r.Detail[audit.DetailFinal] != "false"
		if final {
			if d := r.Decision; d != nil && d.Action == "allow" {
				row.Approved++
			} else {
				row.Rejected++
			}
		}
		if approver != "" && !slices.Contains(row.Approvers, approver) {
			row.Approvers = append(row.Approvers, approver)
		}
		req, ok := b.requests[r.Detail[audit.DetailApproval]]
		if !ok {
			break
		}
		if final {
			row.ApprovalWaitNS += int64(r.Time.Sub(req.at))
		}
		// The final record names the approver who completed the
		// decision; every vote before it has its own record.
		if approver != "" && approver == req.requester && r.Decision != nil && r.Decision.Action == "allow" {
			row.SelfApprovals++
			rep.SelfApprovals = append(rep.SelfApprovals, event("approved their own request "+dash(r.Detail[audit.DetailApproval])))
		}
	}
}

// Finish returns the report, rows sorted by identity then target.
func (b *Builder) Finish() *Report {
	rep := b.r
	for _, row := range b.rows {
		rep.Access = append(rep.Access, *row)
	}
	slices.SortFunc(rep.Access, func(x, y AccessRow) int {
		return cmp.Or(cmp.Compare(x.Identity, y.Identity), cmp.Compare(x.Target, y.Target))
	})
	for _, l := range []*[]Event{&rep.Denials, &rep.Commands, &rep.SelfApprovals, &rep.Grants, &rep.PolicyChanges, &rep.Errors} {
		if *l == nil {
			*l = []Event{}
		}
	}
	if rep.Access == nil {
		rep.Access = []AccessRow{}
	}
	return &rep
}

// reportSection is a part of the report and the controls it evidences.
type reportSection struct{ Title, Controls string }

var (
	secAccess    = reportSection{"Access by identity and target", "A.5.15 Access control, A.5.18 Access rights, A.8.2 Privileged access rights, A.8.5 Secure authentication"}
	secApprovals = reportSection{"Approvals and self-approvals", "A.8.2 Privileged access rights, A.5.18 Access rights"}
	secDenials   = reportSection{"Denied statements and errors", "A.8.16 Monitoring activities"}
	secCommands  = reportSection{"SSH commands", "A.8.2 Privileged access rights, A.8.15 Logging"}
	secGrants    = reportSection{"Time-boxed grants", "A.5.18 Access rights, A.8.2 Privileged access rights"}
	secMasking   = reportSection{"Data masking", "A.8.11 Data masking"}
	secPolicy    = reportSection{"Policy changes and daemon restarts", "A.8.15 Logging, A.8.16 Monitoring activities"}
	secClock     = reportSection{"Clock synchronisation", "A.8.17 Clock synchronization"}
	secEvidence  = reportSection{"Evidence and integrity", "A.8.15 Logging, A.5.28 Collection of evidence, A.5.33 Protection of records"}
)

func fmtDuration(ns int64) string { return time.Duration(ns).Round(time.Second).String() }

// WriteText writes the report for people.
func (rep *Report) WriteText(w io.Writer) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	head := func(s reportSection) { p("\n%s  [%s]\n", strings.ToUpper(s.Title), s.Controls) }
	p("tollgate access report for %s\n", rep.Log)
	p("period   %s to %s\n", timeOr(rep.Since, rep.FirstTime), timeOr(rep.Until, rep.LastTime))
	head(secEvidence)
	p("  %d records, seq %d to %d, %s to %s\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.FirstTime.Format(time.RFC3339), rep.LastTime.Format(time.RFC3339))
	if rep.CheckpointSize > 0 {
		p("  newest signed checkpoint: size %d at %s (export and verify a bundle for proof)\n", rep.CheckpointSize, rep.CheckpointTime.Format(time.RFC3339))
	}
	head(secAccess)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  IDENTITY\tAUTH\tTARGET\tSESSIONS\tDURATION\tSTATEMENTS\tCLASSES\tDENIED\tERRORS")
	for _, r := range rep.Access {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%d\n", r.Identity, dash(r.Method), dash(r.Target), r.Sessions,
			fmtDuration(r.DurationNS), r.Statements, classesString(r.Classes), r.Denied, r.Errors)
	}
	tw.Flush()
	head(secApprovals)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  IDENTITY\tTARGET\tREQUESTS\tAPPROVED\tREJECTED\tSELF-APPROVED\tWAIT\tAPPROVERS")
	for _, r := range rep.Access {
		if r.ApprovalRequests+r.Approved+r.Rejected == 0 {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Identity, dash(r.Target), r.ApprovalRequests, r.Approved, r.Rejected,
			r.SelfApprovals, fmtDuration(r.ApprovalWaitNS), dash(strings.Join(r.Approvers, ",")))
	}
	tw.Flush()
	p("  self-approvals: %d (should be 0)\n", len(rep.SelfApprovals))
	events(w, rep.SelfApprovals)
	head(secDenials)
	p("  %d denied statements, %d error records\n", len(rep.Denials), len(rep.Errors))
	events(w, rep.Denials)
	events(w, rep.Errors)
	if len(rep.Commands) > 0 {
		head(secCommands)
		p("  %d requests\n", len(rep.Commands))
		events(w, rep.Commands)
	}
	head(secGrants)
	p("  %d grants\n", len(rep.Grants))
	events(w, rep.Grants)
	head(secMasking)
	total := 0
	for _, r := range rep.Access {
		if r.Masked > 0 {
			p("  %s on %s: %d values masked\n", r.Identity, dash(r.Target), r.Masked)
		}
		total += r.Masked
	}
	p("  %d values masked in total\n", total)
	head(secPolicy)
	p("  %d daemon starts, %d clean stops\n", rep.DaemonStarts, rep.DaemonStops)
	events(w, rep.PolicyChanges)
	head(secClock)
	p("  %d heartbeats, %d with the clock not synchronised, largest maximum error %d µs\n", rep.Heartbeats, rep.Unsynchronised, rep.MaxClockError)
	return nil
}

func events(w io.Writer, es []Event) {
	const limit = 50
	for i, e := range es {
		if i == limit {
			fmt.Fprintf(w, "    … and %d more\n", len(es)-limit)
			return
		}
		fmt.Fprintf(w, "    %s  #%d  %s  %s  %s\n", e.Time.Format(time.RFC3339), e.Seq, dash(e.Identity), dash(e.Target), e.What)
	}
}

func timeOr(t, or time.Time) string {
	if t.IsZero() {
		t = or
	}
	return t.Format(time.RFC3339)
}

func classesString(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return dash(strings.Join(parts, " "))
}

// WriteJSON writes the report as one JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteCSV writes the access rows (one per identity and target) as CSV.
func (rep *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"identity", "auth", "target", "sessions", "duration_s", "statements", "classes", "denied",
		"approval_requests", "approved", "rejected", "self_approvals", "approval_wait_s", "approvers", "masked", "errors"})
	for _, r := range rep.Access {
		cw.Write([]string{r.Identity, r.Method, r.Target, strconv.Itoa(r.Sessions),
			strconv.FormatInt(r.DurationNS/int64(time.Second), 10), strconv.Itoa(r.Statements), classesString(r.Classes),
			strconv.Itoa(r.Denied), strconv.Itoa(r.ApprovalRequests), strconv.Itoa(r.Approved), strconv.Itoa(r.Rejected),
			strconv.Itoa(r.SelfApprovals), strconv.FormatInt(r.ApprovalWaitNS/int64(time.Second), 10),
			strings.Join(r.Approvers, " "), strconv.Itoa(r.Masked), strconv.Itoa(r.Errors)})
	}
	cw.Flush()
	return cw.Error()
}

// bar is one bar of an SVG chart.
type bar struct {
	Label string
	Value int
	Width int // pixels
	Y     int
}

// chart lays out a horizontal bar chart.
type chart struct {
	ID     string
	Title  string
	Bars   []bar
	Height int
}

func newChart(id, title string, labels []string, values []int) chart {
	c := chart{ID: id, Title: title}
	top := 1
	for _, v := range values {
		top = max(top, v)
	}
	for i, l := range labels {
		c.Bars = append(c.Bars, bar{Label: l, Value: values[i], Width: 1 + values[i]*400/top, Y: 10 + i*24})
	}
	c.Height = 20 + len(labels)*24
	return c
}

// WriteHTML writes the report as one self-contained HTML page (no
// scripts, no external resources) with bar charts in inline SVG.
func (rep *Report) WriteHTML(w io.Writer) error {
	var labels []string
	var sessions, statements []int
	for _, r := range rep.Access {
		labels = append(labels, r.Identity+" → "+dash(r.Target))
		sessions = append(sessions, r.Sessions)
		statements = append(statements, r.Statements)
	}
	classes := map[string]int{}
	for _, r := range rep.Access {
		for k, v := range r.Classes {
			classes[k] += v
		}
	}
	var cl []string
	var cv []int
	for _, k := range slices.Sorted(maps.Keys(classes)) {
		cl = append(cl, k)
		cv = append(cv, classes[k])
	}
	masked := 0
	for _, r := range rep.Access {
		masked += r.Masked
	}
	data := struct {
		R        *Report
		Sections map[string]reportSection
		Charts   []chart
		Masked   int
	}{
		R: rep,
		Sections: map[string]reportSection{"evidence": secEvidence, "access": secAccess, "approvals": secApprovals, "denials": secDenials,
			"commands": secCommands, "grants": secGrants, "masking": secMasking, "policy": secPolicy, "clock": secClock},
		Charts: []chart{
			newChart("chart-sessions", "Sessions by identity and target", labels, sessions),
			newChart("chart-statements", "Statements by identity and target", labels, statements),
			newChart("chart-classes", "Statements by class", cl, cv),
		},
		Masked: masked,
	}
	return reportHTML.Execute(w, data)
}

var reportHTML = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur":     fmtDuration,
	"time":    func(t time.Time) string { return t.Format(time.RFC3339) },
	"classes": classesString,
	"join":    strings.Join,
	"dash":    dash,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>tollgate access report: {{.R.Log}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}
.controls{color:#555;font-size:.9em;font-weight:normal}
.bad{color:#b00;font-weight:bold}
svg text{font-size:12px}
</style></head><body>
<h1>tollgate access report</h1>
<p>Log <code>{{.R.Log}}</code>, records {{.R.FirstSeq}} to {{.R.LastSeq}} ({{.R.Records}}), {{time .R.FirstTime}} to {{time .R.LastTime}}.</p>
{{with index .Sections "evidence"}}<h2 id="evidence">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{.R.Records}} records.{{if .R.CheckpointSize}} Newest signed checkpoint: size {{.R.CheckpointSize}} at {{time .R.CheckpointTime}}. Export and verify a bundle (<code>tollgate audit export</code>, <code>tollgate audit verify</code>) for cryptographic proof.{{end}}</p>
{{with index .Sections "access"}}<h2 id="access">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<table id="access-table"><tr><th>Identity</th><th>Auth</th><th>Target</th><th>Sessions</th><th>Duration</th><th>Statements</th><th>Classes</th><th>Denied</th><th>Errors</th></tr>
{{range .R.Access}}<tr><td>{{.Identity}}</td><td>{{dash .Method}}</td><td>{{dash .Target}}</td><td>{{.Sessions}}</td><td>{{dur .DurationNS}}</td><td>{{.Statements}}</td><td>{{classes .Classes}}</td><td>{{.Denied}}</td><td>{{.Errors}}</td></tr>
{{end}}</table>
{{range .Charts}}<figure id="{{.ID}}"><figcaption>{{.Title}}</figcaption>
<svg xmlns="http://www.w3.org/2000/svg" width="720" height="{{.Height}}" role="img" aria-label="{{.Title}}">
{{range .Bars}}<text x="0" y="{{.Y}}" dy="12">{{.Label}}</text><rect x="250" y="{{.Y}}" width="{{.Width}}" height="16" fill="#4a7bb7"></rect><text x="{{.Width}}" dx="256" y="{{.Y}}" dy="12">{{.Value}}</text>
{{end}}</svg></figure>
{{end}}
{{with index .Sections "approvals"}}<h2 id="approvals">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<table id="approvals-table"><tr><th>Identity</th><th>Target</th><th>Requests</th><th>Approved</th><th>Rejected</th><th>Self-approved</th><th>Wait</th><th>Approvers</th></tr>
{{range .R.Access}}{{if or .ApprovalRequests .Approved .Rejected}}<tr><td>{{.Identity}}</td><td>{{dash .Target}}</td><td>{{.ApprovalRequests}}</td><td>{{.Approved}}</td><td>{{.Rejected}}</td><td{{if .SelfApprovals}} class="bad"{{end}}>{{.SelfApprovals}}</td><td>{{dur .ApprovalWaitNS}}</td><td>{{join .Approvers ", "}}</td></tr>
{{end}}{{end}}</table>
<p>Self-approvals: <span{{if .R.SelfApprovals}} class="bad"{{end}}>{{len .R.SelfApprovals}}</span> (should be 0).</p>
{{template "events" .R.SelfApprovals}}
{{with index .Sections "denials"}}<h2 id="denials">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{len .R.Denials}} denied statements, {{len .R.Errors}} error records.</p>
{{template "events" .R.Denials}}{{template "events" .R.Errors}}
{{if .R.Commands}}{{with index .Sections "commands"}}<h2 id="commands">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{len .R.Commands}} SSH requests that run something on a target, with their decisions.</p>
{{template "events" .R.Commands}}{{end}}
{{with index .Sections "grants"}}<h2 id="grants">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
{{template "events" .R.Grants}}
{{with index .Sections "masking"}}<h2 id="masking">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{.Masked}} values masked.</p>
{{with index .Sections "policy"}}<h2 id="policy">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{.R.DaemonStarts}} daemon starts, {{.R.DaemonStops}} clean stops.</p>
{{template "events" .R.PolicyChanges}}
{{with index .Sections "clock"}}<h2 id="clock">{{.Title}} <span class="controls">{{.Controls}}</span></h2>{{end}}
<p>{{.R.Heartbeats}} heartbeats, <span{{if .R.Unsynchronised}} class="bad"{{end}}>{{.R.Unsynchronised}}</span> with the clock not synchronised; largest maximum error {{.R.MaxClockError}} µs.</p>
</body></html>
{{define "events"}}{{if .}}<table><tr><th>Time</th><th>Seq</th><th>Identity</th><th>Target</th><th>What</th></tr>
{{range .}}<tr><td>{{time .Time}}</td><td>{{.Seq}}</td><td>{{dash .Identity}}</td><td>{{dash .Target}}</td><td>{{.What}}</td></tr>
{{end}}</table>{{end}}{{end}}`))
