//! The one error type of the query service. Every door maps it once to its wire's status
//! (gRPC codes, SQLSTATEs); messages are one line and never carry data values.

use strata_engine::EngineError;
use strata_planner::PlannerError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum QueryError {
    /// No, a bad or an expired passport.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this: a table above their tier, a statement that writes, a row-level
    /// result for an aggregates-only caller.
    #[error("{0}")]
    Denied(String),
    /// A table the caller cannot read: above their tier (`denied`) or unknown.
    #[error("{message}")]
    UnavailableTable {
        table: String,
        message: String,
        denied: bool,
    },
    /// A handle, ticket or named cohort that does not exist for this caller (another caller's
    /// gets the same answer as one that never existed).
    #[error("{0}")]
    NotFound(String),
    /// Malformed SQL, JSON or parameters; a reference that does not resolve.
    #[error("{0}")]
    Invalid(String),
    /// Not implemented by Strata.
    #[error("{0}")]
    Unsupported(String),
    /// An egress, memory or ledger limit: never a partial result.
    #[error("resources exhausted: {0}")]
    ResourcesExhausted(String),
    /// The dataset's files could not be read (`damaged`: a file is missing or corrupt): never a
    /// partial result.
    #[error("the stored data could not be read: {message}")]
    Storage { message: String, damaged: bool },
    /// The durable audit record could not be written, so nothing is released.
    #[error("the audit log is unavailable; no results are released")]
    AuditUnavailable,
    #[error("cancelled by the client")]
    Cancelled,
    /// The server is stopping: no new queries, and a query still running at the end of the
    /// shutdown grace is stopped.
    #[error("the server is shutting down; try again shortly")]
    ShuttingDown,
    /// Failure while executing an accepted plan.
    #[error("{0}")]
    Execution(String),
    /// A cluster worker failed or could not be reached: never a partial result.
    #[error("{0}")]
    Cluster(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// Writes are refused whatever the tier: Strata serves queries only.
    pub fn read_only() -> Self {
        QueryError::Denied(
            "Strata is read-only: only queries (SELECT, WITH, VALUES, EXPLAIN) are accepted".into(),
        )
    }

    pub fn no_substrait() -> Self {
        QueryError::Unsupported("Substrait plans are not accepted; send SQL".into())
    }

    /// The audit record's `outcome` for a request that ended with this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            QueryError::Denied(_) | QueryError::UnavailableTable { denied: true, .. } => "denied",
            QueryError::UnavailableTable { .. } => "invalid",
            QueryError::Unauthenticated(_) => "unauthenticated",
            QueryError::Invalid(_) | QueryError::NotFound(_) => "invalid",
            QueryError::Unsupported(_) => "unsupported",
            QueryError::Cancelled | QueryError::ShuttingDown => "cancelled",
            _ => "error",
        }
    }

    /// The message as it leaves the server: its first line.
    pub fn message(&self) -> String {
        strata_engine::error::first_line(&self.to_string())
    }
}

impl From<PlannerError> for QueryError {
    fn from(e: PlannerError) -> Self {
        match e {
            PlannerError::InvalidQuery(m) => QueryError::Invalid(m),
            e @ (PlannerError::MissingTable(_) | PlannerError::MissingColumn { .. }) => {
                QueryError::Invalid(e.to_string())
            }
            PlannerError::NotPermitted(m) => QueryError::Denied(m),
            PlannerError::UnavailableTable {
                table,
                message,
                denied,
            } => QueryError::UnavailableTable {
                table,
                message,
                denied,
            },
            PlannerError::Unsupported(m) => QueryError::Unsupported(m),
            PlannerError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m),
            PlannerError::Storage { message, damaged } => QueryError::Storage { message, damaged },
            PlannerError::Execution(m) => QueryError::Execution(m),
            PlannerError::Cluster(m) => QueryError::Cluster(m),
            PlannerError::Internal(m) => QueryError::Internal(m),
        }
    }
}

impl From<EngineError> for QueryError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidInput(m) => QueryError::Invalid(m),
            other => QueryError::Internal(strata_engine::error::first_line(&other.to_string())),
        }
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Internal(strata_engine::error::first_line(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_errors_keep_their_kind_and_message() {
        let denied = QueryError::from(PlannerError::NotPermitted("table 'genotype'".into()));
        assert!(matches!(&denied, QueryError::Denied(m) if m == "table 'genotype'"));
        assert_eq!(denied.outcome(), "denied");
        let missing = QueryError::from(PlannerError::MissingTable("nope".into()));
        assert!(matches!(&missing, QueryError::Invalid(m) if m == "table 'nope' not found"));
        assert_eq!(missing.outcome(), "invalid");
        let full = QueryError::from(PlannerError::ResourcesExhausted("ledger full".into()));
        assert_eq!(full.to_string(), "resources exhausted: ledger full");
        let internal = QueryError::from(PlannerError::Internal("boom".into()));
        assert_eq!(internal.to_string(), "internal error: boom");
        assert_eq!(QueryError::Cancelled.outcome(), "cancelled");
        assert_eq!(QueryError::read_only().outcome(), "denied");
        assert_eq!(QueryError::no_substrait().outcome(), "unsupported");
    }
}
