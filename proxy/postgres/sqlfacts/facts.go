package sqlfacts

import (
	"reflect"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// facts are what one statement's parse tree says about it. They are built
// from the shape of the tree and never from a literal's value (a walker
// that would need one sets literalSensitive), which is what lets the
// normalized cache hand them to another input with the same shape.
type facts struct {
	command, kind               string
	commands, tables, functions []string
	hasWhere                    bool
}

// factsOf computes the facts of one top-level statement. toks are the
// statement's own tokens, used only to tell where a COPY goes.
func factsOf(stmt *pg_query.Node, toks []token) (f facts, literalSensitive bool) {
	root := nodeMessage(stmt)
	if root == nil {
		return facts{command: CommandOther, kind: KindOther, tables: []string{}, functions: []string{}}, false
	}
	command, kind, ok := commandOf(root, copyTargetOf(toks))
	if !ok {
		command, kind = CommandOther, KindOther
	}
	w := walker{root: root, kind: kind}
	w.commands.add(command)
	w.walk(root.ProtoReflect())
	where := hasWhere(root)
	if w.modifies {
		where = !w.unbounded
	}
	return facts{
		command:   command,
		kind:      w.kind,
		commands:  w.commands.list(),
		tables:    w.tables.list(),
		functions: w.functions.list(),
		hasWhere:  where,
	}, w.literalSensitive
}

// nodeMessage unwraps a Node (a oneof over every node type) into the node
// it holds, or nil. Every oneof wrapper is a struct with the node as its only
// field; reading it with reflect is several times cheaper than through
// protoreflect, and this runs for every node of every tree.
func nodeMessage(n *pg_query.Node) proto.Message {
	if n == nil || n.Node == nil {
		return nil
	}
	v := reflect.ValueOf(n.Node)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	if v = v.Elem(); v.Kind() != reflect.Struct || v.NumField() != 1 {
		return nil
	}
	if f := v.Field(0); f.Kind() != reflect.Pointer || f.IsNil() {
		return nil
	}
	m, _ := v.Field(0).Interface().(proto.Message)
	return m
}

// hasWhere reports a WHERE on the top level of a SELECT, UPDATE or DELETE
// (WHERE CURRENT OF included); EXPLAIN and PREPARE report their statement's.
// It is the answer for a statement that runs no UPDATE or DELETE: when one
// runs anywhere in the statement, the walker's answer replaces it.
func hasWhere(m proto.Message) bool {
	switch n := m.(type) {
	case *pg_query.SelectStmt:
		return n.WhereClause != nil
	case *pg_query.UpdateStmt:
		return n.WhereClause != nil
	case *pg_query.DeleteStmt:
		return n.WhereClause != nil
	case *pg_query.ExplainStmt:
		return hasWhere(nodeMessage(n.Query))
	case *pg_query.PrepareStmt:
		return hasWhere(nodeMessage(n.Query))
	}
	return false
}

// walker visits every node of a statement's tree in a fixed order, collecting
// relations and function calls and escalating the statement's kind, and
// listing the commands, of the statements nested in it.
type walker struct {
	root      proto.Message
	kind      string
	commands  nameSet
	tables    nameSet
	functions nameSet
	// scope holds the CTE names visible at the current point.
	scope *cteScope
	// quiet counts enclosing EXPLAINs without ANALYZE: the statements under
	// them are planned, not run, so they do not escalate the kind.
	quiet int
	// modifies is set when an UPDATE or DELETE runs somewhere in the
	// statement, unbounded when one of them has no WHERE.
	modifies, unbounded bool
	literalSensitive    bool
}

// nested records a statement inside the root one: it escalates the kind
// and is listed among the commands, unless it is only planned.
func (w *walker) nested(command, kind string) {
	if w.quiet == 0 {
		w.kind = higherKind(w.kind, kind)
		w.commands.add(command)
	}
}

// modification records an UPDATE or DELETE, unless it is only planned.
func (w *walker) modification(hasWhere bool) {
	if w.quiet > 0 {
		return
	}
	w.modifies = true
	w.unbounded = w.unbounded || !hasWhere
}

func (w *walker) escalate(kind string) {
	if w.quiet == 0 {
		w.kind = higherKind(w.kind, kind)
	}
}

func (w *walker) walk(m protoreflect.Message) {
	msg := m.Interface()
	if n, ok := msg.(*pg_query.Node); ok {
		if inner := nodeMessage(n); inner != nil {
			w.walk(inner.ProtoReflect())
		}
		return
	}
	if msg != w.root {
		if command, kind, ok := commandOf(msg, copyUnknown); ok {
			w.nested(command, kind)
		}
	}
	switch n := msg.(type) {
	case *pg_query.RangeVar:
		if !w.scope.hides(n) {
			w.tables.add(rangeVarName(n))
		}
		return
	case *pg_query.FuncCall:
		name := joinNames(n.Funcname)
		w.functions.add(name)
		if isSetConfig(name) {
			w.setConfig(n)
		}
	case *pg_query.LockingClause:
		return // FOR UPDATE OF names FROM items, which are visited already
	case *pg_query.MergeWhenClause:
		// A MERGE action is a command of its own. Its AND condition is its
		// WHERE; the ON condition is not, since ON true matches every row.
		switch n.CommandType {
		case pg_query.CmdType_CMD_UPDATE:
			w.nested("UPDATE", KindWrite)
			w.modification(n.Condition != nil)
		case pg_query.CmdType_CMD_DELETE:
			w.nested("DELETE", KindWrite)
			w.modification(n.Condition != nil)
		case pg_query.CmdType_CMD_INSERT:
			w.nested("INSERT", KindWrite)
		}
	case *pg_query.SelectStmt:
		defer w.enterWith(n.WithClause)()
		if n.IntoClause != nil {
			w.addTarget(n.IntoClause.Rel)
		}
		w.walkFields(m, "with_clause", "into_clause")
		return
	case *pg_query.InsertStmt:
		defer w.enterWith(n.WithClause)()
		w.addTarget(n.Relation)
		w.walkFields(m, "with_clause", "relation")
		return
	case *pg_query.UpdateStmt:
		w.modification(n.WhereClause != nil)
		if n.Relation != nil && isPgSettings(rangeVarName(n.Relation)) {
			// The view's rule turns the UPDATE into set_config() calls,
			// with any setting's name: the role's too.
			w.functions.add("pg_catalog.set_config")
			w.escalate(KindDCL)
		}
		defer w.enterWith(n.WithClause)()
		w.addTarget(n.Relation)
		w.walkFields(m, "with_clause", "relation")
		return
	case *pg_query.DeleteStmt:
		w.modification(n.WhereClause != nil)
		defer w.enterWith(n.WithClause)()
		w.addTarget(n.Relation)
		w.walkFields(m, "with_clause", "relation")
		return
	case *pg_query.MergeStmt:
		defer w.enterWith(n.WithClause)()
		w.addTarget(n.Relation)
		w.walkFields(m, "with_clause", "relation")
		return
	case *pg_query.ExplainStmt:
		analyze, sensitive := explainAnalyzes(n)
		w.literalSensitive = w.literalSensitive || sensitive
		if !analyze {
			w.quiet++
			defer func() { w.quiet-- }()
		}
	case *pg_query.AlterTableCmd:
		switch n.Subtype {
		case pg_query.AlterTableType_AT_ChangeOwner,
			pg_query.AlterTableType_AT_EnableRowSecurity, pg_query.AlterTableType_AT_DisableRowSecurity,
			pg_query.AlterTableType_AT_ForceRowSecurity, pg_query.AlterTableType_AT_NoForceRowSecurity:
			w.escalate(KindDCL) // who may see or change the rows
		}
	case *pg_query.CreateFunctionStmt:
		for _, o := range n.Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "language" {
				w.literalSensitive = true // LANGUAGE 'c' is a string constant
			}
		}
	case *pg_query.RenameStmt:
		w.walkFields(m)
		if n.Relation != nil && isRelationType(n.RenameType) {
			// The relation's new name is a relation now.
			w.tables.add(rangeVarName(&pg_query.RangeVar{Schemaname: n.Relation.Schemaname, Relname: n.Newname}))
		}
		return
	case *pg_query.AlterObjectSchemaStmt:
		w.walkFields(m)
		if n.Relation != nil && isRelationType(n.ObjectType) {
			w.tables.add(rangeVarName(&pg_query.RangeVar{Schemaname: n.Newschema, Relname: n.Relation.Relname}))
		}
		return
	case *pg_query.DefElem:
		// OWNED BY table.column of CREATE or ALTER SEQUENCE (OWNED BY NONE
		// is one name).
		if n.Defname == "owned_by" {
			if names, ok := stringList(n.Arg); ok && len(names) > 1 {
				w.tables.add(qualifiedName(names[:len(names)-1]))
			}
		}
	case *pg_query.AlterExtensionContentsStmt:
		w.addObjects(n.Objtype, n.Object)
	case *pg_query.DropStmt:
		w.addObjects(n.RemoveType, n.Objects...)
	case *pg_query.CommentStmt:
		w.addObjects(n.Objtype, n.Object)
	case *pg_query.SecLabelStmt:
		w.addObjects(n.Objtype, n.Object)
	}
	w.walkFields(m)
}

