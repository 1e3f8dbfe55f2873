use strata_engine::EngineError;
use thiserror::Error;

/// Errors of importing data; one line each, naming the input that is wrong.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl IngestError {
    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        IngestError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

impl From<arrow::error::ArrowError> for IngestError {
    fn from(e: arrow::error::ArrowError) -> Self {
        IngestError::Engine(e.into())
    }
}

impl From<datafusion::error::DataFusionError> for IngestError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        IngestError::Engine(e.into())
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
