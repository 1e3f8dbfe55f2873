use strata_engine::EngineError;
use thiserror::Error;

/// Errors of generating data; one line each, naming the input that is wrong.
#[derive(Debug, Error)]
pub enum TestdataError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl TestdataError {
    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        TestdataError::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

impl From<arrow::error::ArrowError> for TestdataError {
    fn from(e: arrow::error::ArrowError) -> Self {
        TestdataError::Engine(e.into())
    }
}

pub type Result<T, E = TestdataError> = std::result::Result<T, E>;
