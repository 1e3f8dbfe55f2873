//! What PostgreSQL clients need of the planner: their SQL parsed in PostgreSQL's dialect, and a
//! `pg_catalog` schema (with the session functions drivers and BI tools call at connect) built
//! from the principal's own session catalog, so that it lists only what the principal may query.
//!
//! datafusion-pg-catalog's compatibility rewrites (regclass casts, `pg_catalog.` prefixes,
//! array operators …) exist for catalog introspection. Some of them change answers — a scalar
//! subquery in the SELECT list becomes NULL or gets `LIMIT 1` — so only statements that read
//! the catalog, or no table at all, are rewritten; research SQL is planned as written.

mod catalog;
mod functions;
mod keys;

use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{ObjectName, Statement, visit_relations};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::PlannerError;

pub use catalog::{install_catalog, remove_catalog};

/// The server version PostgreSQL clients are told: 16 (SQLAlchemy parses `version()`, psqlODBC
/// asks for `relhasoids` below 12).
pub const SERVER_VERSION: &str = "16.6";

static COMPATIBILITY: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// The statements of `sql`, in order. An empty text gives none.
pub fn parse(sql: &str) -> Result<Vec<Statement>, PlannerError> {
    let plain = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements,
        // What only the compatibility parser understands (its known client queries) is catalog
        // introspection by construction.
        Err(e) => {
            return COMPATIBILITY
                .parse(sql)
                .map_err(|_| PlannerError::InvalidQuery(format!("SQL error: {e}")));
        }
    };
    if !plain.iter().any(introspects) {
        return Ok(plain);
    }
    if plain.len() == 1 {
        // Whole, so that the parser's replacements of known client queries apply too.
        if let Ok(rewritten) = COMPATIBILITY.parse(sql) {
            return Ok(rewritten
                .into_iter()
                .map(aggregate_scalar_subqueries)
                .collect());
        }
    }
    Ok(plain
        .into_iter()
        .map(|s| {
            if introspects(&s) {
                aggregate_scalar_subqueries(COMPATIBILITY.rewrite(s))
            } else {
                s
            }
        })
        .collect())
}

