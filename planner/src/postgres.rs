//! What PostgreSQL clients need of the planner: their SQL parsed in PostgreSQL's dialect, and a
//! `pg_catalog` schema (with the session functions drivers and BI tools call at connect) built
//! from the principal's own session catalog, so that it lists only what the principal may query.
//!
//! datafusion-pg-catalog's compatibility rewrites (regclass casts, `pg_catalog.` prefixes,
//! array operators …) exist for catalog introspection. Some of them change answers — a scalar
//! subquery in the SELECT list becomes NULL or gets `LIMIT 1` — so only statements that read
//! the catalog, or no table at all, are rewritten; research SQL is planned as written.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement, visit_relations};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::PlannerError;

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
            return Ok(rewritten);
        }
    }
    Ok(plain
        .into_iter()
        .map(|s| {
            if introspects(&s) {
                COMPATIBILITY.rewrite(s)
            } else {
                s
            }
        })
        .collect())
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

/// Registers `pg_catalog`, its functions and `version()` in a principal's session. The catalog's
/// relations are computed from the session's own catalog list when they are read.
pub fn install_catalog(ctx: &SessionContext) -> Result<(), PlannerError> {
    let catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    datafusion_pg_catalog::setup_pg_catalog(ctx, &catalog, EmptyContextProvider)
        .map_err(|e| PlannerError::from_datafusion(*e))?;
    ctx.register_udf(version_function());
    Ok(())
}

fn version_function() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {SERVER_VERSION} (Strata {}) on {}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