// setConfig escalates a set_config() call that sets the role or the
// session authorization to dcl, and one whose setting's name is not a
// constant too, since it may be either. The kind then depends on a
// literal's value, so the statement is literal-sensitive.
func (w *walker) setConfig(n *pg_query.FuncCall) {
	if len(n.Args) == 0 {
		return // no such function: PostgreSQL refuses the call
	}
	c, ok := nodeMessage(n.Args[0]).(*pg_query.A_Const)
	if !ok || c.GetSval() == nil {
		w.escalate(KindDCL)
		return
	}
	w.literalSensitive = true
	if isRoleSetting(c.GetSval().Sval) {
		w.escalate(KindDCL)
	}
}

// walkFields visits the message-valued fields of m in declaration order,
// except those named in skip.
func (w *walker) walkFields(m protoreflect.Message, skip ...protoreflect.Name) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || !m.Has(fd) || skipped(fd.Name(), skip) {
			continue
		}
		if fd.IsList() {
			l := m.Get(fd).List()
			for j := 0; j < l.Len(); j++ {
				w.walk(l.Get(j).Message())
			}
			continue
		}
		w.walk(m.Get(fd).Message())
	}
}

func skipped(name protoreflect.Name, skip []protoreflect.Name) bool {
	for _, s := range skip {
		if name == s {
			return true
		}
	}
	return false
}

