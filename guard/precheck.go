package guard

import "strings"

// MightBeGuarded reports whether sql may contain a statement the guard must
// parse: one whose first keyword could start DDL or another lock-taking or
// transaction-affecting utility statement. False means: certainly only
// plain DML/queries, no parse needed.
//
// It is the cheap lexical pre-check the proxy runs on every statement it
// relays, before any parse: no allocation, one left-to-right pass that stops
// only at bytes that can change the lexical state (' " $ - / ;). The whole
// string is scanned: it is split into statements at every ';' outside
// quotes and comments, and the first keyword of each statement is compared
// ASCII case-insensitively, after whitespace, -- and nested /* */ comments
// and any opening parentheses.
//
// A statement is plain, and leaves the result false, when its first keyword
// is one of
//
//	SELECT INSERT UPDATE DELETE MERGE  queries and DML: row locks and at most
//	VALUES TABLE WITH                  ROW EXCLUSIVE, nothing the guard rules
//	                                   on (SELECT ... INTO stays plain too)
//	COPY                               DML-like bulk load and unload
//	SHOW                               reads a setting
//	DECLARE FETCH MOVE CLOSE           cursors over queries
//	LISTEN NOTIFY UNLISTEN             asynchronous notifications
//	EXPLAIN                            plain unless a later word of the same
//	                                   statement is CREATE or EXECUTE: EXPLAIN
//	                                   wraps only queries, DML, DECLARE,
//	                                   EXECUTE and CREATE TABLE AS / CREATE
//	                                   MATERIALIZED VIEW, and the last two are
//	                                   guarded (a column named execute costs a
//	                                   needless parse)
//
// Every other first keyword makes the result true. That is on purpose an
// allow-list: a statement type the list does not know, or one that does not
// start with a keyword at all (a syntax error the server will report), is
// left to the real parser. The keywords the guard needs to see, and why:
//
//	ALTER CREATE DROP TRUNCATE         DDL: ACCESS EXCLUSIVE and other strong
//	COMMENT                            locks, table rewrites, index builds
//	VACUUM ANALYZE ANALYSE CLUSTER     maintenance: SHARE UPDATE EXCLUSIVE up
//	REINDEX REFRESH CHECKPOINT         to ACCESS EXCLUSIVE, long-running
//	LOCK                               explicit table locks
//	GRANT REVOKE REASSIGN SECURITY     catalog changes that lock the objects
//	IMPORT                             they touch
//	BEGIN START COMMIT END ROLLBACK    transaction control: locks are held to
//	ABORT SAVEPOINT RELEASE PREPARE    the end of the transaction, so the
//	                                   guard tracks transaction state
//	                                   (PREPARE TRANSACTION too)
//	PREPARE EXECUTE DEALLOCATE         prepared statements: the guard must see
//	                                   the text behind a name
//	SET RESET DISCARD                  session state: the guard tracks
//	                                   lock_timeout, statement_timeout and
//	                                   TimeZone (SET LOCAL ends with the
//	                                   transaction)
//	DO CALL LOAD                       run arbitrary server-side code
//
// Lexically it follows PostgreSQL's scanner: '...' strings (a doubled quote
// is a quote), E'...' strings with backslash escapes and their continuation
// across a newline, U&'...', B'...', X'...' and N'...' strings, "..."
// identifiers (a doubled quote is a quote), $$...$$ and $tag$...$tag$ dollar
// quotes (a tag follows identifier rules and cannot start with a digit, so
// $1 is a parameter, and a '$' inside an identifier such as a$b starts
// nothing), -- comments to the end of the line and nested /* */ comments. A
// ';' inside any of these does not end a statement. When sql ends inside a
// string, quoted identifier, dollar quote or block comment the answer is
// true: the server will report the error, and DDL is never missed behind a
// quote the server reads differently.
//
// Two more cases are conservatively true because the server's reading
// depends on settings the pre-check cannot see: a backslash right before a
// quote in a plain '...' string (with standard_conforming_strings off it
// escapes the quote and the string ends elsewhere), and a backslash right
// after a non-ASCII byte in an E'...' string (in client encodings such as
// SJIS or GBK the second byte of a character can be 0x5C, which the server,
// decoding the character, does not read as a backslash).
//
// To stay fast the scanner decides whether a quote starts an E'...' string,
// and whether a '$' can open a dollar quote, by looking at the one or two
// bytes before it instead of tracking every token. That reading differs
// from the server's only when a string, dollar quote or parameter directly
// touches a number, parameter or another dollar quote (1$$...$$,
// $$a$$E'...'): a syntax error, so the server rejects the whole query
// string before running any of it.
func MightBeGuarded(sql string) bool {
	s := sql
	i := 0
	for i < len(s) {
		i = skipStatementPrefix(s, i)
		if i < 0 {
			return true // unterminated block comment
		}
		if i >= len(s) {
			return false
		}
		if s[i] == ';' {
			i++ // empty statement
			continue
		}
		j := i
		for j < len(s) && byteClass[s[j]]&clsIdent != 0 {
			j++
		}
		var mask uint8
		switch classifyFirstWord(s[i:j]) {
		case firstPlain:
			mask = clsSpecial
		case firstExplain:
			mask = clsSpecial | clsLetter
		default:
			return true
		}
		if i = skipStatementRest(s, j, mask); i < 0 {
			return true
		}
	}
	return false
}

