// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Request is one statement to judge: who runs it, where, and what it does.
// A multi-statement string is judged one statement at a time by the
// caller; one denial denies the whole string.
type Request struct {
	// Identities are the names of every configured identity the session
	// matched (process attributes and/or token claims).
	Identities []string
	// Target is the target's name.
	Target string
	// Classes are the statement's classes; empty means unknown.
	Classes []Class
	// Tables are the tables the statement touches, as schema.table or
	// table.
	Tables []string
	// Command is the words of an SSH exec command (SplitCommand); nil for
	// other requests and for a command with shell syntax, which rules
	// with commands never match.
	Command []string
	// Forward is the destination of an SSH port forward, host:port.
	Forward string
	// Grants are the just-in-time grants in force for the session's
	// identities on Target (Grants.Active).
	Grants []Grant
	// Time is when the statement runs, for rules with time windows; zero
	// means now.
	Time time.Time
}

// Decision is the verdict on a Request.
type Decision struct {
	// Action is allow, deny or review. A mask rule that matched turns an
	// allow into ActionMask: forward, and mask the results.
	Action Action
	// Rule is the id of the deciding rule; empty for the default deny.
	Rule string
	// Reason explains a deny for the client and the log.
	Reason string
	// Approvers are the deciding review rule's approvers.
	Approvers *Approvers
	// ValidUntil, when not zero, is when a rule's time window next opens
	// or closes: a cached decision must be made again from then on. It is
	// zero when no rule has a time window.
	ValidUntil time.Time
}

// Engine decides statements by a config's rules. It is immutable; build a
// new one on reload.
type Engine struct {
	rules []Rule
	// windows are the compiled time windows of each rule, by index.
	windows [][]window
	timed   bool // some rule has a time window
}

// NewEngine returns an engine over cfg's rules. cfg must have been
// validated: a malformed time window (which validation reports) makes its
// rule never apply.
func NewEngine(cfg *Config) *Engine {
	e := &Engine{rules: slices.Clone(cfg.Rules), windows: make([][]window, len(cfg.Rules))}
	for i, r := range e.rules {
		for _, w := range r.When.Time {
			c, err := w.compile()
			if err != nil {
				c = window{loc: time.UTC} // no day: never open
			}
			e.windows[i] = append(e.windows[i], c)
			e.timed = true
		}
	}
	return e
}

// applies reports whether rule i's identity, target and time conditions
// hold for req at t.
func (e *Engine) applies(i int, req Request, t time.Time) bool {
	return e.rules[i].When.matchesSubject(req) && inWindows(e.windows[i], t)
}

// validUntil is when a window of any rule next opens or closes after t.
func (e *Engine) validUntil(t time.Time) time.Time {
	var best time.Time
	for _, ws := range e.windows {
		for i := range ws {
			if n := ws[i].next(t); !n.IsZero() && (best.IsZero() || n.Before(best)) {
				best = n
			}
		}
	}
	return best
}

// Decide judges one statement. Rules are order-independent: a matching
// deny beats a matching review, which beats allow. A deny or review rule
// matches when the statement has any of its classes and touches any of its
// tables; an allow (or mask) rule covers a class only if it also covers
// every table, and the statement is allowed only when each of its classes is
// covered by some matching allow rule. Anything not allowed is denied:
// default deny, and an unknown or unparseable statement is allowed only by a
// rule that names the class unknown (SSH forwarding classes likewise). A
// rule with commands or forwards matches only SSH requests whose command or
// destination it names. An empty statement (class empty alone)
// is the exception: it has no effect, so only rules that name the class
// empty judge it, and it is allowed when none of them matches.
func (e *Engine) Decide(req Request) Decision {
	t := req.Time
	if t.IsZero() {
		t = time.Now()
	}
	d := e.decide(req, t)
	if e.timed {
		d.ValidUntil = e.validUntil(t)
	}
	return d
}

func (e *Engine) decide(req Request, t time.Time) Decision {
	classes := req.Classes
	if len(classes) == 0 {
		classes = []Class{ClassUnknown}
	}
	if len(classes) == 1 && classes[0] == ClassEmpty {
		return e.decideEmpty(req, t)
	}
	var review *Rule
	for i := range e.rules {
		r := &e.rules[i]
		if !e.applies(i, req, t) {
			continue
		}
		switch r.Action {
		case ActionDeny:
			if r.When.anyClass(classes) && r.When.anyTable(req.Tables) && r.When.anyCommand(req) {
				return Decision{Action: ActionDeny, Rule: r.ID, Reason: denyReason(r)}
			}
		case ActionReview:
			if review == nil && r.When.anyClass(classes) && r.When.anyTable(req.Tables) && r.When.anyCommand(req) {
				review = r
			}
		}
	}
	// A grant is an approver's pre-approval: it covers what it names even
	// where a review rule would hold it, never what a deny rule denies.
	if g := grantCovering(req.Grants, classes); g != "" {
		return Decision{Action: ActionAllow, Rule: g}
	}
	if review != nil {
		return Decision{Action: ActionReview, Rule: review.ID, Reason: review.Reason, Approvers: &review.Approvers}
	}

	// Every class must be covered by an allow or mask rule.
	var deciding string
	masked := false
	for _, c := range classes {
		if c == ClassCopy && (slices.Contains(classes, ClassCopyIn) || slices.Contains(classes, ClassCopyOut)) {
			// copy names both directions for rules; a COPY is covered
			// by a rule for its own direction.
			continue
		}
		covered := false
		for i := range e.rules {
			r := &e.rules[i]
			if r.Action != ActionAllow && r.Action != ActionMask {
				continue
			}
			if !e.applies(i, req, t) || !r.When.coversClass(c) || !r.When.allTables(req.Tables) || !r.When.anyCommand(req) {
				continue
			}
			covered = true
			if deciding == "" {
				deciding = r.ID
			}
			if r.Action == ActionMask {
				masked = true
			}
		}
		if !covered {
			return Decision{Action: ActionDeny, Reason: fmt.Sprintf("no rule allows %s here (default deny)", c)}
		}
	}
	if masked {
		return Decision{Action: ActionMask, Rule: deciding}
	}
	return Decision{Action: ActionAllow, Rule: deciding}
}

