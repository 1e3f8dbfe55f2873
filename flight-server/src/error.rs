//! The one place where errors become gRPC statuses.

use strata_engine::EngineError;
use strata_planner::PlannerError;
use thiserror::Error;
use tonic::Status;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Planner(#[from] PlannerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Arrow(String),
}

impl From<arrow::error::ArrowError> for ServerError {
    fn from(e: arrow::error::ArrowError) -> Self {
        ServerError::Arrow(strata_engine::error::first_line(&e.to_string()))
    }
}

impl From<arrow_flight::error::FlightError> for ServerError {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        ServerError::Arrow(strata_engine::error::first_line(&e.to_string()))
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let message = strata_engine::error::first_line(&e.to_string());
        match e {
            ServerError::Planner(p) => match p {
                PlannerError::InvalidQuery(_) => Status::invalid_argument(message),
                PlannerError::NotPermitted(_) => Status::permission_denied(message),
                PlannerError::Unsupported(_) => Status::unimplemented(message),
                PlannerError::ResourcesExhausted(_) => Status::resource_exhausted(message),
                PlannerError::Execution(_) => Status::internal(message),
                PlannerError::Internal(_) => Status::internal(message),
            },
            ServerError::Engine(EngineError::InvalidInput(_)) => Status::invalid_argument(message),
            ServerError::Engine(_) | ServerError::Arrow(_) => Status::internal(message),
        }
    }
}