// Byte classes for the pre-check's lexer.
const (
	// clsIdent: may continue an unquoted identifier or keyword
	// (PostgreSQL's ident_cont: A-Z a-z 0-9 _ $ and every byte >= 0x80).
	clsIdent uint8 = 1 << iota
	// clsLetter: an ASCII letter, the only start of a keyword.
	clsLetter
	// clsTagStart: may start a dollar-quote tag (A-Z a-z _ >= 0x80).
	clsTagStart
	// clsTagCont: may continue a dollar-quote tag (clsTagStart and 0-9).
	clsTagCont
	// clsSpecial: may change the lexical state outside quotes.
	clsSpecial
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			t[c] = clsIdent | clsLetter | clsTagStart | clsTagCont
		case c == '_', c >= 0x80:
			t[c] = clsIdent | clsTagStart | clsTagCont
		case '0' <= c && c <= '9':
			t[c] = clsIdent | clsTagCont
		}
	}
	t['$'] = clsIdent | clsSpecial
	for _, c := range []byte{'\'', '"', '-', '/', ';'} {
		t[c] = clsSpecial
	}
	return t
}()

// First-word classes.
const (
	firstGuarded = iota // anything not known to be plain
	firstPlain          // a query or DML: the rest of the statement is skipped
	firstExplain        // EXPLAIN: plain unless the statement says CREATE or EXECUTE
)

// classifyFirstWord classifies the first word of a statement (an unquoted
// identifier run, possibly empty when the statement starts with something
// else).
func classifyFirstWord(w string) int {
	if len(w) < 4 || len(w) > 8 {
		return firstGuarded
	}
	var kw string
	switch len(w) {
	case 4:
		switch w[0] | 0x20 {
		case 'w':
			kw = "with"
		case 's':
			kw = "show"
		case 'c':
			kw = "copy"
		case 'm':
			kw = "move"
		}
	case 5:
		switch w[0] | 0x20 {
		case 't':
			kw = "table"
		case 'm':
			kw = "merge"
		case 'f':
			kw = "fetch"
		case 'c':
			kw = "close"
		}
	case 6:
		switch w[0] | 0x20 {
		case 's':
			kw = "select"
		case 'i':
			kw = "insert"
		case 'u':
			kw = "update"
		case 'd':
			kw = "delete"
		case 'v':
			kw = "values"
		case 'l':
			kw = "listen"
		case 'n':
			kw = "notify"
		}
	case 7:
		switch w[0] | 0x20 {
		case 'e':
			if equalFoldLower(w, "explain") {
				return firstExplain
			}
		case 'd':
			kw = "declare"
		}
	case 8:
		kw = "unlisten"
	}
	if kw != "" && equalFoldLower(w, kw) {
		return firstPlain
	}
	return firstGuarded
}

