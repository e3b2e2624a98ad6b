package sqlfacts

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// The kinds a statement is sorted into.
const (
	KindRead       = "read"
	KindWrite      = "write"
	KindDDL        = "ddl"
	KindDCL        = "dcl"
	KindTCL        = "tcl"
	KindProcedural = "procedural"
	KindSession    = "session"
	KindOther      = "other"
)

// CommandOther is the command of a statement type this package does not
// know.
const CommandOther = "OTHER"

// kindRank orders kinds for escalation: when a statement contains another
// one that does more (a data-modifying CTE in a SELECT, a GRANT inside
// CREATE SCHEMA, the body of PREPARE), the statement's kind is the higher
// of the two.
var kindRank = map[string]int{
	KindRead:       0,
	KindTCL:        1,
	KindSession:    2,
	KindWrite:      3,
	KindDDL:        4,
	KindDCL:        5,
	KindProcedural: 6,
	KindOther:      7,
}

func higherKind(a, b string) string {
	if kindRank[b] > kindRank[a] {
		return b
	}
	return a
}

// commandOf names a statement node and gives its own kind, before anything
// it contains escalates it. ok is false when m is not a statement node.
// target is where a top-level COPY reads or writes, read from its tokens;
// copyUnknown (a COPY nested in another statement) is treated as the
// strictest case.
func commandOf(m proto.Message, target copyTarget) (command, kind string, ok bool) {
	switch n := m.(type) {
	// Queries and DML.
	case *pg_query.SelectStmt:
		kind = KindRead
		if n.IntoClause != nil {
			kind = KindDDL // SELECT ... INTO creates a table
		}
		return selectCommand(n), kind, true
	case *pg_query.InsertStmt:
		return "INSERT", KindWrite, true
	case *pg_query.UpdateStmt:
		return "UPDATE", KindWrite, true
	case *pg_query.DeleteStmt:
		return "DELETE", KindWrite, true
	case *pg_query.MergeStmt:
		return "MERGE", KindWrite, true
	case *pg_query.ReturnStmt: // only inside a BEGIN ATOMIC function body
		return "RETURN", KindRead, true
	case *pg_query.CopyStmt:
		return "COPY", copyKind(n, target), true
	case *pg_query.VariableShowStmt:
		return "SHOW", KindRead, true
	case *pg_query.FetchStmt:
		if n.Ismove {
			return "MOVE", KindRead, true
		}
		return "FETCH", KindRead, true
	case *pg_query.ExplainStmt:
		return "EXPLAIN", KindRead, true // escalated by the walker under ANALYZE

	// Transaction control.
	case *pg_query.TransactionStmt:
		return transactionCommand(n.Kind), KindTCL, true
	case *pg_query.ConstraintsSetStmt:
		return "SET", KindTCL, true
	case *pg_query.VariableSetStmt:
		return variableSetCommand(n)

	// Session state.
	case *pg_query.DiscardStmt:
		return "DISCARD", KindSession, true
	case *pg_query.ListenStmt:
		return "LISTEN", KindSession, true
	case *pg_query.UnlistenStmt:
		return "UNLISTEN", KindSession, true
	case *pg_query.NotifyStmt:
		return "NOTIFY", KindSession, true
	case *pg_query.PrepareStmt:
		return "PREPARE", KindSession, true // escalated by its body
	case *pg_query.ExecuteStmt:
		return "EXECUTE", KindSession, true
	case *pg_query.DeallocateStmt:
		return "DEALLOCATE", KindSession, true
	case *pg_query.DeclareCursorStmt:
		return "DECLARE", KindSession, true // escalated by its query
	case *pg_query.ClosePortalStmt:
		return "CLOSE", KindSession, true
	case *pg_query.LockStmt:
		return "LOCK", KindSession, true

	// Code that runs on the server, or reaches outside the database.
	case *pg_query.DoStmt:
		return "DO", KindProcedural, true
	case *pg_query.CallStmt:
		return "CALL", KindProcedural, true
	case *pg_query.LoadStmt:
		return "LOAD", KindProcedural, true
	case *pg_query.AlterSystemStmt:
		// ALTER SYSTEM can set archive_command, shared_preload_libraries
		// and the like: a way to run programs on the server.
		return "ALTER", KindProcedural, true

	// Privileges, roles, ownership, row security.
	case *pg_query.GrantStmt:
		return grantCommand(n.IsGrant), KindDCL, true
	case *pg_query.GrantRoleStmt:
		return grantCommand(n.IsGrant), KindDCL, true
	case *pg_query.AlterDefaultPrivilegesStmt:
		return "ALTER", KindDCL, true
	case *pg_query.CreateRoleStmt:
		return "CREATE", KindDCL, true
	case *pg_query.AlterRoleStmt:
		return "ALTER", KindDCL, true
	case *pg_query.AlterRoleSetStmt:
		return "ALTER", KindDCL, true
	case *pg_query.DropRoleStmt:
		return "DROP", KindDCL, true
	case *pg_query.SecLabelStmt:
		return "SECURITY LABEL", KindDCL, true
	case *pg_query.ReassignOwnedStmt:
		return "REASSIGN", KindDCL, true
	case *pg_query.DropOwnedStmt:
		return "DROP", KindDCL, true
	case *pg_query.AlterOwnerStmt:
		return "ALTER", KindDCL, true
	case *pg_query.CreatePolicyStmt:
		return "CREATE", KindDCL, true
	case *pg_query.AlterPolicyStmt:
		return "ALTER", KindDCL, true
	case *pg_query.RenameStmt:
		switch n.RenameType {
		case pg_query.ObjectType_OBJECT_ROLE, pg_query.ObjectType_OBJECT_POLICY:
			return "ALTER", KindDCL, true // ALTER ROLE|USER|GROUP|POLICY ... RENAME
		}
		return "ALTER", KindDDL, true

	// Maintenance that takes locks and rewrites, counted with DDL.
	case *pg_query.TruncateStmt:
		return "TRUNCATE", KindDDL, true
	case *pg_query.CommentStmt:
		return "COMMENT", KindDDL, true
	case *pg_query.ReindexStmt:
		return "REINDEX", KindDDL, true
	case *pg_query.ClusterStmt:
		return "CLUSTER", KindDDL, true
	case *pg_query.RefreshMatViewStmt:
		return "REFRESH", KindDDL, true
	case *pg_query.VacuumStmt:
		if n.IsVacuumcmd {
			return "VACUUM", KindDDL, true
		}
		return "ANALYZE", KindDDL, true

	case *pg_query.CheckPointStmt:
		return "CHECKPOINT", KindOther, true

	// DROP.
	case *pg_query.DropStmt:
		if n.RemoveType == pg_query.ObjectType_OBJECT_POLICY {
			return "DROP", KindDCL, true
		}
		return "DROP", KindDDL, true
	case *pg_query.DropTableSpaceStmt, *pg_query.DropUserMappingStmt,
		*pg_query.DropSubscriptionStmt, *pg_query.DropdbStmt:
		return "DROP", KindDDL, true

	// CREATE.
	case *pg_query.CreateFunctionStmt:
		if isCLanguage(n) {
			// The server loads the shared library named in AS when it
			// creates the function, as LOAD would.
			return "CREATE", KindProcedural, true
		}
		return "CREATE", KindDDL, true
	case *pg_query.CreateStmt, *pg_query.CreateSchemaStmt, *pg_query.CreateTableAsStmt,
		*pg_query.ViewStmt, *pg_query.IndexStmt, *pg_query.CreateSeqStmt,
		*pg_query.CreateTrigStmt, *pg_query.CreateEventTrigStmt,
		*pg_query.RuleStmt, *pg_query.CreateDomainStmt, *pg_query.DefineStmt,
		*pg_query.CompositeTypeStmt, *pg_query.CreateEnumStmt, *pg_query.CreateRangeStmt,
		*pg_query.CreateExtensionStmt, *pg_query.CreatePLangStmt, *pg_query.CreateTableSpaceStmt,
		*pg_query.CreateFdwStmt, *pg_query.CreateForeignServerStmt, *pg_query.CreateForeignTableStmt,
		*pg_query.CreateUserMappingStmt, *pg_query.CreateAmStmt, *pg_query.CreateOpClassStmt,
		*pg_query.CreateOpFamilyStmt, *pg_query.CreateStatsStmt, *pg_query.CreatedbStmt,
		*pg_query.CreateConversionStmt, *pg_query.CreateCastStmt, *pg_query.CreateTransformStmt,
		*pg_query.CreatePublicationStmt, *pg_query.CreateSubscriptionStmt:
		return "CREATE", KindDDL, true
	case *pg_query.ImportForeignSchemaStmt:
		return "IMPORT", KindDDL, true

	// ALTER.
	case *pg_query.AlterTableStmt, *pg_query.AlterCollationStmt, *pg_query.AlterDomainStmt,
		*pg_query.AlterTableSpaceOptionsStmt, *pg_query.AlterTableMoveAllStmt,
		*pg_query.AlterExtensionStmt, *pg_query.AlterExtensionContentsStmt,
		*pg_query.AlterFdwStmt, *pg_query.AlterForeignServerStmt, *pg_query.AlterUserMappingStmt,
		*pg_query.AlterEventTrigStmt, *pg_query.AlterSeqStmt, *pg_query.AlterOpFamilyStmt,
		*pg_query.AlterStatsStmt, *pg_query.AlterFunctionStmt,
		*pg_query.AlterObjectDependsStmt, *pg_query.AlterObjectSchemaStmt,
		*pg_query.AlterOperatorStmt, *pg_query.AlterTypeStmt, *pg_query.AlterEnumStmt,
		*pg_query.AlterDatabaseStmt, *pg_query.AlterDatabaseRefreshCollStmt,
		*pg_query.AlterDatabaseSetStmt, *pg_query.AlterTSDictionaryStmt,
		*pg_query.AlterTSConfigurationStmt, *pg_query.AlterPublicationStmt,
		*pg_query.AlterSubscriptionStmt, *pg_query.ReplicaIdentityStmt:
		return "ALTER", KindDDL, true

	// PL/pgSQL assignment and the analyzer's set-operation node never come
	// out of parsing SQL text; they are statements nonetheless.
	case *pg_query.PLAssignStmt, *pg_query.SetOperationStmt:
		return CommandOther, KindOther, true
	}
	return "", "", false
}

