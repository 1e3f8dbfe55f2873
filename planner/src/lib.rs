//! Strata's planner: SQL text → a checked DataFusion logical plan. Policy lives here (statement
//! kinds now; tiers and disclosure control as analyzer rules in later modules), never in a front
//! door, so every front door gets the same guarantees.

pub mod cohort;
pub mod disclosure;
pub mod distinct_counts;
pub mod error;
pub mod participants;
pub mod postgres;
pub mod registered;
pub mod shipped;
pub mod statements;
mod subqueries;
pub mod tier_guard;
pub mod tiers;

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

pub use error::PlannerError;

/// A statement planned and checked, ready to execute (after binding parameters, if any).
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    pub sql: String,
    pub plan: LogicalPlan,
}

/// Parses and plans `sql` in `ctx`, refusing anything that is not a read-only query, then checks
/// the plan against the principal's tier (`guard`), before anything executes.
pub async fn plan_sql_guarded(
    ctx: &SessionContext,
    sql: &str,
    guard: &tier_guard::TierGuard,
) -> Result<PlannedQuery, PlannerError> {
    let planned = plan_sql(ctx, sql).await.map_err(|e| guard.explain(e))?;
    checked(planned, guard)
}

/// [`plan_sql_guarded`] for a statement a door parsed in its own dialect (`sql` is its text, for
/// the audit log).
pub async fn plan_statement_guarded(
    ctx: &SessionContext,
    sql: &str,
    statement: datafusion::sql::sqlparser::ast::Statement,
    guard: &tier_guard::TierGuard,
) -> Result<PlannedQuery, PlannerError> {
    let statement = datafusion::sql::parser::Statement::Statement(Box::new(statement));
    let planned = plan_statement(ctx, sql, statement)
        .await
        .map_err(|e| guard.explain(e))?;
    checked(planned, guard)
}

fn checked(
    planned: PlannedQuery,
    guard: &tier_guard::TierGuard,
) -> Result<PlannedQuery, PlannerError> {
    let _policy = tracing::info_span!("policy", rule = "tier_guard").entered();
    guard
        .check(&planned.plan)
        .map_err(|d| PlannerError::NotPermitted(d.0))?;
    Ok(planned)
}

/// Parses and plans `sql` in `ctx`, refusing anything that is not a read-only query.
pub async fn plan_sql(ctx: &SessionContext, sql: &str) -> Result<PlannedQuery, PlannerError> {
    let statement = ctx
        .state()
        .sql_to_statement(sql, &datafusion::config::Dialect::Generic)
        .map_err(PlannerError::from_parse)?;
    plan_statement(ctx, sql, statement).await
}

async fn plan_statement(
    ctx: &SessionContext,
    sql: &str,
    mut statement: datafusion::sql::parser::Statement,
) -> Result<PlannedQuery, PlannerError> {
    let state = ctx.state();
    statements::number_placeholders(&mut statement);
    statements::check_statement(&statement)?;
    check_tables_exist(ctx, &statement)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(PlannerError::from_datafusion)?;
    statements::check_plan(&plan)?;
    Ok(PlannedQuery {
        sql: sql.to_string(),
        plan,
    })
}

/// Every table the statement names (CTEs aside) is in the session or is a table function; a
/// missing one is reported by name, typed, before DataFusion plans (and words) anything.
fn check_tables_exist(
    ctx: &SessionContext,
    statement: &datafusion::sql::parser::Statement,
) -> Result<(), PlannerError> {
    let state = ctx.state();
    let references = state
        .resolve_table_references(statement)
        .map_err(PlannerError::from_datafusion)?;
    for reference in references {
        if state.table_functions().contains_key(reference.table()) {
            continue;
        }
        let exists = ctx
            .table_exist(reference.clone())
            .map_err(PlannerError::from_datafusion)?;
        if !exists {
            return Err(PlannerError::MissingTable(reference.table().to_string()));
        }
    }
    Ok(())
}

/// Binds positional parameters (`$1`, `?`) of a prepared statement.
pub fn bind(query: &PlannedQuery, params: ParamValues) -> Result<LogicalPlan, PlannerError> {
    query
        .plan
        .clone()
        .with_param_values(params)
        .map_err(PlannerError::from_datafusion)
}