// equalFoldLower reports whether w equals lower, a lower-case ASCII keyword,
// ignoring ASCII case. Only ASCII letters fold onto letters under |0x20, so
// digits, '_', '$' and non-ASCII bytes in w never match.
func equalFoldLower(w, lower string) bool {
	if len(w) != len(lower) {
		return false
	}
	for i := 0; i < len(w); i++ {
		if w[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// skipStatementPrefix skips whitespace, comments and opening parentheses
// from i. It returns the index of the first other byte (len(s) at the end),
// or -1 inside an unterminated block comment.
func skipStatementPrefix(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '\f', '\v', '(':
			i++
		case '-':
			if i+1 >= len(s) || s[i+1] != '-' {
				return i
			}
			i = skipLineComment(s, i+2)
		case '/':
			if i+1 >= len(s) || s[i+1] != '*' {
				return i
			}
			if i = skipBlockComment(s, i+2); i < 0 {
				return -1
			}
		default:
			return i
		}
	}
	return i
}

// skipStatementRest scans from i to the end of the statement. It returns
// the index just past the terminating ';' (len(s) when the string ends), or
// -1 when the result must be true: the string ends inside a quote or block
// comment, a conservative case applies, or (with clsLetter in mask, for
// EXPLAIN) a word CREATE or EXECUTE appears.
func skipStatementRest(s string, i int, mask uint8) int {
	for {
		// Fast path: skip bytes that cannot change the state, eight at a
		// time (one bounds check, one branch), then byte by byte up to the
		// interesting one.
		for i+8 <= len(s) {
			b := s[i : i+8]
			if (byteClass[b[0]]|byteClass[b[1]]|byteClass[b[2]]|byteClass[b[3]]|
				byteClass[b[4]]|byteClass[b[5]]|byteClass[b[6]]|byteClass[b[7]])&mask != 0 {
				break
			}
			i += 8
		}
		for i < len(s) && byteClass[s[i]]&mask == 0 {
			i++
		}
		if i >= len(s) {
			return i
		}
		switch c := s[i]; c {
		case ';':
			return i + 1
		case '\'':
			i = skipString(s, i)
		case '"':
			i = skipQuotedIdent(s, i+1)
		case '$':
			i = skipDollar(s, i)
		case '-':
			if i+1 < len(s) && s[i+1] == '-' {
				i = skipLineComment(s, i+2)
			} else {
				i++
			}
		case '/':
			if i+1 < len(s) && s[i+1] == '*' {
				i = skipBlockComment(s, i+2)
			} else {
				i++
			}
		default: // an ASCII letter; only when EXPLAIN asked for words
			if i > 0 && byteClass[s[i-1]]&clsIdent != 0 {
				i++ // inside an identifier or number
				continue
			}
			j := i + 1
			for j < len(s) && byteClass[s[j]]&clsIdent != 0 {
				j++
			}
			if w := s[i:j]; equalFoldLower(w, "create") || equalFoldLower(w, "execute") {
				return -1
			}
			i = j
		}
		if i < 0 {
			return -1
		}
	}
}

// skipLineComment returns the index after the newline ending a -- comment
// whose text starts at i (len(s) when the comment runs to the end). Like
// PostgreSQL, both \n and \r end it.
func skipLineComment(s string, i int) int {
	rest := s[i:]
	n := strings.IndexByte(rest, '\n')
	if n >= 0 {
		rest = rest[:n]
	}
	if r := strings.IndexByte(rest, '\r'); r >= 0 {
		return i + r + 1
	}
	if n < 0 {
		return len(s)
	}
	return i + n + 1
}

// skipBlockComment returns the index after the */ closing a block comment
// whose text starts at i, counting nested /* */ pairs as PostgreSQL does, or
// -1 when it is unterminated.
func skipBlockComment(s string, i int) int {
	depth := 1
	for i+1 < len(s) {
		switch s[i] {
		case '*':
			if s[i+1] == '/' {
				i += 2
				if depth--; depth == 0 {
					return i
				}
				continue
			}
		case '/':
			if s[i+1] == '*' {
				i += 2
				depth++
				continue
			}
		}
		i++
	}
	return -1
}

// skipString skips the string literal whose opening quote is s[i], returning
// the index after it or -1 (unterminated or conservative). It is an E'...'
// string when the quote follows an E that starts a token: one not preceded
// by an identifier byte (xe'...' is the identifier xe and a plain string).
// The U&, B, X and N prefixes need no special case: their strings end where
// a plain string would.
func skipString(s string, i int) int {
	if i > 0 && s[i-1]|0x20 == 'e' && (i == 1 || byteClass[s[i-2]]&clsIdent == 0) {
		return skipEString(s, i+1)
	}
	return skipPlainString(s, i+1)
}

// skipPlainString skips a standard-conforming string from i (just after the
// opening quote): a doubled quote is a quote, a backslash is an ordinary character.
// When a backslash precedes a quote it returns -1: with
// standard_conforming_strings off the server would read \' as an escaped
// quote and end the string somewhere else.
func skipPlainString(s string, i int) int {
	for {
		q := indexByteFrom(s, i, '\'')
		if q < 0 {
			return -1
		}
		if s[q-1] == '\\' {
			return -1
		}
		if q+1 < len(s) && s[q+1] == '\'' {
			i = q + 2
			continue
		}
		return q + 1
	}
}

// indexByteFrom returns the index of the first c in s at or after i, or -1.
// Literals are mostly short: a plain loop over the first bytes beats the
// setup cost of the vectorized strings.IndexByte, which takes over for
// long ones.
func indexByteFrom(s string, i int, c byte) int {
	end := min(i+16, len(s))
	for k := i; k < end; k++ {
		if s[k] == c {
			return k
		}
	}
	if k := strings.IndexByte(s[end:], c); k >= 0 {
		return end + k
	}
	return -1
}

// skipEString skips an E'...' string from i (just after the opening quote):
// a backslash escapes the next byte and a doubled quote is a quote. A quote
// followed by
// whitespace that includes a newline and then another quote continues
// the same string (SQL string continuation), still with backslash escapes.
func skipEString(s string, i int) int {
	for {
		for i < len(s) {
			c := s[i]
			if c == '\\' {
				if s[i-1] >= 0x80 {
					return -1 // maybe the second byte of a multi-byte character
				}
				i += 2
				continue
			}
			if c == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i += 2
					continue
				}
				break
			}
			i++
		}
		if i >= len(s) {
			return -1
		}
		next, ok := stringContinues(s, i+1)
		if !ok {
			return i + 1
		}
		i = next
	}
}

