package guard

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Rule is one entry of the rule catalogue: a small type in its own file,
// registered from that file's init, with golden files in testdata/rules.
type Rule interface {
	// ID is the stable rule id users configure and see in errors.
	ID() string
	// DefaultMode is the mode with zero configuration (for review rules,
	// in lint; see reviewRule).
	DefaultMode() Mode
	// Relaxable rules are about the time a strong lock is held while the
	// statement scans, rewrites or builds: they pass for small, new and
	// temporary relations. Correctness rules are never relaxed.
	Relaxable() bool
	// Check returns a finding, or nil when the statement is fine.
	Check(s *Statement) *Finding
}

// lintOnly marks rules that apply to migration files only.
type lintOnly interface{ LintOnly() bool }

// reviewRule marks the rules about what a statement means for the code
// deployed against the database (is a dropped or renamed column still
// used? must writers wait behind an explicit lock?), not about outages:
// with the lock timeout and the blocker check their statements cannot
// stall anyone for long, and whether they are right is known only where a
// person reviews the migration. With zero configuration `ddlguard lint`
// enforces them and the proxy warns (DESIGN.md: what the proxy guards,
// and what it leaves to review).
type reviewRule interface{ ReviewTime() bool }

// defaultMode is a rule's mode with zero configuration.
func (c *Config) defaultMode(r Rule) Mode {
	if rv, ok := r.(reviewRule); ok && rv.ReviewTime() && !c.Lint {
		return Warn
	}
	return r.DefaultMode()
}

// reviewNote ends the warning of a review rule the proxy does not enforce.
const reviewNote = " (a review-time rule: the proxy warns, ddlguard lint enforces it)"

var registry []Rule

// register adds a rule to the catalogue; called from each rule's init.
func register(r Rule) {
	if ruleByID(r.ID()) != nil {
		panic("guard: rule registered twice: " + r.ID())
	}
	registry = append(registry, r)
}

func ruleByID(id string) Rule {
	for _, r := range registry {
		if r.ID() == id {
			return r
		}
	}
	return nil
}

// Statement is what a rule sees: one statement, its locks, and the session
// just before it.
type Statement = stmt

// Guard decides statements. It is safe for concurrent use.
type Guard struct {
	cfg   Config
	cache *parseCache
	stats struct{ parseErrors, unchecked atomic.Int64 }
}

// Stats are the guard's counters since it was created.
type Stats struct {
	// ParseErrors counts statements the parser could not read (usually
	// syntax errors the server reports itself), Unchecked those of them that
	// looked like DDL and ran with the lock timeout unchecked.
	ParseErrors, Unchecked int64
	// CachedTexts is the number of query strings in the parse cache.
	CachedTexts int
}

// Stats returns the guard's counters.
func (g *Guard) Stats() Stats {
	return Stats{ParseErrors: g.stats.parseErrors.Load(), Unchecked: g.stats.unchecked.Load(), CachedTexts: g.cache.len()}
}

// New returns a Guard for cfg (start from DefaultConfig).
func New(cfg Config) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg, cache: newParseCache(cfg.CacheEntries)}, nil
}

// Config returns the guard's configuration.
func (g *Guard) Config() Config { return g.cfg }

// FactsNeeded lists what the caller should fetch before Ask, in one pass
// over the statements of sql decided without facts: relations, those the
// statements scan, build or rewrite and those the analysis and the rules
// look up (their RelationFacts; a statement whose decision no fact can
// change, such as ADD COLUMN without a default, needs none), and domains,
// those of ALTER DOMAIN statements that lock and scan every relation with a
// column of the domain (their DomainFacts).
// Relations sess's transaction created, and its temporary ones, need no
// facts (sess may be nil). While sess's transaction holds ACCESS EXCLUSIVE, the
// held relations the string's queries and DML name are needed too, by the
// name they are held under: work on them runs under that lock, and how
// long it runs depends on their size. The answer is kept with the text's
// parse in the parse cache, so asking again for the same text does not
// analyse it again; the slices may be shared with the cache and must not
// be modified. Nothing for strings the pre-check clears outside such a
// transaction.
func (g *Guard) FactsNeeded(sql string, sess *Session) (relations, domains []string) {
	holds := sess != nil && sess.holdsAccessExclusive()
	if !holds && !MightBeGuarded(sql) {
		return nil, nil
	}
	p := g.cache.get(sql)
	p.factsOnce.Do(func() { p.facts = neededFacts(p.stmts) })
	domains = slices.Clip(p.facts.domains)
	forSession := sess
	if forSession == nil {
		forSession = &Session{}
	}
	for _, l := range p.facts.lookups {
		if slices.Contains(relations, l.relation) || forSession.isNew(l.relation) {
			continue
		}
		if l.rule != "" {
			r := ruleByID(l.rule)
			if r == nil || g.cfg.ruleConfig(r, forSession).Mode != Enforce {
				continue
			}
			if lo, ok := r.(lintOnly); ok && lo.LintOnly() && !g.cfg.Lint {
				continue
			}
		}
		relations = append(relations, l.relation)
	}
	if holds {
		for _, rel := range p.facts.data {
			for h, m := range sess.Tx.Held {
				if m >= AccessExclusive && sameRelationName(h, rel) && !slices.Contains(relations, h) {
					relations = append(relations, h)
				}
			}
		}
	}
	return relations, domains
}

