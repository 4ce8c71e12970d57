package sqlclass

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Effect is what a statement can do to the database's lasting state. The audit log's commit points
// rest on it (audit durability = "commit"): a change must not commit before its records are on stable
// storage, so the broker holds every statement that may commit until they are.
type Effect uint8

// The zero value is EffectCommit, so that a statement nobody classified is held like a commit.
const (
	// EffectCommit: the statement commits, or may commit by itself: COMMIT (END), PREPARE TRANSACTION,
	// COMMIT PREPARED and ROLLBACK PREPARED; VACUUM, CREATE INDEX CONCURRENTLY and the like, which
	// commit on their own; and every admin statement (CALL and DO can commit inside, and the rest the
	// broker does not look into).
	EffectCommit Effect = iota
	// EffectChange: the statement may change something, which lasts once its transaction commits.
	// Whatever is not provably EffectNone is at least this: writes, DDL, NOTIFY, locking reads, and
	// queries calling nextval or any function not known to be free of side effects.
	EffectChange
	// EffectNone: the statement provably changes nothing that lasts: a query, SHOW or EXPLAIN that
	// calls only functions known to have no side effects, FETCH, a session setting, or transaction
	// control that commits nothing (BEGIN, ROLLBACK, SAVEPOINT, RELEASE).
	EffectNone
)

// Strongest is the strongest effect among sts (EffectNone for none).
func Strongest(sts []Statement) Effect {
	e := EffectNone
	for _, st := range sts {
		e = min(e, st.Effect)
	}
	return e
}

func (e Effect) String() string {
	switch e {
	case EffectNone:
		return "none"
	case EffectChange:
		return "change"
	default:
		return "commit"
	}
}

// txEffect is the effect of a transaction statement, and whether it may open or close a block.
func txEffect(s *pg.TransactionStmt) (Effect, bool) {
	switch s.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT, pg.TransactionStmtKind_TRANS_STMT_RELEASE,
		pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return EffectNone, false
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START,
		pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return EffectNone, true // ROLLBACK AND CHAIN too: it commits nothing
	default:
		// COMMIT (END, and AND CHAIN), PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED, and any
		// kind a later parser adds.
		return EffectCommit, true
	}
}

// commitsByItself reports whether a statement of a kind other than admin commits on its own, outside
// any transaction block: the concurrent forms of index and partition maintenance.
func commitsByItself(n *pg.Node) bool {
	switch s := n.GetNode().(type) {
	case *pg.Node_IndexStmt:
		return s.IndexStmt.Concurrent
	case *pg.Node_DropStmt:
		return s.DropStmt.Concurrent
	case *pg.Node_AlterTableStmt:
		for _, c := range s.AlterTableStmt.Cmds {
			if pc := c.GetAlterTableCmd().GetDef().GetPartitionCmd(); pc != nil && pc.Concurrent {
				return true
			}
		}
	}
	return false
}

// effect is the statement's effect, from its kind and what the walker found.
func (w *walker) effect(n *pg.Node, kind string) Effect {
	if kind == KindAdmin || commitsByItself(n) {
		return EffectCommit
	}
	if tx := n.GetTransactionStmt(); tx != nil {
		e, _ := txEffect(tx) // two-phase commit is KindLock, and commits all the same
		return e
	}
	switch kind {
	case KindUtility:
		if n.GetNotifyStmt() != nil {
			return EffectChange // delivered when its transaction commits
		}
		return EffectNone
	case KindSelect, KindLock:
		if w.nestedWrite || w.locking || w.advisoryLock {
			return EffectChange
		}
		for _, f := range w.funcs {
			if !ReadOnlyFunction(f) {
				return EffectChange
			}
		}
		return EffectNone
	default:
		return EffectChange
	}
}

// ReadOnlyFunction reports whether name, as a statement calls it (unqualified or qualified with
// pg_catalog), is a built-in function known to change nothing. The list is deliberately short:
// functions outside it, and every function of another schema, count as changes. An unqualified name on
// it may still resolve to a database function of the same name on the search path: the postgres
// engine finds those in the session's catalog and counts such a call as a change when the function
// may write.
func ReadOnlyFunction(name string) bool {
	if schema, fn, ok := strings.Cut(name, "."); ok {
		if schema != "pg_catalog" || strings.Contains(fn, ".") {
			return false
		}
		name = fn
	}
	return readOnlyFunctions[name]
}

// readOnlyFunctions are built-in functions, aggregates and window functions of pg_catalog that read
// or compute and change nothing.
var readOnlyFunctions = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(`
		count sum avg min max string_agg array_agg bool_and bool_or every stddev stddev_pop stddev_samp
		variance var_pop var_samp json_agg jsonb_agg json_object_agg jsonb_object_agg percentile_cont
		percentile_disc mode corr covar_pop covar_samp regr_slope regr_intercept bit_and bit_or
		row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
		lower upper initcap length char_length character_length octet_length bit_length substr substring
		trim btrim ltrim rtrim concat concat_ws replace position strpos left right lpad rpad split_part
		regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table regexp_like
		format md5 sha224 sha256 sha384 sha512 to_char to_number to_date to_timestamp reverse repeat
		translate starts_with ascii chr quote_ident quote_literal quote_nullable encode decode
		string_to_array array_to_string unnest array_length array_lower array_upper cardinality
		array_position array_positions array_remove array_replace array_append array_prepend array_cat
		generate_series generate_subscripts
		abs ceil ceiling floor round trunc mod power pow sqrt cbrt exp ln log log10 sign div pi
		degrees radians sin cos tan asin acos atan atan2 width_bucket random gcd lcm factorial
		now statement_timestamp transaction_timestamp clock_timestamp timeofday date_trunc date_part
		date_bin extract age make_date make_time make_timestamp make_timestamptz make_interval
		justify_days justify_hours justify_interval isfinite timezone
		to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object json_build_array
		jsonb_build_array json_object jsonb_object json_extract_path json_extract_path_text
		jsonb_extract_path jsonb_extract_path_text json_array_elements jsonb_array_elements
		json_array_elements_text jsonb_array_elements_text json_each jsonb_each json_each_text
		jsonb_each_text json_object_keys jsonb_object_keys json_array_length jsonb_array_length
		json_typeof jsonb_typeof jsonb_set jsonb_insert jsonb_pretty jsonb_strip_nulls json_strip_nulls
		jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match
		version current_database current_schema current_schemas current_setting pg_backend_pid
		pg_typeof format_type pg_postmaster_start_time inet_server_addr inet_server_port
		has_table_privilege has_column_privilege has_schema_privilege has_database_privilege
		has_function_privilege has_sequence_privilege pg_has_role
		pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size pg_database_size
		pg_size_pretty pg_column_size obj_description col_description
		gen_random_uuid uuid_in
		bool int2 int4 int8 float4 float8 numeric text varchar date time timestamp timestamptz interval
		`) {
		m[f] = true
	}
	return m
}()