// selectCommand names a SELECT by how it is written: VALUES, TABLE, or
// SELECT. A set operation (UNION ...) is named by its leftmost branch.
func selectCommand(n *pg_query.SelectStmt) string {
	for n.Op != pg_query.SetOperation_SETOP_NONE && n.Larg != nil {
		n = n.Larg
	}
	if len(n.ValuesLists) > 0 {
		return "VALUES"
	}
	if isTableForm(n) {
		return "TABLE"
	}
	return "SELECT"
}

// isTableForm recognizes TABLE x. The grammar turns it into SELECT * FROM x
// but marks the star it invents with location -1, which a written * never
// has.
func isTableForm(n *pg_query.SelectStmt) bool {
	if len(n.TargetList) != 1 || len(n.FromClause) != 1 {
		return false
	}
	rt := n.TargetList[0].GetResTarget()
	if rt == nil || rt.Location != -1 {
		return false
	}
	cr := rt.Val.GetColumnRef()
	return cr != nil && cr.Location == -1 && len(cr.Fields) == 1 && cr.Fields[0].GetAStar() != nil
}

// copyKind sorts a COPY by where its data goes. Client-side COPY is a read
// (TO STDOUT) or a write (FROM STDIN); a server-side file in either
// direction, or a program, reaches outside the database and is procedural.
func copyKind(n *pg_query.CopyStmt, target copyTarget) string {
	if n.IsProgram || n.Filename != "" {
		return KindProcedural
	}
	switch target {
	case copyClient:
		if n.IsFrom {
			return KindWrite
		}
		return KindRead
	case copyFile, copyProgram:
		return KindProcedural
	}
	return KindProcedural // not known to be the client: assume the worst
}

