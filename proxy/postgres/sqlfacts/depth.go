package sqlfacts

import pg_query "github.com/pganalyze/pg_query_go/v6"

// maxNesting bounds nestingBound for a statement that is handed to the
// parser. libpg_query writes its parse tree out recursively, without a stack
// depth check, and a left-deep chain of some 30,000 levels (SELECT 1+1+...,
// a few hundred KiB) overflows an 8 MiB thread stack and kills the whole
// process. PostgreSQL itself refuses such statements (stack depth limit
// exceeded), and the protobuf decoder gives up at 10,000 nested messages;
// a tree is at most about four messages deep per unit of nestingBound, so
// this limit keeps every accepted statement within what can be decoded, and
// a fair way from the crash even on a smaller stack.
const maxNesting = 2000

// nestingBound returns an upper bound, up to a small constant factor, on the
// depth of the parse tree of the tokens: the largest sum, along any path of
// nested brackets (parentheses, square brackets, CASE ... END), of what each
// level can nest without a bracket.
//
// Nesting that the grammar builds right-recursively (NOT NOT x, -(-x))
// grows the parser's stack, which is limited, and cannot reach the crash.
// What grows unchecked are the left-recursive chains: binary and postfix
// operators (a + b + c, x::t::t, x ISNULL ISNULL), joins and set operations.
// At one bracket level the bound counts
//   - every JOIN, UNION, INTERSECT and EXCEPT, since their chains run on
//     across commas, ON clauses and ORs;
//   - the longest run of operator tokens between two points where an
//     expression must end and a sibling begin: a comma, OR, AND (but not
//     the AND of BETWEEN), WHEN, THEN, ELSE, WHERE, HAVING, ON and a
//     semicolon. AND and OR lists are flat in the tree, as are the
//     elements of a list, so a long WHERE a = 1 OR a = 2 OR ... or a
//     VALUES list of many rows is not deep;
//   - one for the bracket itself.
func nestingBound(toks []token) int {
	type level struct {
		closer     pg_query.Token
		run        int  // operator tokens since the last expression boundary
		longestRun int  // the longest run so far
		chains     int  // JOIN and set operation keywords
		inBetween  bool // the next AND belongs to a BETWEEN
		deepest    int  // the largest bound of a bracket closed inside
	}
	bound := func(l *level) int {
		return 1 + max(l.run, l.longestRun) + l.chains + l.deepest
	}
	endRun := func(l *level) {
		l.longestRun = max(l.longestRun, l.run)
		l.run = 0
		l.inBetween = false
	}
	stack := []level{{}}
	worst := 0
	for _, t := range toks {
		l := &stack[len(stack)-1]
		switch t.kind {
		case pg_query.Token_ASCII_40:
			stack = append(stack, level{closer: pg_query.Token_ASCII_41})
		case pg_query.Token_ASCII_91:
			stack = append(stack, level{closer: pg_query.Token_ASCII_93})
		case pg_query.Token_CASE:
			stack = append(stack, level{closer: pg_query.Token_END_P})
		case pg_query.Token_ASCII_41, pg_query.Token_ASCII_93, pg_query.Token_END_P:
			// A closer that does not match is left to the parser to
			// reject (or, for END, is not a CASE's).
			if len(stack) > 1 && l.closer == t.kind {
				b := bound(l)
				stack = stack[:len(stack)-1]
				parent := &stack[len(stack)-1]
				parent.deepest = max(parent.deepest, b)
			}
		case pg_query.Token_ASCII_59:
			if len(stack) == 1 {
				worst = max(worst, bound(l))
				*l = level{}
			} else {
				endRun(l)
			}
		case pg_query.Token_ASCII_44, pg_query.Token_OR, pg_query.Token_WHEN,
			pg_query.Token_THEN, pg_query.Token_ELSE, pg_query.Token_WHERE,
			pg_query.Token_HAVING, pg_query.Token_ON:
			endRun(l)
		case pg_query.Token_AND:
			if l.inBetween {
				l.inBetween = false
				l.run++
			} else {
				endRun(l)
			}
		case pg_query.Token_BETWEEN:
			l.inBetween = true
			l.run++
		case pg_query.Token_JOIN, pg_query.Token_UNION, pg_query.Token_INTERSECT, pg_query.Token_EXCEPT:
			l.chains++
		case pg_query.Token_Op, pg_query.Token_ASCII_43, pg_query.Token_ASCII_45,
			pg_query.Token_ASCII_42, pg_query.Token_ASCII_47, pg_query.Token_ASCII_37,
			pg_query.Token_ASCII_94, pg_query.Token_ASCII_60, pg_query.Token_ASCII_62,
			pg_query.Token_ASCII_61, pg_query.Token_LESS_EQUALS, pg_query.Token_GREATER_EQUALS,
			pg_query.Token_NOT_EQUALS, pg_query.Token_TYPECAST, pg_query.Token_COLLATE,
			pg_query.Token_AT, pg_query.Token_IS, pg_query.Token_ISNULL, pg_query.Token_NOTNULL,
			pg_query.Token_LIKE, pg_query.Token_ILIKE, pg_query.Token_SIMILAR, pg_query.Token_IN_P,
			pg_query.Token_OVERLAPS, pg_query.Token_OPERATOR, pg_query.Token_NOT:
			l.run++
		}
	}
	for len(stack) > 1 {
		b := bound(&stack[len(stack)-1])
		stack = stack[:len(stack)-1]
		stack[len(stack)-1].deepest = max(stack[len(stack)-1].deepest, b)
	}
	return max(worst, bound(&stack[0]))
}