// addTarget records the target of INSERT, UPDATE, DELETE, MERGE or SELECT
// INTO. A CTE never hides a target: PostgreSQL resolves it to a relation
// even when a CTE has the same name.
func (w *walker) addTarget(rv *pg_query.RangeVar) {
	if rv != nil {
		w.tables.add(rangeVarName(rv))
	}
}

// addObjects records the relations that DROP, COMMENT ON and SECURITY LABEL
// name as lists of identifiers rather than as RangeVars.
func (w *walker) addObjects(t pg_query.ObjectType, objects ...*pg_query.Node) {
	for _, o := range objects {
		names, ok := stringList(o)
		if !ok || len(names) == 0 {
			continue
		}
		switch {
		case isRelationType(t):
			w.tables.add(qualifiedName(names))
		case t == pg_query.ObjectType_OBJECT_COLUMN, t == pg_query.ObjectType_OBJECT_TRIGGER,
			t == pg_query.ObjectType_OBJECT_RULE, t == pg_query.ObjectType_OBJECT_POLICY,
			t == pg_query.ObjectType_OBJECT_TABCONSTRAINT:
			// The last name is the column, trigger, rule, policy or
			// constraint; the ones before it name its relation.
			if len(names) > 1 {
				w.tables.add(qualifiedName(names[:len(names)-1]))
			}
		}
	}
}

// isRelationType reports an object type that is a relation.
func isRelationType(t pg_query.ObjectType) bool {
	switch t {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW,
		pg_query.ObjectType_OBJECT_MATVIEW, pg_query.ObjectType_OBJECT_FOREIGN_TABLE,
		pg_query.ObjectType_OBJECT_SEQUENCE, pg_query.ObjectType_OBJECT_INDEX:
		return true
	}
	return false
}

