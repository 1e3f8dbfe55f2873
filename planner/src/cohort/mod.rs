//! Cohort definitions compiled to DataFusion plans (never to SQL text). This module holds the
//! program's Cohort Builder format; the result of every compiler is the logical plan of the
//! cohort's distinct `person_id`s, which the caller counts or breaks down inside the principal's
//! session — so tiers and disclosure control apply exactly as to SQL.

pub mod boundary;
pub mod builder;
pub mod circe;
pub mod function;
pub mod spool;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CohortError {
    #[error("invalid cohort definition: {0}")]
    Invalid(String),
    /// A construct this version does not evaluate; names the JSON path.
    #[error("unsupported cohort construct at {path}: {what}")]
    Unsupported { path: String, what: String },
    /// A table the definition reads that the caller's session does not hold: above the
    /// caller's tier, or absent from the dataset.
    #[error("table '{0}' not found")]
    MissingTable(String),
    #[error("{0}")]
    Planning(String),
}

impl From<datafusion::error::DataFusionError> for CohortError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        CohortError::Planning(crate::PlannerError::from_datafusion(e).to_string())
    }
}

/// A table of the caller's session. One the session does not hold (unknown, or above the
/// caller's tier) is [`CohortError::MissingTable`], typed, so that callers refuse it as they
/// refuse the same table named in SQL.
pub(crate) async fn table(
    ctx: &datafusion::prelude::SessionContext,
    name: &str,
) -> Result<datafusion::dataframe::DataFrame, CohortError> {
    if !ctx.table_exist(name)? {
        return Err(CohortError::MissingTable(name.to_string()));
    }
    Ok(ctx.table(name).await?)
}

/// Which format a definition is in, by its top-level keys.
pub fn is_cohort_builder(definition: &serde_json::Value) -> bool {
    definition.get("includes").is_some()
}

/// A cohort definition (Circe or Cohort Builder, told apart by their top-level keys) as the
/// relation `person_id, cohort_start_date, cohort_end_date` inside a cohort boundary (Cohort
/// Builder cohorts have no dates: NULL).
pub async fn compile(
    ctx: &datafusion::prelude::SessionContext,
    definition: &serde_json::Value,
) -> Result<datafusion::dataframe::DataFrame, CohortError> {
    use datafusion::logical_expr::{cast, col, lit};
    let rows = if circe::is_circe(definition) {
        circe::cohort(ctx, definition).await?
    } else if is_cohort_builder(definition) {
        let null_date = || {
            cast(
                lit(datafusion::common::ScalarValue::Null),
                arrow::datatypes::DataType::Date32,
            )
        };
        builder::persons(ctx, definition).await?.select(vec![
            col("person_id"),
            null_date().alias("cohort_start_date"),
            null_date().alias("cohort_end_date"),
        ])?
    } else {
        return Err(CohortError::Invalid(
            "a cohort definition is OHDSI Circe JSON (top-level PrimaryCriteria) or Cohort \
             Builder JSON (top-level includes)"
                .into(),
        ));
    };
    let (state, plan) = rows.into_parts();
    let plan = spool::Spool::dedupe(plan)?;
    Ok(datafusion::dataframe::DataFrame::new(
        state,
        boundary::CohortBoundary::wrap(plan),
    ))
}
