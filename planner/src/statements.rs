//! Which statements may run: queries only (SELECT, WITH, VALUES, EXPLAIN without ANALYZE).
//! DDL, DML, COPY, SET, CREATE EXTERNAL TABLE, CREATE FUNCTION and anything touching files by
//! path are refused here, on the parsed statement and again on the plan.

use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::PlannerError;

/// EXPLAIN VERBOSE and EXPLAIN with statistics print every operator's statistics (row counts,
/// column bounds) of the unprotected plan.
const VERBOSE: &str = "EXPLAIN VERBOSE or with options (it prints statistics of the data)";

pub fn check_statement(statement: &DfStatement) -> Result<(), PlannerError> {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) => Ok(()),
            Statement::Explain { verbose: true, .. }
            | Statement::Explain {
                options: Some(_), ..
            } => Err(refused(VERBOSE)),
            Statement::Explain {
                analyze: false,
                statement,
                ..
            } => match statement.as_ref() {
                Statement::Query(_) => Ok(()),
                _ => Err(refused("EXPLAIN of a non-query statement")),
            },
            Statement::Explain { analyze: true, .. } => {
                Err(refused("EXPLAIN ANALYZE (it reports runtime statistics)"))
            }
            other => Err(refused(kind(other))),
        },
        DfStatement::Explain(e) if e.options.verbose || e.options.show_statistics == Some(true) => {
            Err(refused(VERBOSE))
        }
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s)
                if matches!(s.as_ref(), Statement::Query(_)) && !e.options.analyze =>
            {
                Ok(())
            }
            _ if e.options.analyze => {
                Err(refused("EXPLAIN ANALYZE (it reports runtime statistics)"))
            }
            _ => Err(refused("EXPLAIN of a non-query statement")),
        },
        DfStatement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(refused("COPY")),
        DfStatement::Reset(_) => Err(refused("RESET")),
    }
}

/// The plan must be a pure query too: the SQL planner can still produce DDL/DML nodes from
/// query-shaped text, and only Analyze/Explain/Query nodes may come back.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), PlannerError> {
    let mut refusal = None;
    plan.apply_with_subqueries(|node| {
        // A compiled cohort's own plan (its spools included) comes from the cohort compilers,
        // not from SQL text.
        if crate::cohort::boundary::CohortBoundary::of(node).is_some() {
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Jump);
        }
        let bad = match node {
            LogicalPlan::Ddl(_) => Some("DDL"),
            LogicalPlan::Dml(_) => Some("DML"),
            LogicalPlan::Copy(_) => Some("COPY"),
            LogicalPlan::Statement(_) => Some("SET, transactions and PREPARE"),
            LogicalPlan::Analyze(_) => Some("EXPLAIN ANALYZE (it reports runtime statistics)"),
            LogicalPlan::Extension(_) => Some("extension plans"),
            _ => None,
        };
        if let Some(b) = bad {
            refusal = Some(refused(b));
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(PlannerError::from_datafusion)?;
    refusal.map_or(Ok(()), Err)
}

/// ODBC/JDBC-style `?` placeholders become `$1, $2, …` in textual order, on the parsed AST, so
/// prepared statements from ADBC and ODBC bind like DataFusion's own `$n`.
pub fn number_placeholders(statement: &mut DfStatement) {
    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
    use std::ops::ControlFlow;
    let DfStatement::Statement(s) = statement else {
        return;
    };
    let mut n = 0;
    let _ = visit_expressions_mut(s.as_mut(), |expr| {
        if let Expr::Value(v) = expr
            && matches!(&v.value, Value::Placeholder(p) if p == "?")
        {
            n += 1;
            v.value = Value::Placeholder(format!("${n}"));
        }
        ControlFlow::<()>::Continue(())
    });
}

fn refused(what: &str) -> PlannerError {
    PlannerError::NotPermitted(format!(
        "{what} is not permitted: only read-only queries (SELECT, WITH, VALUES, EXPLAIN) are accepted"
    ))
}

fn kind(s: &Statement) -> &'static str {
    match s {
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. } => "DML (INSERT, UPDATE, DELETE, MERGE)",
        Statement::Copy { .. } => "COPY",
        Statement::CreateTable(_)
        | Statement::CreateView { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. } => "CREATE",
        Statement::CreateFunction(_) => "CREATE FUNCTION",
        Statement::Drop { .. } => "DROP",
        Statement::Truncate { .. } => "TRUNCATE",
        Statement::AlterTable { .. } => "ALTER",
        Statement::Set(_) => "SET",
        Statement::ShowVariable { .. } => "SHOW",
        _ => "this statement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn check(sql: &str) -> Result<(), PlannerError> {
        let ctx = SessionContext::new();
        crate::plan_sql(&ctx, sql).await.map(|_| ())
    }

    #[tokio::test]
    async fn queries_are_accepted() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1)",
            "EXPLAIN SELECT 1",
        ] {
            check(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[tokio::test]
    async fn question_mark_placeholders_are_numbered_in_order() {
        let ctx = SessionContext::new();
        let q = crate::plan_sql(&ctx, "SELECT ? + 1 AS a, ? AS b")
            .await
            .unwrap();
        let mut names: Vec<_> = q.plan.get_parameter_types().unwrap().into_keys().collect();
        names.sort();
        assert_eq!(names, vec!["$1", "$2"]);
    }

    #[tokio::test]
    async fn writes_files_and_settings_are_refused() {
        for sql in [
            "CREATE TABLE t (a INT)",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "INSERT INTO t VALUES (1)",
            "SET datafusion.execution.batch_size = 1",
            "DROP TABLE t",
            "CREATE VIEW v AS SELECT 1",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            "EXPLAIN ANALYZE SELECT 1",
            "PREPARE p AS SELECT 1",
            "DELETE FROM t",
        ] {
            match check(sql).await {
                Err(PlannerError::NotPermitted(m)) => assert!(!m.contains('\n'), "{m}"),
                other => panic!("{sql}: expected refusal, got {other:?}"),
            }
        }
    }
}