// neededFacts is FactsNeeded's pass over the statements of a string,
// decided with every fact unknown (factsRecorder): the relations the
// analysis and each rule look up, those a statement does slow work on, and
// the relations a query or DML names after an earlier statement of the
// string took ACCESS EXCLUSIVE on them; the domains of ALTER DOMAIN
// statements that scan.
func neededFacts(stmts []parsedStmt) factsNeeded {
	var need factsNeeded
	sess := Session{}
	var exclusive []string // relations the string locks ACCESS EXCLUSIVE so far
	for _, ps := range stmts {
		if ps.node == nil {
			continue
		}
		rec := &factsRecorder{}
		// small > 0 so that size checks look their relations up.
		s := stmt{parsedStmt: ps, sess: &sess, facts: rec, factsFresh: true, small: 1}
		s.analyze()
		for _, l := range s.locks {
			if l.Work.Slow() && l.Relation != allRelations {
				need.lookups = appendLookup(need.lookups, factsLookup{relation: l.Relation})
			}
		}
		s.slowOnExistingLarge()
		for _, r := range registry {
			// A rule that finds nothing with every fact unknown (taken as
			// large, existing, of unknown types) finds nothing with facts
			// either: its lookups do not matter.
			rec.rule = r.ID()
			seen := len(rec.lookups)
			if r.Check(&s) == nil {
				rec.lookups = rec.lookups[:seen]
			}
		}
		for _, l := range rec.lookups {
			if l.relation != allRelations {
				need.lookups = appendLookup(need.lookups, l)
			}
		}
		if afterAEDataStatement(ps.node) {
			for _, rel := range afterAERelations(ps.node) {
				need.data = appendUnique(need.data, rel)
				for _, x := range exclusive {
					if sameRelationName(x, rel) {
						need.lookups = appendLookup(need.lookups, factsLookup{relation: x})
					}
				}
			}
		}
		for _, l := range s.locks {
			if l.Mode == AccessExclusive && l.Relation != allRelations {
				exclusive = appendUnique(exclusive, l.Relation)
			}
		}
		if d := ps.node.GetAlterDomainStmt(); d != nil && domainScans(d) {
			need.domains = appendUnique(need.domains, nameOf(d.TypeName))
		}
	}
	return need
}

// factsLookup is a relation whose facts the guard looks up: for the
// analysis or the engine (rule "": always needed), or for one rule (needed
// where that rule is enforced: a rule that only warns decides nothing).
type factsLookup struct{ relation, rule string }

// appendLookup appends l unless the list has it, or has its relation for
// every rule.
func appendLookup(list []factsLookup, l factsLookup) []factsLookup {
	for _, x := range list {
		if x.relation == l.relation && (x.rule == l.rule || x.rule == "") {
			return list
		}
	}
	return append(list, l)
}

// factsRecorder knows no facts and records the relations looked up, for
// the rule being checked ("" outside the rules). Whether a relation is
// absent matters only to a rule (without one, a statement on an absent
// relation fails on the server whatever the guard decides).
type factsRecorder struct {
	rule    string
	lookups []factsLookup
}

func (r *factsRecorder) Relation(name string) (RelationFacts, bool) {
	r.lookups = appendLookup(r.lookups, factsLookup{name, r.rule})
	return RelationFacts{}, false
}

func (r *factsRecorder) Domain(string) (DomainFacts, bool) { return DomainFacts{}, false }

func (r *factsRecorder) Absent(name string) bool {
	if r.rule != "" {
		r.lookups = appendLookup(r.lookups, factsLookup{name, r.rule})
	}
	return false
}

