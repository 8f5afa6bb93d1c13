// SPDX-License-Identifier: Apache-2.0

package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tollgate-dev/tollgate/audit"
	"github.com/tollgate-dev/tollgate/policy"
	"github.com/tollgate-dev/tollgate/policy/sql"
)

// SQLSTATEs of refusals. The server raises them itself (see raiseSQL), so
// the transaction and the pipeline fail exactly as for its own errors.
const (
	codeInsufficientPrivilege = "42501" // denied by policy or by an approver
	codeQueryCanceled         = "57014" // approval timed out or cancelled
)

// maxVerdicts bounds a session's cache of verdicts by exact statement
// text; maxVerdictKey is the longest text cached.
const (
	maxVerdicts   = 1024
	maxVerdictKey = 4 << 10
)

// maxRefusalMessage bounds the message of a refusal, which repeats a rule's
// reason from the config.
const maxRefusalMessage = 1000

// verdict is a decision on a statement and what it was made under: the
// engine (one policy version) and the grants in force then. It stays
// valid while both are unchanged.
type verdict struct {
	policy.Decision
	hash   string         // the policy's hash, recorded with the decision
	engine *policy.Engine // nil when no policy is in force
	grants string         // ids of the grants in force, comma-separated
}

// current reports whether a cached verdict still holds: the same policy
// and grants are in force, and no rule's time window opened or closed
// since it was made.
func (v *verdict) current(eng *policy.Engine, gkey string, now time.Time) bool {
	return v.engine == eng && v.grants == gkey && (v.ValidUntil.IsZero() || now.Before(v.ValidUntil))
}

// noPolicy is the verdict when the server has no policy source: fail
// closed.
var noPolicy = policy.Decision{Action: policy.ActionDeny, Reason: "no policy is in force"}

// judge decides a statement under the policy and grants in force now.
// text, when not empty, is the exact statement text: verdicts are cached by
// it for the session, which is valid because the session's identities and
// target do not change; a new policy or a change in the grants in force
// invalidates the cached verdict. They are cached by the normalised text
// too, since texts that differ only in literals name the same tables in
// the same structure: most simple-protocol statements (pgbench's too).
func (r *relay) judge(text string, info sql.Statement) verdict {
	eng, hash := r.policy()
	grants, gkey := r.activeGrants()
	// The verdict on an SQL EXECUTE depends on the session's PREPAREs, not
	// on its text alone: never cached.
	cacheable := !info.Executes()
	exact := cacheable && text != "" && len(text) <= maxVerdictKey
	norm := cacheable && info.Text != "" && !info.Truncated && !info.Withheld && info.Err == nil && len(info.Text) <= maxVerdictKey
	now := time.Now()
	if exact {
		if v, ok := r.verdicts[text]; ok && v.current(eng, gkey, now) {
			return v
		}
	}
	if norm {
		if v, ok := r.normVerdicts[info.Text]; ok && v.current(eng, gkey, now) {
			return v
		}
	}
	v := r.decide(eng, hash, grants, gkey, info)
	if exact {
		cachePut(r.verdicts, text, v)
	}
	if norm {
		cachePut(r.normVerdicts, info.Text, v)
	}
	return v
}

// cachePut adds a verdict to a bounded cache, emptied when full.
func cachePut(m map[string]verdict, k string, v verdict) {
	if len(m) >= maxVerdicts {
		clear(m)
	}
	m[k] = v
}

// current returns v if it is still valid, else a new verdict on info.
func (r *relay) current(v verdict, info sql.Statement) verdict {
	eng, hash := r.policy()
	grants, gkey := r.activeGrants()
	if v.Action != "" && v.current(eng, gkey, time.Now()) {
		return v
	}
	return r.decide(eng, hash, grants, gkey, info)
}

func (r *relay) policy() (*policy.Engine, string) {
	if r.s.opts.Policy == nil {
		return nil, ""
	}
	return r.s.opts.Policy.Current()
}

// activeGrants returns the grants in force now for the session's
// identities on its target, and their ids as a key.
func (r *relay) activeGrants() ([]policy.Grant, string) {
	if r.s.opts.Grants == nil || len(r.idents) == 0 {
		return nil, ""
	}
	gs := r.s.opts.Grants.Active(r.idents, r.sess.Target.Name, time.Now())
	if len(gs) == 0 {
		return nil, ""
	}
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	return gs, strings.Join(ids, ",")
}

