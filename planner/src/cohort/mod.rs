//! Cohort definitions compiled to DataFusion plans (never to SQL text). This module holds the
//! program's Cohort Builder format; the result of every compiler is the logical plan of the
//! cohort's distinct `person_id`s, which the caller counts or breaks down inside the principal's
//! session — so tiers and disclosure control apply exactly as to SQL.

pub mod builder;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CohortError {
    #[error("invalid cohort definition: {0}")]
    Invalid(String),
    /// A construct this version does not evaluate; names the JSON path.
    #[error("unsupported cohort construct at {path}: {what}")]
    Unsupported { path: String, what: String },
    #[error("{0}")]
    Planning(String),
}

impl From<datafusion::error::DataFusionError> for CohortError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        CohortError::Planning(crate::PlannerError::from_datafusion(e).to_string())
    }
}

/// Which format a definition is in, by its top-level keys.
pub fn is_cohort_builder(definition: &serde_json::Value) -> bool {
    definition.get("includes").is_some()
}