// decideEmpty judges an empty statement: by the rules that name the class
// empty (deny beats review beats allow), and allowed when none matches,
// since it has no effect and clients send it as a health check.
func (e *Engine) decideEmpty(req Request, t time.Time) Decision {
	var review, allow *Rule
	for i := range e.rules {
		r := &e.rules[i]
		if !slices.Contains(r.When.Classes, ClassEmpty) || !e.applies(i, req, t) {
			continue
		}
		switch r.Action {
		case ActionDeny:
			return Decision{Action: ActionDeny, Rule: r.ID, Reason: denyReason(r)}
		case ActionReview:
			if review == nil {
				review = r
			}
		default:
			if allow == nil {
				allow = r
			}
		}
	}
	switch {
	case review != nil:
		if g := grantCovering(req.Grants, []Class{ClassEmpty}); g != "" {
			return Decision{Action: ActionAllow, Rule: g}
		}
		return Decision{Action: ActionReview, Rule: review.ID, Reason: review.Reason, Approvers: &review.Approvers}
	case allow != nil:
		return Decision{Action: ActionAllow, Rule: allow.ID}
	}
	return Decision{Action: ActionAllow, Reason: "empty statement: no effect"}
}

// grantCovering returns "grant:<id>" of a grant covering every class, or "".
func grantCovering(grants []Grant, classes []Class) string {
	for _, g := range grants {
		all := true
		for _, c := range classes {
			if !slices.ContainsFunc(g.Classes, func(gc Class) bool { return classMatches(gc, c) }) {
				all = false
				break
			}
		}
		if all {
			return "grant:" + g.ID
		}
	}
	return ""
}

func denyReason(r *Rule) string {
	if r.Reason != "" {
		return r.Reason
	}
	return "denied by rule " + r.ID
}

// matchesSubject reports whether the identity and target conditions hold.
func (c *Conditions) matchesSubject(req Request) bool {
	if len(c.Identities) > 0 && !slices.ContainsFunc(c.Identities, func(n string) bool { return slices.Contains(req.Identities, n) }) {
		return false
	}
	if len(c.Targets) > 0 && !slices.Contains(c.Targets, req.Target) {
		return false
	}
	return true
}

// classMatches reports whether a rule class names a statement class; copy
// names both directions, and update/delete include their WHERE-less forms.
func classMatches(rule, stmt Class) bool {
	switch {
	case rule == stmt:
		return true
	case rule == ClassCopy:
		return stmt == ClassCopyIn || stmt == ClassCopyOut
	}
	return false
}

func (c *Conditions) anyClass(classes []Class) bool {
	if len(c.Classes) == 0 {
		return true
	}
	for _, rc := range c.Classes {
		for _, sc := range classes {
			if classMatches(rc, sc) {
				return true
			}
		}
	}
	return false
}

func (c *Conditions) coversClass(sc Class) bool {
	if len(c.Classes) == 0 {
		// A rule without classes allows everything except what is
		// unknown or forwards past the target: an unparseable
		// statement, port, agent and X11 forwarding need a rule that
		// names them.
		return !explicitOnly(sc)
	}
	for _, rc := range c.Classes {
		if classMatches(rc, sc) {
			return true
		}
	}
	return false
}

func (c *Conditions) anyTable(tables []string) bool {
	if len(c.Tables) == 0 {
		return true
	}
	for _, t := range tables {
		if c.tableMatches(t) {
			return true
		}
	}
	return false
}

func (c *Conditions) allTables(tables []string) bool {
	if len(c.Tables) == 0 {
		return true
	}
	for _, t := range tables {
		if !c.tableMatches(t) {
			return false
		}
	}
	return true
}

// tableMatches compares a table with the rule's patterns: `orders` matches
// that table in any schema, `public.orders` only in public, and `*` globs
// within a part (`audit.*`, `*.secrets`).
func (c *Conditions) tableMatches(table string) bool {
	table = strings.ToLower(table)
	schema, name, qualified := strings.Cut(table, ".")
	if !qualified {
		name, schema = schema, ""
	}
	for _, p := range c.Tables {
		p = strings.ToLower(p)
		ps, pn, pq := strings.Cut(p, ".")
		if !pq {
			if ok, _ := path.Match(ps, name); ok {
				return true
			}
			continue
		}
		if schema == "" {
			schema = "public"
		}
		okS, _ := path.Match(ps, schema)
		okN, _ := path.Match(pn, name)
		if okS && okN {
			return true
		}
	}
	return false
}