// decide judges info: a single statement by its classes and tables, a
// multi-statement text one statement at a time (each with the class
// multi_statement too, so rules can speak of such texts): one denial
// denies the text, else one review holds it.
func (r *relay) decide(eng *policy.Engine, hash string, grants []policy.Grant, gkey string, info sql.Statement) verdict {
	v := verdict{hash: hash, engine: eng, grants: gkey}
	if eng == nil {
		v.Decision = noPolicy
		return v
	}
	req := policy.Request{Identities: r.idents, Target: r.sess.Target.Name, Grants: grants}
	if len(info.Parts) == 0 {
		req.Classes, req.Tables = info.Classes, info.Tables
		v.Decision = eng.Decide(req)
		return v
	}
	var review *policy.Decision
	var rules []string
	var until time.Time // the earliest time window change of any part
	masked := false
	for _, p := range info.Parts {
		cs := p.Classes
		if len(cs) == 0 {
			cs = unknownClasses
		}
		req.Classes = append(slices.Clip(cs), policy.ClassMultiStatement)
		req.Tables = p.Tables
		d := eng.Decide(req)
		if !d.ValidUntil.IsZero() && (until.IsZero() || d.ValidUntil.Before(until)) {
			until = d.ValidUntil
		}
		switch d.Action {
		case policy.ActionDeny:
			v.Decision = d
			return v
		case policy.ActionReview:
			if review == nil {
				review = &d
			}
		case policy.ActionMask:
			masked = true
		}
		if d.Rule != "" && !slices.Contains(rules, d.Rule) {
			rules = append(rules, d.Rule)
		}
	}
	switch {
	case review != nil:
		v.Decision = *review
	case masked:
		v.Decision = policy.Decision{Action: policy.ActionMask, Rule: strings.Join(rules, ",")}
	default:
		v.Decision = policy.Decision{Action: policy.ActionAllow, Rule: strings.Join(rules, ",")}
	}
	v.ValidUntil = until
	return v
}