// NeedsDecision reports, without parsing and without allocating, whether
// Decide would look at sql at all: false means Decide returns plain allow.
// Callers holding sql in a transient buffer can use it before copying.
func NeedsDecision(sql string, sess *Session) bool {
	return MightBeGuarded(sql) || sess.holdsAccessExclusive()
}

// Normalize returns sql with every literal replaced by a placeholder $n
// (numbered after the statement's own parameters), for logs. It works from
// PostgreSQL's lexer, so it covers DDL too (pg_query's Normalize, modelled
// on pg_stat_statements, leaves DDL constants alone). Integer type
// modifiers (varchar(20), numeric(10,2)) stay readable.
func Normalize(sql string) string {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return "(unparseable statement)"
	}
	next := 1
	for _, t := range res.Tokens {
		if t.Token == pg_query.Token_PARAM {
			if n, err := strconv.Atoi(sql[t.Start+1 : t.End]); err == nil && n >= next {
				next = n + 1
			}
		}
	}
	var b strings.Builder
	pos, typmodDepth, depth := 0, 0, 0
	var prev pg_query.Token
	for _, t := range res.Tokens {
		switch t.Token {
		case pg_query.Token_ASCII_40: // (
			depth++
			if typmodDepth == 0 && typeModifierKeyword(prev) {
				typmodDepth = depth
			}
		case pg_query.Token_ASCII_41: // )
			if depth == typmodDepth {
				typmodDepth = 0
			}
			depth--
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST,
			pg_query.Token_FCONST, pg_query.Token_ICONST:
			if t.Token == pg_query.Token_ICONST && typmodDepth > 0 {
				break
			}
			b.WriteString(sql[pos:t.Start])
			b.WriteString("$" + strconv.Itoa(next))
			next++
			pos = int(t.End)
		}
		if t.Token != pg_query.Token_SQL_COMMENT && t.Token != pg_query.Token_C_COMMENT {
			prev = t.Token
		}
	}
	b.WriteString(sql[pos:])
	return b.String()
}

// typeModifierKeyword: a type name whose parenthesised integers are
// modifiers, not values.
func typeModifierKeyword(t pg_query.Token) bool {
	switch t {
	case pg_query.Token_VARCHAR, pg_query.Token_CHARACTER, pg_query.Token_CHAR_P, pg_query.Token_VARYING,
		pg_query.Token_NUMERIC, pg_query.Token_DECIMAL_P, pg_query.Token_DEC, pg_query.Token_BIT,
		pg_query.Token_TIMESTAMP, pg_query.Token_TIME, pg_query.Token_INTERVAL, pg_query.Token_FLOAT_P:
		return true
	}
	return false
}

// Decide returns the decision for every statement of sql as the linter
// sees them: every rewrite is planned as runnable (Ask with Rewritable).
// sess is the session before sql runs and is not modified; facts may be
// NoFacts{}.
func (g *Guard) Decide(sql string, sess *Session, facts Facts) Result {
	return g.Ask(Request{SQL: sql, Session: sess, Facts: facts, Rewritable: true})
}

// Ask answers a request: the final action of every statement of its
// string, and of the string (the strongest: if one statement is rejected,
// nothing of the string runs).
func (g *Guard) Ask(r Request) Result {
	sql, sess, facts := r.SQL, r.Session, r.Facts
	if !MightBeGuarded(sql) && !sess.holdsAccessExclusive() {
		return Result{Action: Allow}
	}
	if facts == nil {
		facts = NoFacts{}
	}
	p := g.cache.get(sql)
	res := Result{Parsed: true, Statements: make([]Decision, 0, len(p.stmts))}
	cur := sess.clone()
	cur.endImplicit()
	multi := len(p.stmts) > 1
	rewritable := r.Rewritable && !multi
	for i, ps := range p.stmts {
		// The facts were read before the string: only its first
		// statement may take "no such relation" from them (an earlier
		// statement of the string may create or rename one).
		d := g.decide(ps, &cur, facts, cur.InTransaction || multi, i == 0)
		if d.Action == Rewrite && !rewritable {
			d.carryOutWithoutRewrite()
		}
		res.Action = max(res.Action, d.Action)
		res.Statements = append(res.Statements, d)
		cur.Observe(&d)
	}
	return res
}

