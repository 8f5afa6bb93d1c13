// SPDX-License-Identifier: Apache-2.0

package sql

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/tollgate-dev/tollgate/policy"
)

// DefaultCacheSize is the number of classified texts New keeps when
// Options.CacheSize is zero.
const DefaultCacheSize = 4096

// maxCachedKey is the longest raw text used as a cache key. Longer texts
// are rarely repeated verbatim and would pin memory.
const maxCachedKey = 4 << 10

// Options configure New.
type Options struct {
	// CacheSize bounds the cache of classified texts (by raw and by
	// normalised text). Zero means DefaultCacheSize; negative disables
	// the cache.
	CacheSize int
}

// PGQuery is the Classifier on libpg_query. It is safe for concurrent use.
type PGQuery struct {
	byRaw  *cache // exact text → result, for texts repeated verbatim
	byNorm *cache // normalised text → result, for texts differing in literals
}

var _ Classifier = (*PGQuery)(nil)

// New returns a Classifier on libpg_query.
func New(opts Options) *PGQuery {
	n := opts.CacheSize
	if n == 0 {
		n = DefaultCacheSize
	}
	return &PGQuery{byRaw: newCache(n), byNorm: newCache(n)}
}

// Classify normalises and classifies text. It never fails: a text that
// does not parse is classified as unknown, with Err set and its text
// still redacted, or withheld when it does not even lex.
//
// The returned Classes and Tables may be shared with other results: treat
// them as read-only.
func (p *PGQuery) Classify(text string) Statement {
	useRaw := len(text) <= maxCachedKey
	if useRaw {
		if st, ok := p.byRaw.get(text); ok {
			return st
		}
	}
	norm, ok := redact(text)
	if !ok {
		st := Statement{Classes: []policy.Class{policy.ClassUnknown}, Withheld: true,
			Err: fmt.Errorf("%w: it does not lex", ErrUnparsed)}
		if useRaw {
			p.byRaw.put(text, st)
		}
		return st
	}
	// Texts that differ only in literals normalise to the same text and
	// have the same structure, so they share one classification.
	st, ok := p.byNorm.get(norm)
	if !ok {
		st = classify(text, norm)
		p.byNorm.put(norm, st)
	}
	if useRaw {
		p.byRaw.put(text, st)
	}
	return st
}

// classify classifies text, whose normalised form is norm. The parse tree
// of the raw text is used for classes and tables (the normalised text may
// not parse: "NOTIFY c, $1"); only norm, names and classes leave here.
func classify(text, norm string) Statement {
	st := Statement{}
	st.Text, st.Truncated = truncate(norm)
	st.Fingerprint = fingerprint(norm)
	tree, err := pg_query.Parse(text)
	if err != nil {
		st.Classes = []policy.Class{policy.ClassUnknown}
		st.Err = fmt.Errorf("%w: %s", ErrUnparsed, parseErrorPosition(err))
		return st
	}
	st.Count = len(tree.Stmts)
	if st.Count == 0 {
		// Nothing but blanks, semicolons and comments: the server
		// answers EmptyQueryResponse and nothing runs.
		st.Classes = []policy.Class{policy.ClassEmpty}
		return st
	}
	cs := classSet{}
	for _, raw := range tree.Stmts {
		classifyNode(raw.Stmt, cs)
	}
	if st.Count > 1 {
		cs[policy.ClassMultiStatement] = true
		st.Parts = parts(text, tree.Stmts)
	} else {
		st.Prepared = preparedOp(tree.Stmts[0].Stmt)
	}
	var calls bool
	st.Tables, calls = summarize(text)
	if calls {
		cs[policy.ClassFunctionCall] = true
	}
	st.Classes = cs.sorted()
	return st
}

// parts classifies each statement of a multi-statement text on its own,
// so that each is judged with only its own classes and tables.
func parts(text string, stmts []*pg_query.RawStmt) []Part {
	out := make([]Part, 0, len(stmts))
	for _, raw := range stmts {
		cs := classSet{}
		classifyNode(raw.Stmt, cs)
		var p Part
		start, end := int(raw.StmtLocation), len(text)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		if start >= 0 && start <= end && end <= len(text) {
			var calls bool
			p.Tables, calls = summarize(text[start:end])
			if calls {
				cs[policy.ClassFunctionCall] = true
			}
		}
		p.Classes = cs.sorted()
		p.Prepared = preparedOp(raw.Stmt)
		out = append(out, p)
	}
	return out
}

