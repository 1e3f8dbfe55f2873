//! The one place where the query service's errors become gRPC statuses.

use strata_query::QueryError;
use tonic::Status;

pub fn status(e: QueryError) -> Status {
    let message = e.message();
    match e {
        QueryError::Unauthenticated(_) => Status::unauthenticated(message),
        QueryError::Denied(_) | QueryError::UnavailableTable { denied: true, .. } => {
            Status::permission_denied(message)
        }
        QueryError::UnavailableTable { .. } => Status::invalid_argument(message),
        QueryError::NotFound(_) => Status::not_found(message),
        QueryError::Invalid(_) => Status::invalid_argument(message),
        QueryError::Unsupported(_) => Status::unimplemented(message),
        QueryError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        QueryError::AuditUnavailable | QueryError::ShuttingDown => Status::unavailable(message),
        QueryError::Storage { damaged: true, .. } => Status::data_loss(message),
        QueryError::Storage { damaged: false, .. } | QueryError::Cluster(_) => {
            Status::unavailable(message)
        }
        QueryError::Cancelled => Status::cancelled(message),
        QueryError::Execution(_) | QueryError::Internal(_) => Status::internal(message),
    }
}

/// Decoding and encoding failures of this door (Arrow IPC, Flight framing).
pub fn codec(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(strata_engine::error::first_line(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    /// The contract of the door: each kind of failure has its one gRPC code, and the message is
    /// one line.
    #[test]
    fn every_query_error_has_its_grpc_code() {
        let cases = [
            (
                QueryError::Unauthenticated("x".into()),
                Code::Unauthenticated,
            ),
            (QueryError::Denied("x".into()), Code::PermissionDenied),
            (QueryError::NotFound("x".into()), Code::NotFound),
            (QueryError::Invalid("x".into()), Code::InvalidArgument),
            (QueryError::Unsupported("x".into()), Code::Unimplemented),
            (
                QueryError::ResourcesExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (QueryError::AuditUnavailable, Code::Unavailable),
            (QueryError::ShuttingDown, Code::Unavailable),
            (QueryError::Cancelled, Code::Cancelled),
            (QueryError::Execution("x".into()), Code::Internal),
            (QueryError::Internal("x".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(status(error).code(), code);
        }
        let two_lines = status(QueryError::Invalid("first\nsecond".into()));
        assert_eq!(two_lines.message(), "first");
    }
}
