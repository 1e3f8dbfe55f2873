//! The one place where the query service's errors become gRPC statuses.

use strata_query::QueryError;
use tonic::Status;

pub fn status(e: QueryError) -> Status {
    let message = e.message();
    match e {
        QueryError::Unauthenticated(_) => Status::unauthenticated(message),
        QueryError::Denied(_) => Status::permission_denied(message),
        QueryError::NotFound(_) => Status::not_found(message),
        QueryError::Invalid(_) => Status::invalid_argument(message),
        QueryError::Unsupported(_) => Status::unimplemented(message),
        QueryError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        QueryError::AuditUnavailable => Status::unavailable(message),
        QueryError::Cancelled => Status::cancelled(message),
        QueryError::Execution(_) | QueryError::Internal(_) => Status::internal(message),
    }
}

/// Decoding and encoding failures of this door (Arrow IPC, Flight framing).
pub fn codec(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(strata_engine::error::first_line(&e.to_string()))
}
