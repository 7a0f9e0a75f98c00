package guard

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected sections of testdata/rules/*.txt")

// Golden files: testdata/rules/<rule-id>.txt hold cases, each
//
//	=== case name
//	pg: 15                      (server major; optional)
//	in_transaction: true        (optional)
//	role: r / database: d       (optional)
//	timezone: UTC               (optional)
//	lint: true                  (optional: lint-only rules and ignores)
//	held: t=ACCESS EXCLUSIVE    (locks the transaction already holds; repeatable)
//	created: t                  (created earlier in the transaction; repeatable)
//	temp: t                     (session temporary relation; repeatable)
//	notvalid: t.c               (constraint added NOT VALID earlier in the transaction)
//	facts: t size=20MB rows=1000 col:b="character varying(10)" notnull:h unique_index populated
//	                            (query=SIZE: what a materialized view's query reads;
//	                            a partitioned table's tree: part:NAME[@PARENT][:KIND],
//	                            KIND p or f, default r; index:NAME its own index,
//	                            partindex:PART=NAME a partition's)
//	absent: t                   (the catalog has no such relation; repeatable)
//	domain: d t u               (domain d's relations: t and u, each with the
//	                            facts of its facts: line, else a table of
//	                            unknown size; "domain: d" alone: known, unused)
//	config: rules.<id>=warn|off|norewrite, small_table_bytes=N, inline_roles=r
//	sql:
//	<statement text, any number of lines>
//	---
//	<expected rendering>
//
// One loop runs them all; go test -update rewrites the expected parts.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/rules/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	covered := map[string]bool{}
	for _, file := range files {
		covered[strings.TrimSuffix(filepath.Base(file), ".txt")] = true
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cases := parseGolden(t, file, string(data))
		changed := false
		for i := range cases {
			c := &cases[i]
			t.Run(filepath.Base(file)+"/"+c.name, func(t *testing.T) {
				got := c.run(t)
				if got != c.want {
					if *update {
						c.want, changed = got, true
						return
					}
					t.Errorf("%s: %q\n--- got\n%s\n--- want\n%s", file, c.name, got, c.want)
				}
			})
		}
		if changed {
			if err := os.WriteFile(file, []byte(renderGolden(cases)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, id := range RuleIDs() {
		if !covered[id] {
			t.Errorf("rule %s has no golden file testdata/rules/%s.txt", id, id)
		}
	}
}

type goldenCase struct {
	name    string
	header  []string // context lines, kept verbatim
	sql     string
	want    string
	comment string // lines before the case header
}

func parseGolden(t *testing.T, file, data string) []goldenCase {
	var cases []goldenCase
	var cur *goldenCase
	var pending []string
	section := ""
	for _, line := range strings.Split(data, "\n") {
		switch {
		case strings.HasPrefix(line, "=== "):
			cases = append(cases, goldenCase{name: strings.TrimPrefix(line, "=== "), comment: strings.Join(pending, "\n")})
			cur, section, pending = &cases[len(cases)-1], "header", nil
		case cur == nil:
			pending = append(pending, line)
		case section == "header" && line == "sql:":
			section = "sql"
		case section == "header":
			if strings.TrimSpace(line) != "" {
				cur.header = append(cur.header, line)
			}
		case section == "sql" && line == "---":
			section = "want"
		case section == "sql":
			cur.sql += line + "\n"
		case section == "want":
			cur.want += line + "\n"
		}
	}
	for i := range cases {
		cases[i].sql = strings.TrimRight(cases[i].sql, "\n")
		cases[i].want = strings.TrimRight(cases[i].want, "\n")
		if cases[i].sql == "" {
			t.Fatalf("%s: case %q has no sql", file, cases[i].name)
		}
	}
	return cases
}

func renderGolden(cases []goldenCase) string {
	var b strings.Builder
	for _, c := range cases {
		if c.comment != "" {
			b.WriteString(c.comment + "\n")
		}
		b.WriteString("=== " + c.name + "\n")
		for _, h := range c.header {
			b.WriteString(h + "\n")
		}
		b.WriteString("sql:\n" + c.sql + "\n---\n" + c.want + "\n\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// run decides the case and renders the result.
func (c *goldenCase) run(t *testing.T) string {
	cfg := DefaultConfig()
	sess := Session{}
	facts := goldenFacts{FactsMap: FactsMap{}, domains: map[string][]string{}}
	for _, h := range c.header {
		key, val, _ := strings.Cut(h, ":")
		val = strings.TrimSpace(val)
		switch key {
		case "pg":
			sess.ServerMajor, _ = strconv.Atoi(val)
		case "in_transaction":
			sess.InTransaction = val == "true"
		case "role":
			sess.Role = val
		case "database":
			sess.Database = val
		case "timezone":
			sess.TimeZone = val
		case "lint":
			cfg.Lint = val == "true"
		case "held":
			rel, mode, _ := strings.Cut(val, "=")
			m, ok := ParseLockMode(mode)
			if !ok {
				t.Fatalf("bad held lock %q", val)
			}
			if sess.Tx.Held == nil {
				sess.Tx.Held = map[string]LockMode{}
			}
			sess.Tx.Held[rel] = m
		case "created":
			addTo(&sess.Tx.Created, val)
		case "temp":
			addTo(&sess.Temp, val)
		case "notvalid":
			addTo(&sess.Tx.NotValid, val)
		case "lock_timeout_set":
			sess.LockTimeoutSet = val == "true"
		case "facts":
			name, f := parseFacts(t, val)
			facts.FactsMap[name] = f
		case "absent":
			addTo(&facts.absent, val)
		case "domain":
			fields := strings.Fields(val)
			facts.domains[fields[0]] = fields[1:]
		case "config":
			applyGoldenConfig(t, &cfg, val)
		default:
			t.Fatalf("unknown context line %q", h)
		}
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return renderResult(g.Decide(c.sql, &sess, facts))
}

// goldenFacts are a case's facts: relations, and domains with the names of
// their relations.
type goldenFacts struct {
	absent map[string]bool // relations the catalog has no row for
	FactsMap
	domains map[string][]string
}

// Absent implements absentFacts.
func (g goldenFacts) Absent(name string) bool { return g.absent[name] }

// Domain implements Facts.
func (g goldenFacts) Domain(name string) (DomainFacts, bool) {
	rels, ok := g.domains[name]
	if !ok {
		return DomainFacts{}, false
	}
	var f DomainFacts
	for _, r := range rels {
		rf, ok := g.FactsMap[r]
		if !ok {
			rf = RelationFacts{Kind: 'r', Persistence: 'p', SizeBytes: math.MaxInt64}
		}
		f.Relations = append(f.Relations, DomainRelation{Name: r, Columns: []string{"v"}, Facts: rf})
	}
	return f, true
}

func parseFacts(t *testing.T, val string) (string, RelationFacts) {
	toks := splitQuoted(val)
	f := RelationFacts{Kind: 'r', Persistence: 'p'}
	for _, tok := range toks[1:] {
		k, v, _ := strings.Cut(tok, "=")
		switch {
		case k == "size":
			f.SizeBytes = parseSize(t, v)
		case k == "rows":
			f.Rows, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "col:"):
			if f.Columns == nil {
				f.Columns = map[string]Column{}
			}
			f.Columns[strings.TrimPrefix(k, "col:")] = Column{Type: strings.Trim(v, `"`)}
		case strings.HasPrefix(k, "notnull:"):
			if f.NotNullChecks == nil {
				f.NotNullChecks = map[string]bool{}
			}
			f.NotNullChecks[strings.TrimPrefix(k, "notnull:")] = true
		case strings.HasPrefix(k, "notnullcol:"):
			if f.Columns == nil {
				f.Columns = map[string]Column{}
			}
			col := strings.TrimPrefix(k, "notnullcol:")
			c := f.Columns[col]
			c.NotNull = true
			f.Columns[col] = c
		case k == "unique_index":
			f.UniqueIndex = true
		case k == "populated":
			f.Populated = true
		case k == "default_partition":
			f.HasDefaultPartition = true
		case k == "kind":
			f.Kind = v[0]
		case k == "table":
			f.Table = v
		case k == "query":
			f.QueryBytes = parseSize(t, v)
		case strings.HasPrefix(k, "part:"):
			p := Partition{Kind: 'r'}
			spec := strings.TrimPrefix(k, "part:")
			if i := strings.LastIndexByte(spec, ':'); i >= 0 {
				spec, p.Kind = spec[:i], spec[i+1]
			}
			p.Name, p.Parent, _ = strings.Cut(spec, "@")
			f.Partitions = append(f.Partitions, p)
		case strings.HasPrefix(k, "index:"):
			f.Indexes = append(f.Indexes, strings.TrimPrefix(k, "index:"))
		case strings.HasPrefix(k, "partindex:"):
			for i := range f.Partitions {
				if f.Partitions[i].Name == strings.TrimPrefix(k, "partindex:") {
					f.Partitions[i].Indexes = append(f.Partitions[i].Indexes, v)
				}
			}
		default:
			t.Fatalf("unknown fact %q", tok)
		}
	}
	return toks[0], f
}

func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func parseSize(t *testing.T, v string) int64 {
	mult := int64(1)
	for suffix, m := range map[string]int64{"kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30} {
		if strings.HasSuffix(v, suffix) {
			v, mult = strings.TrimSuffix(v, suffix), m
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("bad size %q", v)
	}
	return n * mult
}

func applyGoldenConfig(t *testing.T, cfg *Config, val string) {
	for _, item := range strings.Split(val, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(item), "=")
		switch {
		case strings.HasPrefix(k, "rules."):
			if cfg.Rules == nil {
				cfg.Rules = map[string]RuleConfig{}
			}
			id := strings.TrimPrefix(k, "rules.")
			rc := RuleConfig{Mode: Enforce}
			if v == "norewrite" {
				rc.NoRewrite = true
			} else {
				m, err := ParseMode(v)
				if err != nil {
					t.Fatal(err)
				}
				rc.Mode = m
			}
			cfg.Rules[id] = rc
		case k == "small_table_bytes":
			cfg.SmallTableBytes = parseSize(t, v)
		case k == "inline_roles":
			cfg.InlineOverrideRoles = strings.Split(v, "|")
		case k == "lock_timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			cfg.LockTimeout = d
		default:
			t.Fatalf("unknown config %q", item)
		}
	}
}

// renderResult is the stable text form of a result that golden files hold.
func renderResult(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "result: %s", r.Action)
	if !r.Parsed {
		b.WriteString(" (not parsed)")
	}
	for i, d := range r.Statements {
		fmt.Fprintf(&b, "\n[%d] %s: %s", i+1, d.Kind, d.Action)
		if d.Action == Timeout || d.Action == Rewrite {
			fmt.Fprintf(&b, " lock_timeout=%s", d.LockTimeout)
		}
		if len(d.Locks) > 0 {
			b.WriteString("\n  " + locksDetail(d.Locks))
		}
		if d.LocksUnknown {
			b.WriteString("\n  locks unknown: SHARE (scan) on relations the facts do not name")
		}
		if d.Unchecked {
			b.WriteString("\n  unchecked: " + firstLine(d.ParseError))
		}
		if f := d.Deciding; f != nil {
			fmt.Fprintf(&b, "\n  rule: %s\n  message: %s", f.Rule, f.Message)
			if f.Detail != locksDetail(d.Locks) {
				fmt.Fprintf(&b, "\n  detail: %s", indentLines(f.Detail))
			}
			fmt.Fprintf(&b, "\n  hint: %s", indentLines(f.Hint))
			for _, r := range f.Rewrite {
				b.WriteString("\n  rewrite: " + indentLines(r))
			}
		}
		ws := append([]Finding(nil), d.Warnings...)
		sort.SliceStable(ws, func(i, j int) bool { return ws[i].Rule < ws[j].Rule })
		for _, w := range ws {
			fmt.Fprintf(&b, "\n  warn %s: %s\n    hint: %s", w.Rule, w.Message, indentLines(w.Hint))
		}
	}
	return b.String()
}

func indentLines(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