func transactionCommand(k pg_query.TransactionStmtKind) string {
	switch k {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		return "BEGIN"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		return "COMMIT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK, pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return "SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		return "RELEASE"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		return "PREPARE TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return "COMMIT PREPARED"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return "ROLLBACK PREPARED"
	}
	return CommandOther
}

// variableSetCommand sorts SET and RESET. SET TRANSACTION ... and SET
// TRANSACTION SNAPSHOT change only the current transaction (tcl); the
// grammar builds them as VAR_SET_MULTI with a fixed name, which a user's SET
// "transaction" = ... (VAR_SET_VALUE) cannot imitate. Setting or resetting
// the role or the session authorization changes who the statements after
// it run as, so it is dcl (RESET ALL leaves both alone).
func variableSetCommand(n *pg_query.VariableSetStmt) (command, kind string, ok bool) {
	command, kind = "SET", KindSession
	switch n.Kind {
	case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_RESET_ALL:
		command = "RESET"
	case pg_query.VariableSetKind_VAR_SET_MULTI:
		if n.Name == "TRANSACTION" || n.Name == "TRANSACTION SNAPSHOT" {
			return "SET", KindTCL, true
		}
	}
	switch {
	case n.Kind == pg_query.VariableSetKind_VAR_RESET_ALL:
	case isRoleSetting(n.Name):
		kind = KindDCL
	case command == "SET" && isPreloadSetting(n.Name):
		// Libraries the server loads into the sessions after it (set by
		// ALTER DATABASE or ALTER ROLE ... SET): code, as LOAD is.
		kind = KindProcedural
	}
	return command, kind, true
}

// isPreloadSetting reports a setting that names libraries to load at the
// start of a session.
func isPreloadSetting(name string) bool {
	return strings.EqualFold(name, "session_preload_libraries") || strings.EqualFold(name, "local_preload_libraries")
}

// isCLanguage reports a CREATE FUNCTION or PROCEDURE in LANGUAGE C. The
// language may be written as a string ('c'), so the answer can depend on a
// literal: the walker marks every CREATE FUNCTION with a language as
// literal-sensitive.
func isCLanguage(n *pg_query.CreateFunctionStmt) bool {
	for _, o := range n.Options {
		if d := o.GetDefElem(); d != nil && d.Defname == "language" {
			if s := d.Arg.GetString_(); s == nil || strings.EqualFold(s.Sval, "c") {
				return true
			}
		}
	}
	return false
}

// isRoleSetting reports a setting that decides who statements run as. Like
// PostgreSQL, it compares setting names without regard to case.
func isRoleSetting(name string) bool {
	return strings.EqualFold(name, "role") || strings.EqualFold(name, "session_authorization")
}

// isSetConfig reports a function name that may be set_config(): the
// built-in, or whatever an unqualified name finds.
func isSetConfig(name string) bool {
	return name == "set_config" || name == "pg_catalog.set_config"
}

// isPgSettings reports a relation name that may be the pg_settings view,
// whose UPDATE rule calls set_config().
func isPgSettings(name string) bool {
	return name == "pg_settings" || name == "pg_catalog.pg_settings"
}

func grantCommand(isGrant bool) string {
	if isGrant {
		return "GRANT"
	}
	return "REVOKE"
}
