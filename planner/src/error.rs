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
    /// The dataset's files could not be read: `damaged` when a file is missing or does not
    /// decode (the operator must repair the dataset), else the storage failed (an object store
    /// that does not answer: worth a retry).
    #[error("the stored data could not be read: {message}")]
    Storage { message: String, damaged: bool },
    /// A cluster worker failed, or could not be reached, while running its part of the plan:
    /// never a partial result, and worth a retry.
    #[error("{0}")]
    Cluster(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PlannerError {
    pub fn from_parse(e: DataFusionError) -> Self {
        PlannerError::InvalidQuery(clean(&e))
    }

    pub fn from_datafusion(e: DataFusionError) -> Self {
        // Before the Arrow redaction below: the Parquet reader's errors travel as Arrow's
        // external errors, and they describe files, not values.
        if let Some(failure) = storage_failure(&e) {
            return failure;
        }
        if let DataFusionError::ArrowError(a, _) = e.find_root()
            && let Some(message) = redacted_arrow_error(a)
        {
            return PlannerError::InvalidQuery(message.to_string());
        }
        if let DataFusionError::External(inner) = e.find_root() {
            if is_worker_failure(inner.as_ref()) {
                // The operator's log names the worker and the transport's failure.
                tracing::warn!(error = %e, "a cluster worker failed");
                return PlannerError::Cluster(WORKER_FAILED.into());
            }
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
            // The cluster's own protocol errors (a worker that never got its plan because the
            // coordinator could not reach another worker, say): no data in them.
            DataFusionError::Execution(m)
                if m.starts_with("Worker::") || m.contains("Distributed DataFusion worker") =>
            {
                tracing::warn!(error = %e, "a cluster worker failed");
                PlannerError::Cluster(WORKER_FAILED.into())
            }
            DataFusionError::Execution(m) if m.starts_with("strata_") => {
                PlannerError::Execution(clean(&e))
            }
            // A Parquet error that is not a storage failure wraps an Arrow error: a pushed-down
            // filter that failed on a value.
            DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::ParquetError(_) => {
                // At debug level only: the text may quote a participant's value.
                tracing::debug!(error = %e, "execution error withheld from the client");
                PlannerError::Execution(
                    "a function could not be computed for some value (the message is withheld: \
                     it may quote participant data)"
                        .into(),
                )
            }
            _ => PlannerError::Execution(clean(&e)),
        }
    }
}

const WORKER_FAILED: &str = "a cluster worker failed or could not be reached while running the \
     query, which ended with this error (no complete result was produced): try again";

/// A cluster worker's gRPC failure: its status, or — when a worker failed reaching another
/// worker — that status re-sent by the worker as a generic error carrying the status's text
/// (datafusion-distributed keeps only the message of errors it does not know).
fn is_worker_failure(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    if inner.downcast_ref::<tonic::Status>().is_some() {
        return true;
    }
    let text = inner.to_string();
    text.starts_with("code: '") && text.contains("', message: ")
}

/// A failure to read the dataset's files somewhere in `e`'s chain, as a fixed message for the
/// client (the full error goes to the server's log: it names server paths and endpoints) and
/// whether the data itself is damaged rather than the store unreachable.
///
/// Only errors that cannot carry a value pass: the object store's, and the Parquet decoder's own.
/// A Parquet error that wraps an Arrow error (a pushed-down filter that failed on a value:
/// "Cannot cast string '…'") is not a storage failure, and its text stays withheld below; nor is
/// a bare io error (spilling to the local disk).
///
/// A remote Flight SQL source's failure is told by its kind: one that did not answer is worth a
/// retry like a store that did not; a refusal or another error is not.
fn storage_failure(e: &DataFusionError) -> Option<PlannerError> {
    use datafusion::arrow::error::ArrowError;
    use datafusion::parquet::errors::ParquetError;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = current {
        let found = if let Some(f) = error.downcast_ref::<strata_federation::FederationError>() {
            // Names the source and the kind of failure only (its own text is in the log).
            tracing::warn!(error = %f, "a remote source failed");
            return Some(match f {
                strata_federation::FederationError::Unreachable { .. } => PlannerError::Storage {
                    message: f.to_string(),
                    damaged: false,
                },
                _ => PlannerError::Execution(f.to_string()),
            });
        } else if let Some(DataFusionError::ObjectStore(o)) = error.downcast_ref() {
            Some(store_failure(o))
        } else if let Some(o) = error.downcast_ref::<object_store::Error>() {
            Some(store_failure(o))
        } else if let Some(p) = error.downcast_ref::<ParquetError>() {
            match p {
                ParquetError::External(inner) => {
                    if let Some(o) = inner.downcast_ref::<object_store::Error>() {
                        Some(store_failure(o))
                    } else if inner.downcast_ref::<std::io::Error>().is_some() {
                        Some((UNREACHABLE.to_string(), false))
                    } else {
                        return None;
                    }
                }
                ParquetError::ArrowError(_) => return None,
                _ => Some((UNDECODABLE.to_string(), true)),
            }
        } else if let Some(ArrowError::ParquetError(text)) = error.downcast_ref::<ArrowError>() {
            // The Arrow reader's decoding errors arrive as text; an Arrow error inside one (a
            // filter's) is rendered `External: …` or `Arrow: …`.
            if text.starts_with("External") || text.starts_with("Arrow") {
                return None;
            }
            Some((UNDECODABLE.to_string(), true))
        } else {
            None
        };
        if let Some((message, damaged)) = found {
            tracing::error!(error = %e, "the stored data could not be read");
            return Some(PlannerError::Storage { message, damaged });
        }
        current = match error.downcast_ref::<DataFusionError>() {
            // DataFusion's own chain (contexts, shared errors) before `source`, which skips
            // some wrappers.
            Some(DataFusionError::ArrowError(a, _)) => Some(a.as_ref()),
            Some(DataFusionError::ParquetError(p)) => Some(p.as_ref()),
            Some(DataFusionError::Context(_, inner)) => Some(inner.as_ref()),
            Some(DataFusionError::Shared(inner)) => Some(inner.as_ref()),
            Some(DataFusionError::External(inner)) => Some(inner.as_ref()),
            _ => error.source(),
        };
    }
    None
}

const UNDECODABLE: &str = "a data file does not decode: the dataset is damaged";
const MISSING: &str = "a data file is missing: the dataset is damaged";
const UNREACHABLE: &str = "the data store did not answer";

/// A file gone, or cut short on the local disk, is damage; anything else from a store (a refused
/// connection, a timeout) is the store not answering.
fn store_failure(e: &object_store::Error) -> (String, bool) {
    match e {
        object_store::Error::NotFound { .. } => (MISSING.to_string(), true),
        object_store::Error::Generic { store, .. } if *store == "LocalFileSystem" => {
            (UNDECODABLE.to_string(), true)
        }
        _ => (UNREACHABLE.to_string(), false),
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::error::ArrowError;
    use datafusion::parquet::errors::ParquetError;

    fn storage(e: DataFusionError) -> Option<(String, bool)> {
        match PlannerError::from_datafusion(e) {
            PlannerError::Storage { message, damaged } => Some((message, damaged)),
            _ => None,
        }
    }

    #[test]
    fn a_remote_source_that_did_not_answer_is_worth_a_retry_and_a_refusal_is_not() {
        use strata_federation::FederationError;
        let wrapped = |f: FederationError| {
            DataFusionError::Context(
                "RemoteScanExec".into(),
                Box::new(DataFusionError::External(Box::new(f))),
            )
        };
        let gone = wrapped(FederationError::Unreachable {
            store: "partner".into(),
        });
        assert_eq!(
            storage(gone),
            Some(("remote source 'partner' did not answer".to_string(), false))
        );
        let refused = wrapped(FederationError::Refused {
            store: "partner".into(),
            code: "Unauthenticated".into(),
            message: None,
        });
        match PlannerError::from_datafusion(refused) {
            PlannerError::Execution(m) => {
                assert!(m.contains("refused") && m.contains("partner"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Never taken for a cluster worker's failure.
        let failed = wrapped(FederationError::Failed {
            store: "partner".into(),
            code: "Internal".into(),
            message: None,
        });
        assert!(!matches!(
            PlannerError::from_datafusion(failed),
            PlannerError::Cluster(_)
        ));
    }

    #[test]
    fn a_file_that_does_not_decode_is_damaged_data_not_a_withheld_value() {
        // The Parquet reader's errors reach DataFusion wrapped in Arrow's external error, which
        // the value redaction would otherwise turn into "a function could not be computed".
        let decode = DataFusionError::ArrowError(
            Box::new(ArrowError::ExternalError(Box::new(ParquetError::General(
                "Invalid page header".into(),
            )))),
            None,
        );
        assert_eq!(storage(decode), Some((UNDECODABLE.to_string(), true)));
        let as_text = DataFusionError::ArrowError(
            Box::new(ArrowError::ParquetError("Invalid page header".into())),
            None,
        );
        assert_eq!(storage(as_text), Some((UNDECODABLE.to_string(), true)));
    }

    /// A pushed-down filter that fails on a value reaches DataFusion inside a Parquet error; its
    /// text quotes the value, and must stay withheld.
    #[test]
    fn a_filter_failing_inside_the_parquet_reader_is_not_passed_through() {
        let cast = ArrowError::CastError(
            "Cannot cast string 'SECRET-VALUE' to value of Int32 type".into(),
        );
        let wrapped = [
            DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
                ArrowError::ComputeError(format!("Error evaluating filter predicate: {cast:?}")),
            )))),
            DataFusionError::ArrowError(
                Box::new(ArrowError::ExternalError(Box::new(
                    ParquetError::ArrowError(cast.to_string()),
                ))),
                None,
            ),
            DataFusionError::ArrowError(
                Box::new(ArrowError::ParquetError(format!("External: {cast}"))),
                None,
            ),
        ];
        for e in wrapped {
            let shown = PlannerError::from_datafusion(e).to_string();
            assert!(!shown.contains("SECRET-VALUE"), "{shown}");
            assert!(!shown.contains("stored data"), "{shown}");
        }
    }

    #[test]
    fn a_missing_object_is_damage_and_an_unreachable_store_is_not() {
        let missing = DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
            object_store::Error::NotFound {
                path: "m/shard=1/part-0.parquet".into(),
                source: "gone".into(),
            },
        ))));
        assert_eq!(storage(missing), Some((MISSING.to_string(), true)));
        let unreachable = DataFusionError::ObjectStore(Box::new(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        }));
        assert_eq!(storage(unreachable), Some((UNREACHABLE.to_string(), false)));
        // Spilling to the local disk is not the dataset's storage.
        let spill = DataFusionError::Context(
            "spilling".into(),
            Box::new(DataFusionError::IoError(std::io::Error::other("disk full"))),
        );
        assert_eq!(storage(spill), None);
        assert!(storage(DataFusionError::Plan("no".into())).is_none());
    }
}
