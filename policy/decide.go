// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
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
	// Grants are the just-in-time grants in force for the session's
	// identities on Target (Grants.Active).
	Grants []Grant
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
}

// Engine decides statements by a config's rules. It is immutable; build a
// new one on reload.
type Engine struct {
	rules []Rule
}

// NewEngine returns an engine over cfg's rules. cfg must have been
// validated.
func NewEngine(cfg *Config) *Engine {
	return &Engine{rules: slices.Clone(cfg.Rules)}
}

// Decide judges one statement. Rules are order-independent: a matching
// deny beats a matching review, which beats allow. A deny or review rule
// matches when the statement has any of its classes and touches any of its
// tables; an allow (or mask) rule covers a class only if it also covers
// every table, and the statement is allowed only when each of its classes is
// covered by some matching allow rule. Anything not allowed is denied:
// default deny, and an unknown or unparseable statement is allowed only by a
// rule that names the class unknown.
func (e *Engine) Decide(req Request) Decision {
	classes := req.Classes
	if len(classes) == 0 {
		classes = []Class{ClassUnknown}
	}
	var review *Rule
	for i := range e.rules {
		r := &e.rules[i]
		if !r.When.matchesSubject(req) {
			continue
		}
		switch r.Action {
		case ActionDeny:
			if r.When.anyClass(classes) && r.When.anyTable(req.Tables) {
				return Decision{Action: ActionDeny, Rule: r.ID, Reason: denyReason(r)}
			}
		case ActionReview:
			if review == nil && r.When.anyClass(classes) && r.When.anyTable(req.Tables) {
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
		covered := false
		for i := range e.rules {
			r := &e.rules[i]
			if r.Action != ActionAllow && r.Action != ActionMask {
				continue
			}
			if !r.When.matchesSubject(req) || !r.When.coversClass(c) || !r.When.allTables(req.Tables) {
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
		// unknown: an unparseable statement needs an explicit rule.
		return sc != ClassUnknown
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
