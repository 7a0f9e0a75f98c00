package guard

import (
	"container/list"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// parsedStmt is one statement of a query string, as the parser read it.
type parsedStmt struct {
	text        string // trimmed statement text
	loc, length int    // byte range in the original string (untrimmed)
	node        *pg_query.Node
	parseErr    string // set when this statement alone did not parse
}

// parsed is the context-free reading of a query string, cached per text.
type parsed struct {
	stmts []parsedStmt
	// syntaxError: the string as a whole does not parse with the PostgreSQL
	// 17 grammar (a syntax error, or newer syntax).
	syntaxError string
	// facts is FactsNeeded's answer for the text, set once on its first
	// ask (factsOnce) and kept as long as the parse is cached: the names
	// come from the text, so the cache's bound on entries and on text
	// length bounds them too.
	factsOnce sync.Once
	facts     factsNeeded
}

// factsNeeded are the lookups of relation facts a string's decisions make,
// the domains whose facts it needs, and data: the relations its queries and
// DML name (needed while the session holds ACCESS EXCLUSIVE on one of them).
type factsNeeded struct {
	lookups       []factsLookup
	domains, data []string
}

// parseSQL reads sql with the real PostgreSQL parser. When the whole string
// does not parse, it is split at top-level semicolons with the real lexer and
// each piece is parsed alone, so that one piece of newer syntax does not hide
// the rest.
func parseSQL(sql string) *parsed {
	tree, err := pg_query.Parse(sql)
	if err == nil {
		p := &parsed{stmts: make([]parsedStmt, 0, len(tree.Stmts))}
		for _, rs := range tree.Stmts {
			loc, n := int(rs.StmtLocation), int(rs.StmtLen)
			if n == 0 || loc+n > len(sql) {
				n = len(sql) - loc
			}
			p.stmts = append(p.stmts, parsedStmt{text: strings.TrimSpace(sql[loc : loc+n]), loc: loc, length: n, node: rs.Stmt})
		}
		return p
	}
	p := &parsed{syntaxError: err.Error()}
	for _, r := range splitStatements(sql) {
		piece := sql[r[0]:r[1]]
		if strings.TrimSpace(stripComments(piece)) == "" {
			continue
		}
		ps := parsedStmt{text: strings.TrimSpace(piece), loc: r[0], length: r[1] - r[0]}
		if t, err := pg_query.Parse(piece); err != nil {
			ps.parseErr = err.Error()
		} else if len(t.Stmts) == 1 {
			ps.node = t.Stmts[0].Stmt
		} else {
			ps.parseErr = "statement did not split cleanly"
		}
		p.stmts = append(p.stmts, ps)
	}
	return p
}

// splitStatements returns the byte ranges of the top-level statements of sql,
// using PostgreSQL's lexer; if even the lexer fails, the whole string is one
// piece.
func splitStatements(sql string) [][2]int {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return [][2]int{{0, len(sql)}}
	}
	var out [][2]int
	start := 0
	for _, tok := range res.Tokens {
		if tok.Token == pg_query.Token_ASCII_59 { // ';'
			out = append(out, [2]int{start, int(tok.End)})
			start = int(tok.End)
		}
	}
	if start < len(sql) {
		out = append(out, [2]int{start, len(sql)})
	}
	return out
}

// stripComments removes -- and /* */ comments (for emptiness checks only).
func stripComments(s string) string {
	res, err := pg_query.Scan(s)
	if err != nil {
		return s
	}
	var b strings.Builder
	for _, tok := range res.Tokens {
		if tok.Token == pg_query.Token_SQL_COMMENT || tok.Token == pg_query.Token_C_COMMENT {
			continue
		}
		b.WriteString(s[tok.Start:tok.End])
		b.WriteByte(' ')
	}
	return b.String()
}

// parseCache is a bounded LRU of parsed strings, safe for concurrent use.
type parseCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element
	order   list.List // front = most recent; values are *cacheEntry
}

type cacheEntry struct {
	sql string
	p   *parsed
}

// maxCachedText keeps huge strings (bulk INSERTs that slipped past the
// pre-check, generated DDL) out of the cache.
const maxCachedText = 64 << 10

func newParseCache(max int) *parseCache {
	return &parseCache{max: max, entries: make(map[string]*list.Element)}
}

func (c *parseCache) get(sql string) *parsed {
	if c == nil || c.max <= 0 || len(sql) > maxCachedText {
		return parseSQL(sql)
	}
	c.mu.Lock()
	if e, ok := c.entries[sql]; ok {
		c.order.MoveToFront(e)
		p := e.Value.(*cacheEntry).p
		c.mu.Unlock()
		return p
	}
	c.mu.Unlock()
	p := parseSQL(sql)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sql]; !ok {
		c.entries[sql] = c.order.PushFront(&cacheEntry{sql: sql, p: p})
		for c.order.Len() > c.max {
			old := c.order.Back()
			c.order.Remove(old)
			delete(c.entries, old.Value.(*cacheEntry).sql)
		}
	}
	return p
}

// len is the number of cached strings.
func (c *parseCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
