use datafusion::error::DataFusionError;
use thiserror::Error;

/// Why the tier guard refused a plan; turned into a permission refusal at the edge. It travels
/// through DataFusion as an external error (the guard also runs as an analyzer rule).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct TierDenied(pub String);

/// A table a plan needs that its session does not hold, raised inside DataFusion (a cohort
/// table function compiling its definition); becomes [`PlannerError::MissingTable`].
#[derive(Debug, Error)]
#[error("table '{0}' not found")]
pub struct TableNotFound(pub String);

/// A plan disclosure control cannot protect; refused as unsupported.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct NotProtectable(pub String);

/// Planner errors, one line each. They never carry data values: messages come from the SQL text
/// and the catalog, not from rows.
#[derive(Debug, Error)]
pub enum PlannerError {
    /// Malformed SQL or a reference that does not resolve.
    #[error("{0}")]
    InvalidQuery(String),
    /// A table the statement names that the session does not hold (unknown, or above the
    /// caller's tier: the tier guard tells which).
    #[error("table '{0}' not found")]
    MissingTable(String),
    /// A table the caller cannot read, explained for them: above their tier (`denied`), or
    /// unknown. Doors that answer both alike (PostgreSQL's 42P01) need the table apart.
    #[error("{message}")]
    UnavailableTable {
        table: String,
        message: String,
        denied: bool,
    },
    /// A column reference that does not resolve (DataFusion's message, and the bare name).
    #[error("{message}")]
    MissingColumn { column: String, message: String },
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
        if let DataFusionError::ArrowError(a, _) = e.find_root()
            && let Some(message) = redacted_arrow_error(a)
        {
            return PlannerError::InvalidQuery(message.to_string());
        }
        if let DataFusionError::External(inner) = e.find_root() {
            if let Some(d) = inner.downcast_ref::<TierDenied>() {
                return PlannerError::NotPermitted(d.0.clone());
            }
            if let Some(t) = inner.downcast_ref::<TableNotFound>() {
                return PlannerError::MissingTable(t.0.clone());
            }
            if let Some(n) = inner.downcast_ref::<NotProtectable>() {
                return PlannerError::Unsupported(format!("disclosure control: {}", n.0));
            }
        }
        if let DataFusionError::SchemaError(s, _) = e.find_root()
            && let datafusion::common::SchemaError::FieldNotFound { field, .. } = s.as_ref()
        {
            return PlannerError::MissingColumn {
                column: field.name.clone(),
                message: clean(&e),
            };
        }
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..) => PlannerError::InvalidQuery(clean(&e)),
            DataFusionError::NotImplemented(_) => PlannerError::Unsupported(clean(&e)),
            DataFusionError::ResourcesExhausted(m) => {
                PlannerError::ResourcesExhausted(match memory_consumer(m) {
                    Some(consumer) => format!(
                        "the query needs more memory than its limit (limits.query_memory_mb): \
                         {consumer} could not get what it needs, even after spilling what can be \
                         spilled to disk"
                    ),
                    None => clean(&e),
                })
            }
            DataFusionError::Internal(_) => PlannerError::Internal(clean(&e)),
            // Kernels and functions quote the value they failed on ("Unable to parse date from
            // …", "Cannot cast …"); it may be a participant's, so only Strata's own messages
            // (which name a `strata_` function and carry no value) pass.
            DataFusionError::Execution(m) if m.starts_with("strata_") => {
                PlannerError::Execution(clean(&e))
            }
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                PlannerError::Execution(
                    "a function could not be computed for some value (the message is withheld: it \
                 may quote participant data)"
                        .into(),
                )
            }
            _ => PlannerError::Execution(clean(&e)),
        }
    }
}

/// Arrow kernels quote the offending value ("Cannot cast string 'x'"); that value may come from a
/// participant's row, so such errors get a fixed message instead.
fn redacted_arrow_error(e: &arrow::error::ArrowError) -> Option<&'static str> {
    use arrow::error::ArrowError as A;
    Some(match e {
        A::CastError(_) => "a value could not be cast to the requested type",
        A::ParseError(_) => "a value could not be parsed as the requested type",
        A::DivideByZero => "division by zero",
        A::ArithmeticOverflow(_) => "arithmetic overflow",
        A::ComputeError(_) => "a function could not be computed for some value",
        _ => return None,
    })
}

/// The operator a memory pool refused ("Additional allocation failed for HashJoinInput[1] with
/// top memory consumers …"): a plan node's name, never a value.
fn memory_consumer(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("Additional allocation failed for ")?;
    let name = rest.split(" with ").next()?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || "[]#()_-: ".contains(c))
        .then_some(name)
}

/// DataFusion's messages, cut to one line and without the "Error during planning:" noise.
fn clean(e: &DataFusionError) -> String {
    let root = e.find_root().to_string();
    let line = root.lines().next().unwrap_or("").trim();
    // sqlparser errors arrive as `ParserError("…")`.
    let line = line
        .strip_prefix("SQL error: ")
        .unwrap_or(line)
        .strip_prefix("ParserError(\"")
        .and_then(|l| l.strip_suffix("\")"))
        .unwrap_or(line);
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
