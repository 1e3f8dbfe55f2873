use std::path::Path;

use thiserror::Error;

/// Errors of the storage engine. Messages are one line, name what is wrong, never carry data.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{0} is not a Strata dataset (no catalog.toml)")]
    NotADataset(String),
    #[error("bad catalog: {0}")]
    Catalog(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error("object store: {0}")]
    ObjectStore(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("{0}")]
    DataFusion(String),
    /// A table of a remote Flight SQL source that could not be opened.
    #[error("table {table}: {error}")]
    Remote {
        table: String,
        error: strata_federation::FederationError,
    },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

impl From<object_store::Error> for EngineError {
    fn from(e: object_store::Error) -> Self {
        EngineError::ObjectStore(first_line(&e.to_string()))
    }
}

impl From<parquet::errors::ParquetError> for EngineError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        EngineError::Parquet(first_line(&e.to_string()))
    }
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        EngineError::DataFusion(first_line(&e.to_string()))
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        EngineError::DataFusion(first_line(&e.to_string()))
    }
}

/// Multi-line upstream messages (backtraces, plans) are cut to their first line at the source so
/// nothing further up has to think about it.
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