// grantIDs returns the ids of the grants a decision's rule names
// ("grant:<id>", comma-separated for a multi-statement text).
func grantIDs(rule string) string {
	var ids []string
	for r := range strings.SplitSeq(rule, ",") {
		if id, ok := strings.CutPrefix(r, "grant:"); ok {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ",")
}

// raiseSQL returns a statement that makes the server raise an ERROR with
// code and msg: a DO block, so that the transaction, the implicit
// transaction of a simple query and an extended-protocol pipeline fail
// exactly as for the server's own errors, with the server's own
// ReadyForQuery status. msg is written as an escape string literal
// (E'...', read the same whatever standard_conforming_strings says) inside a
// dollar-quoted body whose tag does not occur in it.
func raiseSQL(code, msg string) string {
	lit := "E'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(cleanMessage(msg)) + "'"
	tag := "$tollgate$"
	for i := 0; strings.Contains(lit, tag); i++ {
		tag = "$tollgate" + strconv.Itoa(i) + "$"
	}
	return "DO " + tag + " BEGIN RAISE EXCEPTION USING ERRCODE = '" + code + "', MESSAGE = " + lit + "; END " + tag
}

// cleanMessage makes text fit a message: valid UTF-8 without NUL bytes
// (which no statement text may hold), bounded.
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > maxRefusalMessage {
		cut := maxRefusalMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// unparsedReason is the decision's reason for a text tollgate's parser
// rejects: it is never run, whatever the rules say.
const unparsedReason = "tollgate's parser does not accept this statement"

// unparsed is the verdict on a text tollgate's parser rejects.
func (r *relay) unparsed() verdict {
	_, hash := r.policy()
	return verdict{Decision: policy.Decision{Action: policy.ActionDeny, Reason: unparsedReason}, hash: hash}
}

// probe handles a statement text that tollgate's parser rejects (a Query's
// or a Parse's; p is the Parse to send). Such text never runs: the server
// is only asked to parse it, with a Parse message, which executes nothing.
// When the server rejects it too (almost always: a syntax error), the
// client gets the server's own error, with its SQLSTATE, message and
// position, and the server's own transaction state. When the server
// accepts it, the statement is refused with 42501 as a denial is, and what
// the Parse created is dropped: a named statement is closed, the unnamed
// one is replaced by the raise. The statement record is durable before the
// Parse is sent.
func (r *relay) probe(kind expectKind, info sql.Statement, protocol string, detail map[string]string, p *pgproto3.Parse) error {
	if detail == nil {
		detail = map[string]string{}
	}
	detail[audit.DetailProbe] = "parse"
	e, rec, err := r.recordRefused(kind, info, r.unparsed(), protocol, detail)
	if err != nil {
		return err
	}
	f := refusal{code: codeInsufficientPrivilege, message: "tollgate: statement denied: " + unparsedReason}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The server's answer to the Parse is the client's only when it is an
	// error; a ParseComplete is not.
	r.out, _ = p.Encode(r.out)
	r.st.push(&expect{kind: expectParse, injected: true})
	if p.Name != "" {
		r.out, _ = (&pgproto3.Close{ObjectType: 'S', Name: p.Name}).Encode(r.out)
		r.st.push(&expect{kind: expectClose, injected: true})
	}
	if kind == expectParse {
		r.appendRaise(kind, e, f, rec.Seq)
		return nil
	}
	// A Query: a failed Parse skips the raise.
	r.appendSyncedRaise(e, f, rec.Seq)
	return nil
}

// probeName refuses an SQL EXECUTE of a name tollgate knows nothing of
// (kind is the Query, Parse or Execute that carries it) the way the server
// would have: it asks the server to describe the statement of that name,
// which runs nothing. When there is none (almost always: the name was
// never prepared, or deallocated), the client gets the server's own
// error, 26000 "prepared statement does not exist", and its transaction
// state. When there is one (prepared where tollgate could not see it, in
// a function), its description is dropped and the statement is refused
// with 42501 as a denial is. The statement record is durable before the
// Describe is sent.
func (r *relay) probeName(kind expectKind, info sql.Statement, v verdict, protocol string, detail map[string]string, name string) error {
	detail[audit.DetailProbe] = "describe"
	e, rec, err := r.recordRefused(kind, info, v, protocol, detail)
	if err != nil {
		return err
	}
	f := denied(v)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out, _ = (&pgproto3.Describe{ObjectType: 'S', Name: name}).Encode(r.out)
	r.st.push(&expect{kind: expectDescribe, injected: true})
	if kind != expectQuery {
		// A failed Describe makes the server skip the raise, and all
		// else, to the client's Sync.
		r.appendRaise(kind, e, f, rec.Seq)
		return nil
	}
	r.appendSyncedRaise(e, f, rec.Seq)
	return nil
}

// appendSyncedRaise ends what tollgate sent in place of a Query with a
// raise in the same extended-protocol exchange, which tollgate's own Sync
// ends: a failure before it skips the raise, and the Sync's ReadyForQuery
// answers the client's Query. Called with mu held.
func (r *relay) appendSyncedRaise(e *exec, f refusal, seq uint64) {
	stmt := r.enc.encode(raiseSQL(f.code, f.text(seq)))
	r.out, _ = (&pgproto3.Parse{Query: stmt}).Encode(r.out)
	r.out, _ = (&pgproto3.Bind{}).Encode(r.out)
	r.out, _ = (&pgproto3.Execute{}).Encode(r.out)
	r.out, _ = (&pgproto3.Sync{}).Encode(r.out)
	r.st.push(&expect{kind: expectParse, injected: true})
	r.st.push(&expect{kind: expectBind, injected: true})
	r.st.push(&expect{kind: expectExecute, exec: e, raise: true})
	r.st.push(&expect{kind: expectSync})
}

// refusal is why a statement is refused, for the client's message.
type refusal struct {
	code    string // SQLSTATE
	message string // without the record id
}

// denied is the refusal of a verdict that denies.
func denied(v verdict) refusal {
	var b strings.Builder
	b.WriteString("tollgate: statement denied by ")
	if v.Rule != "" {
		b.WriteString("rule " + strconv.Quote(v.Rule))
	} else {
		b.WriteString("the default deny")
	}
	if v.Reason != "" {
		b.WriteString(": " + v.Reason)
	}
	return refusal{code: codeInsufficientPrivilege, message: b.String()}
}

// text is the client's message, naming the statement's audit record.
func (f refusal) text(seq uint64) string {
	return f.message + " (audit record " + strconv.FormatUint(seq, 10) + ")"
}

// appendRaise appends the messages that make the server raise f in place
// of a refused client message, and queues their responses: for a Query
// or a FunctionCall (answered by ErrorResponse and ReadyForQuery) a
// Query; for a Parse or an Execute, Parse, Bind and Execute of the unnamed
// statement, whose ParseComplete and BindComplete the client does not see
// and whose error makes the server discard the rest of the pipeline up to
// the client's Sync, as if the refused message had failed. Called with mu
// held.
func (r *relay) appendRaise(kind expectKind, e *exec, f refusal, seq uint64) {
	// The server reads the raise in the client's encoding, as it reads
	// the statement it stands for.
	stmt := r.enc.encode(raiseSQL(f.code, f.text(seq)))
	switch kind {
	case expectQuery, expectFunction:
		r.out, _ = (&pgproto3.Query{String: stmt}).Encode(r.out)
		r.st.push(&expect{kind: kind, exec: e, raise: true})
	default:
		r.out, _ = (&pgproto3.Parse{Query: stmt}).Encode(r.out)
		r.out, _ = (&pgproto3.Bind{}).Encode(r.out)
		r.out, _ = (&pgproto3.Execute{}).Encode(r.out)
		r.st.push(&expect{kind: expectParse, injected: true})
		r.st.push(&expect{kind: expectBind, injected: true})
		r.st.push(&expect{kind: expectExecute, exec: e, raise: true})
		r.discard = true
	}
}

// stripContext removes the PL/pgSQL context line ("PL/pgSQL function
// inline_code_block line 1 at RAISE") from the server's ErrorResponse for
// a refusal, which would only confuse the client.
func stripContext(body []byte) []byte {
	var er pgproto3.ErrorResponse
	if er.Decode(body) != nil || er.Where == "" {
		return nil
	}
	er.Where = ""
	er.Routine, er.File, er.Line = "", "", 0
	b, err := er.Encode(nil)
	if err != nil {
		return nil
	}
	return b
}

// classify classifies a statement text as the server will read it: in
// the session's client_encoding (see textCodec), with
// standard_conforming_strings as the server has it. While an answer is
// outstanding, a statement in flight may change either setting (SET,
// RESET, set_config, a ROLLBACK undoing a SET, a function): then a text
// must read the same under each value the setting may take, or it is
// treated as text tollgate cannot parse (never run: see probe). A text of
// ASCII only reads the same in every client encoding, and a text without
// a backslash the same with standard_conforming_strings on and off.
func (r *relay) classify(raw string) sql.Statement {
	r.mu.Lock()
	enc, off, settled := r.enc, r.scsOff, r.settled()
	r.mu.Unlock()
	if enc.name != r.verdictsEnc {
		// The same bytes may now say something else.
		clear(r.verdicts)
		r.verdictsEnc = enc.name
	}
	text, err := enc.decode(raw)
	if err != nil {
		return sql.Statement{Classes: unknownClasses, Withheld: true, Err: fmt.Errorf("%w: %w", sql.ErrUnparsed, err)}
	}
	info := r.classifySCS(text, off, settled)
	if settled || info.Err != nil || isASCII(raw) {
		return info
	}
	// Bytes that split into characters differently in another encoding
	// can end a literal elsewhere there: each encoding the text is valid
	// in must read it the same.
	for _, s := range append(readings(raw), charmapReading(raw)) {
		if s == text {
			continue
		}
		if !sameReading(info, r.classifySCS(s, off, false)) {
			return sql.Statement{Classes: unknownClasses, Withheld: true,
				Err: fmt.Errorf("%w: it reads differently in another client_encoding while a change of the setting may be in flight", sql.ErrUnparsed)}
		}
	}
	return info
}

// charmapReading is text as every encoding without multibyte characters
// splits it (LATIN1 standing for them all): one byte, one character.
func charmapReading(text string) string {
	s, _ := textCodec{name: "LATIN1", enc: clientEncodings["latin1"]}.decode(text)
	return s
}

// classifySCS classifies a statement text (in UTF-8) with
// standard_conforming_strings off or on; unless settled, the text must
// read the same both ways. With the setting off the server reads
// backslashes in plain string literals as escapes, which can change where
// a literal ends, so the text is classified as sql.EscapeStrings rewrites
// it.
func (r *relay) classifySCS(text string, off, settled bool) sql.Statement {
	c := r.s.opts.Classifier
	if !strings.Contains(text, `\`) || settled && !off {
		return c.Classify(text)
	}
	offInfo := sql.Statement{Classes: unknownClasses, Withheld: true}
	if conv, err := sql.EscapeStrings(text); err != nil {
		offInfo.Err = fmt.Errorf("%w: %w", sql.ErrUnparsed, err)
	} else {
		offInfo = c.Classify(conv)
	}
	if settled {
		return offInfo
	}
	on := c.Classify(text)
	if on.Err == nil && offInfo.Err == nil && on.Count == offInfo.Count &&
		slices.Equal(on.Classes, offInfo.Classes) && slices.Equal(on.Tables, offInfo.Tables) {
		return on
	}
	return sql.Statement{Classes: unknownClasses, Withheld: true,
		Err: fmt.Errorf("%w: it reads differently with standard_conforming_strings on and off while a change of the setting may be in flight", sql.ErrUnparsed)}
}