// preparedOp tells what a statement node does to the session's SQL-level
// prepared statements.
func preparedOp(n *pg_query.Node) PreparedOp {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_PrepareStmt:
		return PreparedOp{Kind: Prepare, Name: x.PrepareStmt.GetName()}
	case *pg_query.Node_ExecuteStmt:
		return PreparedOp{Kind: Execute, Name: x.ExecuteStmt.GetName()}
	case *pg_query.Node_ExplainStmt:
		// EXPLAIN ANALYZE EXECUTE runs it.
		if op := preparedOp(x.ExplainStmt.GetQuery()); op.Kind == Execute {
			return op
		}
	case *pg_query.Node_CreateTableAsStmt:
		if op := preparedOp(x.CreateTableAsStmt.GetQuery()); op.Kind == Execute {
			return op
		}
	case *pg_query.Node_DeallocateStmt:
		if x.DeallocateStmt.GetIsall() || x.DeallocateStmt.GetName() == "" {
			return PreparedOp{Kind: DeallocateAll}
		}
		return PreparedOp{Kind: Deallocate, Name: x.DeallocateStmt.GetName()}
	case *pg_query.Node_DiscardStmt:
		if x.DiscardStmt.GetTarget() == pg_query.DiscardMode_DISCARD_ALL {
			return PreparedOp{Kind: DeallocateAll}
		}
	}
	return PreparedOp{}
}

// summarize lists the tables a text names, sorted and without
// duplicates, and reports whether it calls a function with effects beyond
// reading (sideEffects), anywhere in the statement: in a SELECT list, a
// FROM clause or a subquery.
func summarize(text string) (tables []string, calls bool) {
	sum, err := pg_query.Summary(text, -1)
	if err != nil {
		return nil, false
	}
	for _, t := range sum.Tables {
		if !slices.Contains(tables, t.Name) {
			tables = append(tables, t.Name)
		}
	}
	slices.Sort(tables)
	for _, f := range sum.Functions {
		if f.SchemaName != "" && f.SchemaName != "pg_catalog" {
			continue // a user function of that name: not the built-in
		}
		if sideEffects[strings.ToLower(f.FunctionName)] {
			calls = true
		}
	}
	return tables, calls
}

// sideEffects are the built-in functions that do more than compute a
// value from their arguments and the tables a statement names: they signal
// or reconfigure the server, read or write its files, change large
// objects, sequences, replication state or statistics, take locks that
// block other sessions, send notifications, or run SQL given as text
// (which no table rule sees). A statement calling one of them, even from
// a SELECT, has the class function_call as well. User-defined functions
// are not known here; see the README.
var sideEffects = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(`
		pg_cancel_backend pg_terminate_backend pg_reload_conf pg_rotate_logfile
		pg_log_backend_memory_contexts pg_promote pg_switch_wal pg_create_restore_point
		pg_backup_start pg_backup_stop pg_start_backup pg_stop_backup
		pg_wal_replay_pause pg_wal_replay_resume set_config
		pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file pg_ls_logdir pg_ls_waldir
		pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalsnapdir pg_ls_logicalmapdir
		pg_ls_replslotdir pg_file_write pg_file_rename pg_file_unlink pg_file_sync
		lo_import lo_export lo_unlink lo_create lo_creat lo_from_bytea lo_put lowrite lo_truncate
		nextval setval
		pg_create_physical_replication_slot pg_create_logical_replication_slot
		pg_drop_replication_slot pg_copy_physical_replication_slot
		pg_copy_logical_replication_slot pg_replication_slot_advance
		pg_logical_slot_get_changes pg_logical_slot_get_binary_changes
		pg_logical_slot_peek_changes pg_logical_slot_peek_binary_changes pg_logical_emit_message
		pg_replication_origin_create pg_replication_origin_drop pg_replication_origin_advance
		pg_replication_origin_session_setup pg_replication_origin_session_reset
		pg_replication_origin_xact_setup pg_replication_origin_xact_reset
		pg_stat_reset pg_stat_reset_shared pg_stat_reset_single_table_counters
		pg_stat_reset_single_function_counters pg_stat_reset_slru pg_stat_reset_replication_slot
		pg_stat_reset_subscription_stats pg_stat_statements_reset
		pg_advisory_lock pg_advisory_lock_shared pg_advisory_xact_lock pg_advisory_xact_lock_shared
		pg_try_advisory_lock pg_try_advisory_lock_shared pg_try_advisory_xact_lock
		pg_try_advisory_xact_lock_shared pg_advisory_unlock pg_advisory_unlock_shared
		pg_advisory_unlock_all pg_sleep pg_sleep_for pg_sleep_until pg_notify
		query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema
		table_to_xml table_to_xmlschema table_to_xml_and_xmlschema
		schema_to_xml schema_to_xmlschema schema_to_xml_and_xmlschema
		database_to_xml database_to_xmlschema database_to_xml_and_xmlschema
		dblink dblink_exec dblink_connect dblink_connect_u dblink_open dblink_fetch
		dblink_send_query dblink_get_result pg_import_system_collations`) {
		m[f] = true
	}
	return m
}()

