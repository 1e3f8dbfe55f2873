use datafusion::error::DataFusionError;
use thiserror::Error;

/// Planner errors, one line each. They never carry data values: messages come from the SQL text
/// and the catalog, not from rows.
#[derive(Debug, Error)]
pub enum PlannerError {
    /// Malformed SQL or a reference that does not resolve.
    #[error("{0}")]
    InvalidQuery(String),
    /// A statement kind the caller may not run.
    #[error("{0}")]
    NotPermitted(String),
    /// Not implemented by Strata.
    #[error("{0}")]
    Unsupported(String),
    /// Failure while executing an accepted plan.
    #[error("{0}")]
    Execution(String),
    #[error("resources exhausted: {0}")]
    ResourcesExhausted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PlannerError {
    pub fn from_parse(e: DataFusionError) -> Self {
        PlannerError::InvalidQuery(clean(&e))
    }

    pub fn from_datafusion(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..) => PlannerError::InvalidQuery(clean(&e)),
            DataFusionError::NotImplemented(_) => PlannerError::Unsupported(clean(&e)),
            DataFusionError::ResourcesExhausted(_) => PlannerError::ResourcesExhausted(clean(&e)),
            DataFusionError::Internal(_) => PlannerError::Internal(clean(&e)),
            _ => PlannerError::Execution(clean(&e)),
        }
    }
}

/// DataFusion's messages, cut to one line and without the "Error during planning:" noise.
fn clean(e: &DataFusionError) -> String {
    let root = e.find_root().to_string();
    let line = root.lines().next().unwrap_or("").trim();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Execution error: ",
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    line.to_string()
}
