use strata_engine::EngineError;
use thiserror::Error;

/// Errors of generating data; one line each, naming the input that is wrong.
#[derive(Debug, Error)]
pub enum TestdataError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Input(String),
}

impl From<arrow::error::ArrowError> for TestdataError {
    fn from(e: arrow::error::ArrowError) -> Self {
        TestdataError::Engine(e.into())
    }
}

pub type Result<T, E = TestdataError> = std::result::Result<T, E>;