// fingerprint is libpg_query's fingerprint of the normalised text, which
// equals that of the original for ordinary statements. It is computed from
// norm, never from the raw text, because for some utility statements the
// fingerprint covers literal strings (a password, a NOTIFY payload), and a
// 64-bit hash of a short secret can be brute-forced. When norm does not
// parse, the fingerprint is the first 64 bits of its SHA-256.
func fingerprint(norm string) string {
	if fp, err := pg_query.Fingerprint(norm); err == nil {
		return fp
	}
	sum := sha256.Sum256([]byte(norm))
	return hex.EncodeToString(sum[:8])
}

// redact replaces every literal token of text (strings of every quoting
// style, including dollar-quoted bodies, bit strings and numbers) by a $n
// placeholder numbered after the highest parameter already present, and
// drops comments, which can hold anything. It reports false when text does
// not lex, or when the tokens do not account for every non-blank byte
// (then a literal could hide between them).
func redact(text string) (string, bool) {
	res, err := pg_query.Scan(text)
	if err != nil {
		return "", false
	}
	next := 1
	for _, tok := range res.Tokens {
		if tok.Token == pg_query.Token_PARAM && tok.End > tok.Start && int(tok.End) <= len(text) {
			if n, err := strconv.Atoi(strings.TrimPrefix(text[tok.Start:tok.End], "$")); err == nil && n >= next {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for _, tok := range res.Tokens {
		start, end := int(tok.Start), int(tok.End)
		if start < last || end < start || end > len(text) {
			return "", false
		}
		if strings.TrimSpace(text[last:start]) != "" {
			return "", false
		}
		b.WriteString(text[last:start])
		switch tok.Token {
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST,
			pg_query.Token_ICONST, pg_query.Token_FCONST:
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(next))
			next++
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			b.WriteByte(' ')
		default:
			b.WriteString(text[start:end])
		}
		last = end
	}
	if strings.TrimSpace(text[last:]) != "" {
		return "", false
	}
	b.WriteString(text[last:])
	return strings.TrimSpace(b.String()), true
}

// parseErrorPosition keeps the cursor position of a parser error and drops
// its message: "syntax error at or near ..." quotes the offending token,
// which may be part of a literal.
func parseErrorPosition(err error) string {
	var perr *parser.Error
	if errors.As(err, &perr) && perr.Cursorpos > 0 {
		return fmt.Sprintf("at position %d", perr.Cursorpos)
	}
	return "parser error"
}

// truncate cuts s at MaxText bytes, on a UTF-8 boundary.
func truncate(s string) (string, bool) {
	if len(s) <= MaxText {
		return s, false
	}
	cut := MaxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// classSet collects classes.
type classSet map[policy.Class]bool

// sorted returns the classes in the order of policy.Classes.
func (cs classSet) sorted() []policy.Class {
	var out []policy.Class
	for _, c := range policy.Classes() {
		if cs[c] {
			out = append(out, c)
		}
	}
	return out
}

// classifyNode adds the classes of one statement node.
func classifyNode(n *pg_query.Node, cs classSet) {
	if n == nil {
		return
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		classifySelect(x.SelectStmt, cs)
	case *pg_query.Node_InsertStmt:
		s := x.InsertStmt
		cs[policy.ClassInsert] = true
		if s.OnConflictClause.GetAction() == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
			cs[policy.ClassUpdate] = true
		}
		withClause(s.WithClause, cs)
	case *pg_query.Node_UpdateStmt:
		s := x.UpdateStmt
		cs[policy.ClassUpdate] = true
		if s.WhereClause == nil {
			cs[policy.ClassUpdateWithoutWhere] = true
		}
		withClause(s.WithClause, cs)
	case *pg_query.Node_DeleteStmt:
		s := x.DeleteStmt
		cs[policy.ClassDelete] = true
		if s.WhereClause == nil {
			cs[policy.ClassDeleteWithoutWhere] = true
		}
		withClause(s.WithClause, cs)
	case *pg_query.Node_MergeStmt:
		s := x.MergeStmt
		for _, w := range s.MergeWhenClauses {
			switch w.GetMergeWhenClause().GetCommandType() {
			case pg_query.CmdType_CMD_INSERT:
				cs[policy.ClassInsert] = true
			case pg_query.CmdType_CMD_UPDATE:
				cs[policy.ClassUpdate] = true
			case pg_query.CmdType_CMD_DELETE:
				cs[policy.ClassDelete] = true
			}
		}
		withClause(s.WithClause, cs)
	case *pg_query.Node_TruncateStmt:
		cs[policy.ClassTruncate] = true
	case *pg_query.Node_GrantStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_AlterDefaultPrivilegesStmt,
		*pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt, *pg_query.Node_AlterRoleSetStmt,
		*pg_query.Node_DropRoleStmt, *pg_query.Node_ReassignOwnedStmt:
		// Role management changes who may do what, like GRANT.
		cs[policy.ClassGrant] = true
	case *pg_query.Node_CopyStmt:
		s := x.CopyStmt
		cs[policy.ClassCopy] = true
		if s.IsFrom {
			cs[policy.ClassCopyIn] = true
		} else {
			cs[policy.ClassCopyOut] = true
		}
		if s.IsProgram {
			// COPY ... PROGRAM runs a shell command on the server.
			cs[policy.ClassFunctionCall] = true
		}
		classifyNode(s.Query, cs)
	case *pg_query.Node_TransactionStmt, *pg_query.Node_LockStmt:
		cs[policy.ClassTransaction] = true
	case *pg_query.Node_VariableSetStmt, *pg_query.Node_DiscardStmt, *pg_query.Node_DeallocateStmt,
		*pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt, *pg_query.Node_ConstraintsSetStmt:
		// Session state.
		cs[policy.ClassSet] = true
	case *pg_query.Node_VariableShowStmt, *pg_query.Node_FetchStmt, *pg_query.Node_ClosePortalStmt:
		cs[policy.ClassSelect] = true
	case *pg_query.Node_CallStmt, *pg_query.Node_DoStmt, *pg_query.Node_NotifyStmt:
		// NOTIFY is pg_notify() in statement form.
		cs[policy.ClassFunctionCall] = true
	case *pg_query.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs its statement; plain EXPLAIN does not, but
		// the conservative answer is the statement's classes either way.
		classifyNode(x.ExplainStmt.Query, cs)
	case *pg_query.Node_PrepareStmt:
		classifyNode(x.PrepareStmt.Query, cs)
	case *pg_query.Node_DeclareCursorStmt:
		classifyNode(x.DeclareCursorStmt.Query, cs)
	case *pg_query.Node_CreateTableAsStmt:
		cs[policy.ClassDDL] = true
		classifyNode(x.CreateTableAsStmt.Query, cs)
	case *pg_query.Node_ExecuteStmt:
		// What runs depends on an earlier PREPARE this text does not show.
		cs[policy.ClassUnknown] = true
	case *pg_query.Node_VacuumStmt, *pg_query.Node_ClusterStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_CheckPointStmt, *pg_query.Node_RefreshMatViewStmt:
		// Maintenance changes physical structure: grouped with DDL.
		cs[policy.ClassDDL] = true
	default:
		if isDDLNode(n) {
			cs[policy.ClassDDL] = true
		} else {
			cs[policy.ClassUnknown] = true
		}
	}
}

// classifySelect adds the classes of a SELECT, including the set
// operations it combines.
func classifySelect(s *pg_query.SelectStmt, cs classSet) {
	if s == nil {
		return
	}
	cs[policy.ClassSelect] = true
	if s.IntoClause != nil {
		cs[policy.ClassDDL] = true // SELECT INTO creates a table
	}
	withClause(s.WithClause, cs)
	classifySelect(s.Larg, cs)
	classifySelect(s.Rarg, cs)
}

// withClause adds the classes of a WITH clause's queries, so that
// data-modifying CTEs (WITH d AS (DELETE ...) SELECT ...) are seen.
func withClause(w *pg_query.WithClause, cs classSet) {
	for _, c := range w.GetCtes() {
		if cte := c.GetCommonTableExpr(); cte != nil {
			q := cte.Ctequery
			classifyNode(q, cs)
		}
	}
}

// isDDLNode reports whether a statement node is a CREATE, ALTER, DROP,
// RENAME, COMMENT, SECURITY LABEL or similar schema change, by the name of
// its node type.
func isDDLNode(n *pg_query.Node) bool {
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("node"))
	if fd == nil {
		return false
	}
	name := string(fd.Name())
	if !strings.HasSuffix(name, "_stmt") {
		return false
	}
	for _, p := range []string{"create", "alter", "drop", "rename", "comment", "sec_label", "define", "composite_type",
		"index", "view", "rule", "import_foreign_schema"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// cache is a bounded map with two generations: when the current one is
// full it becomes the old one and the older is dropped, so recently used
// entries survive (an approximate LRU without per-hit bookkeeping).
type cache struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]Statement
}

func newCache(max int) *cache {
	if max < 0 {
		return nil
	}
	return &cache{max: max, cur: map[string]Statement{}}
}

func (c *cache) get(k string) (Statement, bool) {
	if c == nil {
		return Statement{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.cur[k]; ok {
		return st, true
	}
	if st, ok := c.old[k]; ok {
		c.putLocked(k, st)
		return st, true
	}
	return Statement{}, false
}

func (c *cache) put(k string, st Statement) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, st)
}

func (c *cache) putLocked(k string, st Statement) {
	if len(c.cur) >= c.max/2+1 {
		c.old, c.cur = c.cur, make(map[string]Statement, c.max/2+1)
	}
	c.cur[k] = st
}
