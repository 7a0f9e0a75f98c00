package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ddlguard/ddlguard/guard"
)

// lintProblem is one finding (or unchecked statement) in a file.
type lintProblem struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Column    int    `json:"column"`
	Rule      string `json:"rule"`
	Mode      string `json:"mode"` // enforce or warn
	Action    string `json:"action"`
	Message   string `json:"message"`
	Detail    string `json:"detail,omitempty"`
	Hint      string `json:"hint,omitempty"`
	Statement string `json:"statement"`
}

// lint runs the guard's rules over migration files. Exit code 1 when any
// enforced rule fires, 0 otherwise, 2 on usage or read errors.
func lint(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pgVersion := fs.Int("pg-version", 0, "server major version the migrations target (13-18; default: unknown, the most conservative answer)")
	format := fs.String("format", "text", "output: text, json, sarif or github")
	configPath := fs.String("config", "", "ddlguard YAML configuration (its guard section applies)")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "ddlguard lint: name at least one FILE, DIR or - (standard input)")
		return exitConfig
	}
	if *pgVersion != 0 && (*pgVersion < 13 || *pgVersion > 18) {
		fmt.Fprintf(stderr, "ddlguard lint: --pg-version %d: supported versions are 13 to 18\n", *pgVersion)
		return exitConfig
	}
	switch *format {
	case "text", "json", "sarif", "github":
	default:
		fmt.Fprintf(stderr, "ddlguard lint: --format %q: use text, json, sarif or github\n", *format)
		return exitConfig
	}
	cfg, err := readSettings(*configPath, os.Environ())
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	gc, err := cfg.guardConfig()
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	gc.Lint = true
	g, err := guard.New(gc)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	files, err := lintInputs(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard lint:", err)
		return exitConfig
	}
	var problems []lintProblem
	for _, f := range files {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "ddlguard lint:", err)
			return exitConfig
		}
		problems = append(problems, lintFile(g, f, string(data), *pgVersion)...)
	}
	if err := writeProblems(stdout, *format, problems); err != nil {
		fmt.Fprintln(stderr, "ddlguard lint:", err)
		return exitConfig
	}
	for _, p := range problems {
		if p.Mode == guard.Enforce.String() {
			return exitFailed
		}
	}
	return exitOK
}

// lintInputs expands directories into their .sql files (sorted, as
// migration tools order them).
func lintInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			out = append(out, a)
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".sql") {
				found = append(found, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// lintFile decides a file as one session.
func lintFile(g *guard.Guard, name, sql string, pgVersion int) []lintProblem {
	sess := guard.Session{ServerMajor: pgVersion}
	var out []lintProblem
	for _, d := range g.DecideScript(sql, &sess, guard.NoFacts{}) {
		line, col := position(sql, statementStart(sql, d.Location, d.Length))
		add := func(f guard.Finding, action string) {
			out = append(out, lintProblem{File: name, Line: line, Column: col, Rule: f.Rule, Mode: f.Mode.String(),
				Action: action, Message: f.Message, Detail: f.Detail, Hint: f.Hint, Statement: d.Statement})
		}
		if d.Deciding != nil {
			add(*d.Deciding, d.Action.String())
		}
		for _, w := range d.Warnings {
			add(w, "warn")
		}
		if d.Unchecked {
			out = append(out, lintProblem{File: name, Line: line, Column: col, Rule: "unchecked", Mode: guard.Warn.String(),
				Action: d.Action.String(), Statement: d.Statement,
				Message: "statement looks like DDL but the parser (PostgreSQL 17 grammar) cannot read it; it was not checked: " + firstLine(d.ParseError)})
		}
	}
	return out
}

// statementStart skips leading white space and comments of a statement.
func statementStart(sql string, loc, length int) int {
	i, end := loc, min(loc+length, len(sql))
	for i < end {
		switch {
		case sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r':
			i++
		case strings.HasPrefix(sql[i:], "--"):
			nl := strings.IndexByte(sql[i:end], '\n')
			if nl < 0 {
				return i
			}
			i += nl + 1
		case strings.HasPrefix(sql[i:], "/*"):
			c := strings.Index(sql[i+2:end], "*/")
			if c < 0 {
				return i
			}
			i += c + 4
		default:
			return i
		}
	}
	return loc
}

// position converts a byte offset into a 1-based line and column (in runes).
func position(s string, off int) (line, col int) {
	line = 1 + strings.Count(s[:off], "\n")
	lineStart := strings.LastIndexByte(s[:off], '\n') + 1
	return line, 1 + len([]rune(s[lineStart:off]))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func writeProblems(w io.Writer, format string, problems []lintProblem) error {
	switch format {
	case "json":
		if problems == nil {
			problems = []lintProblem{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(problems)
	case "sarif":
		return json.NewEncoder(w).Encode(sarifLog(problems))
	case "github":
		for _, p := range problems {
			level := "error"
			if p.Mode != guard.Enforce.String() {
				level = "warning"
			}
			msg := p.Message
			if p.Hint != "" {
				msg += "\nHint: " + p.Hint
			}
			fmt.Fprintf(w, "::%s file=%s,line=%d,col=%d,title=ddlguard %s::%s\n",
				level, githubEscape(p.File, true), p.Line, p.Column, githubEscape(p.Rule, true), githubEscape(msg, false))
		}
		return nil
	}
	for _, p := range problems {
		mode := ""
		if p.Mode != guard.Enforce.String() {
			mode = " (warning)"
		}
		fmt.Fprintf(w, "%s:%d:%d: %s%s: %s\n", p.File, p.Line, p.Column, p.Rule, mode, p.Message)
		if p.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", strings.ReplaceAll(p.Hint, "\n", "\n          "))
		}
	}
	return nil
}

// githubEscape escapes workflow-command data (and, for properties, ',' and ':').
func githubEscape(s string, property bool) string {
	s = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
	if property {
		s = strings.NewReplacer(":", "%3A", ",", "%2C").Replace(s)
	}
	return s
}

// sarifLog renders problems as SARIF 2.1.0.
func sarifLog(problems []lintProblem) map[string]any {
	rules := []map[string]any{}
	for _, id := range guard.RuleIDs() {
		rules = append(rules, map[string]any{"id": id, "name": id})
	}
	results := []map[string]any{}
	for _, p := range problems {
		level := "error"
		if p.Mode != guard.Enforce.String() {
			level = "warning"
		}
		text := p.Message
		if p.Hint != "" {
			text += "\nHint: " + p.Hint
		}
		results = append(results, map[string]any{
			"ruleId":  p.Rule,
			"level":   level,
			"message": map[string]any{"text": text},
			"locations": []map[string]any{{"physicalLocation": map[string]any{
				"artifactLocation": map[string]any{"uri": filepath.ToSlash(p.File)},
				"region":           map[string]any{"startLine": p.Line, "startColumn": p.Column},
			}}},
		})
	}
	return map[string]any{
		"version": "2.1.0",
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"runs": []map[string]any{{
			"tool":    map[string]any{"driver": map[string]any{"name": "ddlguard", "version": version, "rules": rules}},
			"results": results,
		}},
	}
}
