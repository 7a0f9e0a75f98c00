package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The migration-history corpus (testdata/migrations): one directory per
// project, each applied in order to a database of its own.
//
//	<project>/runner                 whole-file | transaction | statements
//	<project>/NNNN_name.sql          applied in every run
//	<project>/NNNN_name.down.sql     never applied (golang-migrate's down files)
//	<project>/NNNN_name.data.sql     applied in the runs with rows
//	<project>/NNNN_name.large.sql    applied in the run with one large table
//
// A file's first line "-- runner: MODE" overrides its project's mode (as
// goose's NO TRANSACTION does). Files apply in byte order of their names.

const historyDir = "testdata/migrations"

// historyMode is how a runner sends a file.
type historyMode string

const (
	// wholeFile: the file's text as one simple Query (golang-migrate);
	// PostgreSQL runs it as one implicit transaction.
	wholeFile historyMode = "whole-file"
	// inTransaction: the runner wraps the file's statements in one
	// transaction (goose, Rails, Django, Alembic, Flyway).
	inTransaction historyMode = "transaction"
	// eachStatement: every statement on its own, in autocommit unless the
	// file opens a transaction itself (psql -f).
	eachStatement historyMode = "statements"
)

// historyData says which runs apply a file.
type historyData int

const (
	dataSchema historyData = iota // every run
	dataRows                      // runs with rows (and the large run)
	dataLarge                     // the large run only
)

// historyRun is one of the three databases a history is applied to.
type historyRun struct {
	name string
	data historyData // the data files it applies, at most
}

var historyRuns = []historyRun{
	{"empty", dataSchema},
	{"rows", dataRows},
	{"large", dataLarge},
}

type historyFile struct {
	name string
	path string // absolute
	sql  string
	mode historyMode
	data historyData
}

func (f historyFile) appliesIn(r historyRun) bool { return f.data <= r.data }

type historyProject struct {
	name  string
	files []historyFile
}

// loadHistories reads the corpus; a malformed one fails the test.
func loadHistories(t testing.TB) []historyProject {
	t.Helper()
	dirs, err := os.ReadDir(historyDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []historyProject
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		out = append(out, loadHistory(t, filepath.Join(historyDir, d.Name())))
	}
	if len(out) == 0 {
		t.Fatalf("no projects under %s", historyDir)
	}
	return out
}

func loadHistory(t testing.TB, dir string) historyProject {
	t.Helper()
	p := historyProject{name: filepath.Base(dir)}
	raw, err := os.ReadFile(filepath.Join(dir, "runner"))
	if err != nil {
		t.Fatalf("project %s: %v", p.name, err)
	}
	mode, ok := parseHistoryMode(strings.TrimSpace(string(raw)))
	if !ok {
		t.Fatalf("project %s: runner %q is not whole-file, transaction or statements", p.name, raw)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") || strings.HasSuffix(name, ".down.sql") {
			continue
		}
		path, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f := historyFile{name: name, path: path, sql: string(text), mode: mode}
		switch {
		case strings.HasSuffix(name, ".data.sql"):
			f.data = dataRows
		case strings.HasSuffix(name, ".large.sql"):
			f.data = dataLarge
		}
		first, _, _ := strings.Cut(f.sql, "\n")
		if m, found := strings.CutPrefix(strings.TrimSpace(first), "-- runner:"); found {
			if f.mode, ok = parseHistoryMode(strings.TrimSpace(m)); !ok {
				t.Fatalf("%s/%s: first line %q names no runner mode", p.name, name, first)
			}
		}
		p.files = append(p.files, f)
	}
	slices.SortFunc(p.files, func(a, b historyFile) int { return strings.Compare(a.name, b.name) })
	return p
}

func parseHistoryMode(s string) (historyMode, bool) {
	switch m := historyMode(s); m {
	case wholeFile, inTransaction, eachStatement:
		return m, true
	}
	return "", false
}