// stringContinues reports whether the string literal that just ended before
// i continues: whitespace and -- comments including at least one newline,
// then a quote. It returns the index after that quote.
func stringContinues(s string, i int) (int, bool) {
	newline := false
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\f', '\v':
			i++
		case '\n', '\r':
			newline = true
			i++
		case '-':
			if i+1 >= len(s) || s[i+1] != '-' {
				return 0, false
			}
			i = skipLineComment(s, i+2)
			if s[i-1] == '\n' || s[i-1] == '\r' {
				newline = true
			}
		case '\'':
			return i + 1, newline
		default:
			return 0, false
		}
	}
	return 0, false
}

// skipQuotedIdent skips a "..." identifier from i (just after the opening
// quote): "" is a quote. It returns -1 when it is unterminated.
func skipQuotedIdent(s string, i int) int {
	for {
		q := indexByteFrom(s, i, '"')
		if q < 0 {
			return -1
		}
		if q+1 < len(s) && s[q+1] == '"' {
			i = q + 2
			continue
		}
		return q + 1
	}
}

// skipDollar handles the '$' at s[i] outside quotes. Inside an identifier
// (a$b, x$$) it is an identifier byte; $1 is a parameter; $$ and $tag$ open
// a dollar-quoted string that ends at the next identical delimiter (tags are
// case-sensitive and cannot start with a digit). It returns the index after
// the construct, or -1 when the dollar quote is unterminated.
func skipDollar(s string, i int) int {
	if i > 0 && byteClass[s[i-1]]&clsIdent != 0 {
		return i + 1
	}
	j := i + 1
	if j < len(s) && byteClass[s[j]]&clsTagStart != 0 {
		j++
		for j < len(s) && byteClass[s[j]]&clsTagCont != 0 {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1 // $1, or a lone '$' the server rejects
	}
	tag := s[i : j+1]
	k := strings.Index(s[j+1:], tag)
	if k < 0 {
		return -1
	}
	return j + 1 + k + len(tag)
}
