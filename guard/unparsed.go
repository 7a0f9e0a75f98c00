package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// unparsedLocks is what the guard can still say about the locks of a
// statement its parser cannot read (a newer server's syntax, such as
// PostgreSQL 18's ADD CONSTRAINT ... NOT NULL col NOT VALID): for ALTER
// TABLE, ALTER INDEX, ALTER MATERIALIZED VIEW and ALTER FOREIGN TABLE, read
// with the lexer (which knows the newer syntax's tokens), the relation it
// names, at ACCESS EXCLUSIVE (the strongest: the blocker check then looks
// for every session on it). nil for anything else.
func unparsedLocks(text string) []Lock {
	scan, err := pg_query.Scan(text)
	if err != nil {
		return nil
	}
	toks := scan.Tokens
	at := func(i int, t pg_query.Token) bool { return i < len(toks) && toks[i].Token == t }
	i := 0
	if !at(i, pg_query.Token_ALTER) {
		return nil
	}
	i++
	switch {
	case at(i, pg_query.Token_TABLE), at(i, pg_query.Token_INDEX):
		i++
	case at(i, pg_query.Token_MATERIALIZED) && at(i+1, pg_query.Token_VIEW),
		at(i, pg_query.Token_FOREIGN) && at(i+1, pg_query.Token_TABLE):
		i += 2
	default:
		return nil
	}
	if at(i, pg_query.Token_IF_P) && at(i+1, pg_query.Token_EXISTS) {
		i += 2
	}
	if at(i, pg_query.Token_ONLY) {
		i++
	}
	var parts []string
	for {
		if i >= len(toks) {
			return nil
		}
		name, ok := identifier(text, toks[i], len(parts) > 0)
		if !ok {
			return nil
		}
		parts = append(parts, name)
		i++
		if !at(i, pg_query.Token_ASCII_46) || len(parts) == 3 {
			break
		}
		i++
	}
	if len(parts) == 3 {
		parts = parts[1:] // database.schema.relation
	}
	return []Lock{{Relation: strings.Join(parts, "."), Mode: AccessExclusive}}
}

// identifier reads a name token: a quoted identifier as written, an
// unquoted one (or a keyword PostgreSQL lets stand for a name; after a
// dot, any keyword) folded to lower case.
func identifier(text string, t *pg_query.ScanToken, qualified bool) (string, bool) {
	word := text[t.Start:t.End]
	switch {
	case t.Token == pg_query.Token_IDENT && strings.HasPrefix(word, `"`):
		if len(word) < 2 || !strings.HasSuffix(word, `"`) {
			return "", false
		}
		return strings.ReplaceAll(word[1:len(word)-1], `""`, `"`), true
	case t.Token == pg_query.Token_IDENT,
		t.KeywordKind == pg_query.KeywordKind_UNRESERVED_KEYWORD, t.KeywordKind == pg_query.KeywordKind_COL_NAME_KEYWORD,
		qualified && t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD:
		if strings.HasPrefix(word, `U&"`) || strings.HasPrefix(word, `u&"`) {
			return "", false
		}
		return asciiLower(word), true
	}
	return "", false
}

// asciiLower folds ASCII letters to lower case, as PostgreSQL folds an
// unquoted identifier.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