/// Catalog queries select correlated scalar subqueries that PostgreSQL knows return one row
/// (a column's default, its collation); DataFusion plans a correlated scalar subquery only when
/// it aggregates, so each one not aggregating already takes `max` of its one row.
///
/// A subquery inside CASE (a column's default, identity or collation in SQLAlchemy's reflection)
/// DataFusion cannot plan at all; Strata's relations have none of these, so it reads NULL.
fn aggregate_scalar_subqueries(mut statement: Statement) -> Statement {
    use datafusion::sql::sqlparser::ast::{
        Expr, SelectItem, SetExpr, Value, visit_expressions_mut,
    };
    let _ = visit_expressions_mut(&mut statement, |expr| {
        // generate_subscripts(a, 1) beside unnest(a): the positions 1.., unnested alongside
        // (the dimension, always 1 for int2 vectors, is the first position: a bound `$n`
        // stays in the statement).
        if let Expr::Function(f) = expr
            && f.name
                .to_string()
                .eq_ignore_ascii_case("generate_subscripts")
            && let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args
            && let [array, dimension] = list.args.as_slice()
            && let Some(positions) = expression(&format!(
                "unnest(generate_series(CAST({dimension} AS BIGINT), \
                 CAST(array_length({array}) AS BIGINT)))"
            ))
        {
            *expr = positions;
        }
        // A bound name cast to an oid alias (`CAST($1 AS REGCLASS)`) cannot be resolved when
        // planned; to_regclass answers NULL, as for a relation that is not there.
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && data_type.to_string().eq_ignore_ascii_case("regclass")
            && matches!(operand.as_ref(), Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
            && let Some(lookup) = expression(&format!("to_regclass({operand})"))
        {
            *expr = lookup;
        }
        // int2 vectors read as text are PostgreSQL's "1 2", not Arrow's "[1, 2]".
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && matches!(
                data_type.to_string().to_ascii_lowercase().as_str(),
                "varchar" | "text"
            )
            && matches!(
                last_name(operand).as_deref(),
                Some("indkey" | "conkey" | "confkey")
            )
            && let Some(text) = expression(&format!("array_to_string({operand}, ' ')"))
        {
            *expr = text;
        }
        // A boolean catalog column compared with 't' or 'f', as PostgreSQL reads them.
        if let Expr::BinaryOp { left, right, .. } = expr {
            let boolean = |e: &Expr| last_name(e).is_some_and(|n| is_boolean_column(&n));
            if boolean(left) {
                as_boolean(right);
            }
            if boolean(right) {
                as_boolean(left);
            }
        }
        if let Expr::Case { .. } = expr {
            let _ = visit_expressions_mut(expr, |inner| {
                if let Expr::Subquery(_) = inner {
                    *inner = Expr::Value(Value::Null.into());
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && let [item] = select.projection.as_mut_slice()
            && let SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. } =
                item
            && !is_aggregate(value)
            && let Some(aggregated) = expression(&format!("max({value})"))
        {
            *value = aggregated;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    statement
}

/// A rewritten expression, written as SQL around parts of the original.
fn expression(sql: &str) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `'t'` / `'f'` as the booleans PostgreSQL reads them as beside a boolean column.
fn as_boolean(literal: &mut datafusion::sql::sqlparser::ast::Expr) {
    use datafusion::sql::sqlparser::ast::{Expr, Value};
    if let Expr::Value(v) = literal
        && let Value::SingleQuotedString(text) = &v.value
        && let Some(b) = match text.as_str() {
            "t" | "true" => Some(true),
            "f" | "false" => Some(false),
            _ => None,
        }
    {
        v.value = Value::Boolean(b);
    }
}

/// The column an expression names, if it is one (`ix.indkey` → `indkey`).
fn last_name(expr: &datafusion::sql::sqlparser::ast::Expr) -> Option<String> {
    use datafusion::sql::sqlparser::ast::Expr;
    match expr {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        Expr::Nested(inner) => last_name(inner),
        _ => None,
    }
}

/// Boolean columns of the system catalog (`indisprimary`, `relhasindex`, `attnotnull` …).
fn is_boolean_column(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "indis", "relhas", "relis", "atthas", "attis", "typis", "rolcan", "datis",
    ];
    const NAMES: &[&str] = &[
        "indimmediate",
        "indcheckxmin",
        "indnullsnotdistinct",
        "relrowsecurity",
        "relforcerowsecurity",
        "attnotnull",
        "condeferrable",
        "condeferred",
        "convalidated",
        "conislocal",
        "connoinherit",
        "typbyval",
        "typnotnull",
        "rolsuper",
        "rolinherit",
        "datallowconn",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

fn is_aggregate(expr: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::Expr;
    let Expr::Function(f) = expr else {
        return false;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    matches!(
        name.rsplit('.').next().unwrap_or(""),
        "count"
            | "sum"
            | "min"
            | "max"
            | "avg"
            | "array_agg"
            | "string_agg"
            | "bool_and"
            | "bool_or"
            | "json_agg"
            | "jsonb_agg"
    )
}

/// Whether a statement reads the system catalog, or no table at all (`SELECT version()`).
fn introspects(statement: &Statement) -> bool {
    let mut tables = 0;
    let mut catalog = false;
    let _ = visit_relations(statement, |name: &ObjectName| {
        tables += 1;
        catalog |= is_catalog_relation(name);
        std::ops::ControlFlow::<()>::Continue(())
    });
    catalog || (tables == 0 && matches!(statement, Statement::Query(_)))
}

fn is_catalog_relation(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
        .collect();
    match parts.as_slice() {
        [.., schema, _] => schema == "pg_catalog" || schema == "information_schema",
        [table] => table.starts_with("pg_"),
        [] => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[test]
    fn research_sql_is_planned_as_written() {
        let sql = "SELECT (SELECT COUNT(*) FROM person) AS n, \
                   (SELECT MAX(x.year_of_birth) FROM person x WHERE x.person_id = p.person_id) \
                   FROM person p";
        let parsed = parse(sql).unwrap();
        let plain = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        assert_eq!(parsed, plain);
    }

    #[test]
    fn catalog_queries_get_the_compatibility_rewrites() {
        let parsed = parse("SELECT 'person'::regclass::oid").unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(!parsed[0].to_string().contains("regclass"), "{}", parsed[0]);
        let listed = parse("SELECT relname FROM pg_class; SELECT 1").unwrap();
        assert!(
            listed[0].to_string().contains("pg_catalog.pg_class"),
            "{}",
            listed[0]
        );
    }

    #[test]
    fn several_statements_and_none() {
        assert_eq!(parse("BEGIN; SELECT 1; COMMIT").unwrap().len(), 3);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("SELEC 1").is_err());
    }

    #[tokio::test]
    async fn version_reads_as_postgresql_16() {
        let ctx = SessionContext::new();
        install_catalog(&ctx).unwrap();
        let batches = ctx
            .sql("SELECT version() AS v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(shown.contains("PostgreSQL 16.6 (Strata"), "{shown}");
    }
}