// enterWith makes the CTEs of a WITH clause visible, visiting their bodies
// with the scope PostgreSQL gives them: without RECURSIVE a CTE sees only
// the ones before it (a reference to itself or a later one is a relation);
// with RECURSIVE every CTE of the clause sees all of them. It returns the
// function that restores the outer scope.
func (w *walker) enterWith(wc *pg_query.WithClause) func() {
	outer := w.scope
	if wc == nil {
		return func() {}
	}
	if wc.Recursive {
		for _, c := range wc.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				w.scope = &cteScope{name: cte.Ctename, outer: w.scope}
			}
		}
		for _, c := range wc.Ctes {
			w.walk(c.ProtoReflect())
		}
	} else {
		for _, c := range wc.Ctes {
			w.walk(c.ProtoReflect())
			if cte := c.GetCommonTableExpr(); cte != nil {
				w.scope = &cteScope{name: cte.Ctename, outer: w.scope}
			}
		}
	}
	return func() { w.scope = outer }
}

// explainAnalyzes reports whether an EXPLAIN runs its statement, judged the
// way PostgreSQL's defGetBoolean reads the ANALYZE option: no value, true,
// on or 1 is true; false, off or 0 is false; anything else is an error in
// PostgreSQL and counts as true here. sensitive is true when a value was
// written, because then the answer depends on a literal.
func explainAnalyzes(n *pg_query.ExplainStmt) (analyze, sensitive bool) {
	for _, o := range n.Options {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		if d.Arg == nil {
			analyze = true
			continue
		}
		sensitive = true
		switch v := nodeMessage(d.Arg).(type) {
		case *pg_query.String:
			switch strings.ToLower(v.Sval) {
			case "false", "off":
				continue
			}
		case *pg_query.Integer:
			if v.Ival == 0 {
				continue
			}
		}
		analyze = true
	}
	return analyze, sensitive
}

// cteScope is a linked list of the CTE names visible at a point.
type cteScope struct {
	name  string
	outer *cteScope
}

// hides reports whether rv names a visible CTE rather than a relation: only
// an unqualified name can.
func (s *cteScope) hides(rv *pg_query.RangeVar) bool {
	if rv.Schemaname != "" || rv.Catalogname != "" {
		return false
	}
	for ; s != nil; s = s.outer {
		if s.name == rv.Relname {
			return true
		}
	}
	return false
}

// rangeVarName is a relation's name as written, schema and relation joined
// with a dot, without the catalog (database) part: PostgreSQL accepts only
// the current database there, so db.public.customers is public.customers.
// The parser has already lower-cased unquoted identifiers and kept quoted
// ones as they are.
func rangeVarName(rv *pg_query.RangeVar) string {
	if rv.Schemaname == "" {
		return rv.Relname
	}
	return rv.Schemaname + "." + rv.Relname
}

// joinNames names a function given as a list of String nodes, like
// qualifiedName.
func joinNames(names []*pg_query.Node) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		if s := n.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	return qualifiedName(parts)
}

// qualifiedName joins the last two parts of a qualified name, schema and
// name, with a dot. A part before them is the catalog (database), which
// PostgreSQL accepts only as the current database, and is left out, so
// that db.pg_catalog.set_config reads as pg_catalog.set_config.
func qualifiedName(parts []string) string {
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, ".")
}

// stringList reads a List node of String nodes.
func stringList(n *pg_query.Node) ([]string, bool) {
	l := n.GetList()
	if l == nil {
		return nil, false
	}
	out := make([]string, 0, len(l.Items))
	for _, it := range l.Items {
		s := it.GetString_()
		if s == nil {
			return nil, false
		}
		out = append(out, s.Sval)
	}
	return out, true
}

// nameSet keeps names in first-seen order without repeats.
type nameSet struct {
	names []string
	seen  map[string]struct{}
}

func (s *nameSet) add(name string) {
	if name == "" {
		return
	}
	if s.seen == nil {
		s.seen = make(map[string]struct{})
	}
	if _, ok := s.seen[name]; ok {
		return
	}
	s.seen[name] = struct{}{}
	s.names = append(s.names, name)
}

// list returns the names, never nil.
func (s *nameSet) list() []string {
	if s.names == nil {
		return []string{}
	}
	return s.names
}