// decide decides one statement.
func (g *Guard) decide(ps parsedStmt, sess *Session, facts Facts, inBlock, factsFresh bool) Decision {
	d := Decision{Statement: ps.text, Location: ps.loc, Length: ps.length, InBlock: sess.InTransaction}
	if ps.node == nil {
		d.ParseError = ps.parseErr
		g.stats.parseErrors.Add(1)
		if MightBeGuarded(ps.text) && startsLikeDDL(ps.text) {
			g.stats.unchecked.Add(1)
			// Valid on a newer server perhaps (PostgreSQL 18 syntax), but
			// unreadable here: run it, with the lock timeout, and say so.
			d.Unchecked, d.Action, d.Kind = true, Timeout, "unparsed"
			d.LockTimeout = g.cfg.lockTimeout(sess, nil)
			d.Locks = unparsedLocks(ps.text)
			d.LocksUnknown = d.Locks == nil
		}
		d.Planned = d.Action
		return d
	}
	s := stmt{parsedStmt: ps, sess: sess, facts: facts, inBlock: inBlock, factsFresh: factsFresh}
	s.small = g.cfg.smallTableBytes(sess)
	s.analyze()
	for i := range s.locks {
		l := &s.locks[i]
		l.Held = sess.isNew(l.Relation) || (sess.InTransaction && sess.Tx.heldOn(l.Relation) >= l.Mode)
	}
	d.Kind, d.Locks, d.Effects, d.LocksUnknown = s.kind, s.locks, s.effects, s.locksUnknown
	d.BlockNeutral, d.KeepsShape = s.blockNeutral(), s.keepsShape()

	allowed := inlineAllows(ps.text)
	ignored := map[string]bool{}
	if g.cfg.Lint {
		ignored = lintIgnores(ps.text)
	}
	var deciding *Finding
	var decidingCfg RuleConfig
	for _, r := range registry {
		if lo, ok := r.(lintOnly); ok && lo.LintOnly() && !g.cfg.Lint {
			continue
		}
		rc := g.cfg.ruleConfig(r, sess)
		if rc.Mode == Off {
			continue
		}
		if r.Relaxable() && !s.slowOnExistingLarge() {
			continue
		}
		if ignored[r.ID()] {
			continue
		}
		f := r.Check(&s)
		if f == nil {
			continue
		}
		f.Rule, f.Mode = r.ID(), rc.Mode
		if rv, ok := r.(reviewRule); ok && rv.ReviewTime() && f.Mode == Warn && !g.cfg.Lint {
			f.Message += reviewNote
		}
		if reason, ok := allowed[r.ID()]; ok {
			if g.cfg.Lint || g.cfg.mayOverrideInline(sess.Role) {
				f.Mode, f.Override = Warn, reason
				f.Message += fmt.Sprintf(" (allowed by inline override: %s)", reason)
			}
		}
		if f.Mode == Enforce && deciding == nil {
			deciding, decidingCfg = f, rc
			continue
		}
		d.Warnings = append(d.Warnings, *f)
	}
	rewritable := deciding != nil && len(deciding.Rewrite) > 0 && !decidingCfg.NoRewrite &&
		!(deciding.RewriteOutsideTxOnly && inBlock)
	switch {
	case rewritable:
		d.Deciding, d.Action = deciding, Rewrite
		d.LockTimeout = g.cfg.lockTimeout(sess, &decidingCfg)
	case deciding != nil && deciding.QueueOnly && !decidingCfg.NoRewrite:
		// Its only danger is the lock queue, and its safe form cannot run
		// here: the lock timeout and the blocker check protect it. (With
		// its rewrite turned off, the operator asked for refusals.)
		d.Warnings = append(d.Warnings, *deciding)
		d.Action = Timeout
		d.LockTimeout = g.cfg.lockTimeout(sess, &decidingCfg)
	case deciding != nil:
		d.Deciding, d.Action = deciding, Reject
		d.LockTimeout = g.cfg.lockTimeout(sess, &decidingCfg)
	case s.strongOnExisting() || s.locksUnknown:
		d.Action = Timeout
		d.LockTimeout = g.cfg.lockTimeout(sess, nil)
	default:
		d.Action = Allow
	}
	d.Planned = d.Action
	return d
}

// holdsAccessExclusive: the open transaction holds ACCESS EXCLUSIVE on an
// existing relation, so even plain DML must be decided (it would run under
// that lock).
// HoldsStrongLock reports whether the session's transaction holds SHARE or
// stronger on an existing relation, from the statements it ran: while it
// does, the writers (and under ACCESS EXCLUSIVE the readers) of that
// relation wait for it to end.
func (s *Session) HoldsStrongLock() bool {
	if s == nil || !s.InTransaction {
		return false
	}
	for _, m := range s.Tx.Held {
		if m >= Share {
			return true
		}
	}
	return false
}

func (s *Session) holdsAccessExclusive() bool {
	if !s.InTransaction {
		return false
	}
	for _, m := range s.Tx.Held {
		if m == AccessExclusive {
			return true
		}
	}
	return false
}

// strongOnExisting: the statement takes SHARE or stronger on a relation
// that existed before its transaction.
func (s *stmt) strongOnExisting() bool {
	for _, l := range s.locks {
		if l.Mode >= Share && s.existing(l.Relation) {
			return true
		}
	}
	return false
}

// slowOnExistingLarge: the statement does slow work (scan, rewrite, index
// build) on an existing relation that is not known to be small.
func (s *stmt) slowOnExistingLarge() bool {
	if s.locksUnknown {
		return true
	}
	for _, l := range s.locks {
		if l.Work.Slow() && s.existing(l.Relation) && !s.isSmall(l.Relation) {
			return true
		}
		if !s.reruns {
			continue
		}
		if f, ok := s.facts.Relation(l.Relation); ok && f.QueryBytes >= s.small {
			return true // a small view over large tables: the query is the work
		}
	}
	return false
}

// isSmall: facts show the relation below the small-table threshold.
func (s *stmt) isSmall(rel string) bool {
	if s.small <= 0 {
		return false
	}
	f, ok := s.facts.Relation(rel)
	return ok && f.SizeBytes < s.small
}

var inlineAllow = regexp.MustCompile(`/\*\s*ddlguard:allow\s+([a-z0-9-]+)\s+reason="([^"]+)"\s*\*/`)

// inlineAllows reads /* ddlguard:allow rule-id reason="..." */ comments
// (a reason is required).
func inlineAllows(text string) map[string]string {
	if !strings.Contains(text, "ddlguard:allow") {
		return nil
	}
	out := map[string]string{}
	for _, m := range inlineAllow.FindAllStringSubmatch(text, -1) {
		out[m[1]] = m[2]
	}
	return out
}

var lintIgnore = regexp.MustCompile(`--\s*ddlguard:ignore\s+([a-z0-9-]+(?:[ ,]+[a-z0-9-]+)*)`)

// lintIgnores reads "-- ddlguard:ignore rule-id [rule-id...]" comments in a
// statement's text (including the comment lines just above it).
func lintIgnores(text string) map[string]bool {
	out := map[string]bool{}
	if !strings.Contains(text, "ddlguard:ignore") {
		return out
	}
	for _, m := range lintIgnore.FindAllStringSubmatch(text, -1) {
		for _, id := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ' ' || r == ',' }) {
			out[id] = true
		}
	}
	return out
}

var ddlStart = regexp.MustCompile(`(?i)^\s*(alter|create|drop|truncate|vacuum|cluster|reindex|refresh|lock|comment)\b`)

// startsLikeDDL reports whether an unparsed statement begins like DDL
// (after comments).
func startsLikeDDL(text string) bool {
	return ddlStart.MatchString(stripComments(text))
}

// PredictLocks returns the locks one statement takes (for tests and
// tools): no facts, the given server major, outside a transaction.
func PredictLocks(sql string, serverMajor int) ([]Lock, error) {
	p := parseSQL(sql)
	if len(p.stmts) != 1 || p.stmts[0].node == nil {
		return nil, fmt.Errorf("want one parseable statement: %s", p.syntaxError)
	}
	sess := Session{ServerMajor: serverMajor}
	s := stmt{parsedStmt: p.stmts[0], sess: &sess, facts: NoFacts{}}
	s.analyze()
	return s.locks, nil
}

// DecideScript decides a migration file as psql -f would run it: each
// statement is its own query, in autocommit unless the file opens a
// transaction block. sess is updated as the script goes (it ends as the
// session would after the whole script succeeded).
func (g *Guard) DecideScript(sql string, sess *Session, facts Facts) []Decision {
	if facts == nil {
		facts = NoFacts{}
	}
	p := g.cache.get(sql)
	out := make([]Decision, 0, len(p.stmts))
	for _, ps := range p.stmts {
		sess.endImplicit()
		d := g.decide(ps, sess, facts, sess.InTransaction, false)
		out = append(out, d)
		sess.Observe(&d)
		sess.endImplicit()
	}
	return out
}

// carryOutWithoutRewrite is the action of a rewrite whose sequence cannot
// run where it was asked: a queue-only finding runs with the lock timeout
// (the finding a warning), any other is rejected with the sequence as its
// hint.
func (d *Decision) carryOutWithoutRewrite() {
	if d.Deciding.QueueOnly {
		d.Warnings = append(d.Warnings, *d.Deciding)
		d.Deciding, d.Action = nil, Timeout
		return
	}
	d.Action = Reject
}
