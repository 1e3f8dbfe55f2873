use thiserror::Error;

/// What can go wrong with a remote source. A message that reaches a client names the source and
/// the kind of failure only: a remote server's own text may quote its rows, so it goes to the
/// operator's log (and, when the dataset opens, to the operator's terminal).
#[derive(Debug, Error)]
pub enum FederationError {
    #[error("remote source '{store}': {reason}")]
    Config { store: String, reason: String },
    #[error("remote source '{store}' did not answer")]
    Unreachable { store: String },
    #[error("remote source '{store}' refused the credential it was given ({code}){}", operator(.message))]
    Refused {
        store: String,
        code: String,
        /// The remote's own message: kept only when the dataset opens.
        message: Option<String>,
    },
    #[error("remote source '{store}' failed ({code}){}", detail(.message))]
    Failed {
        store: String,
        code: String,
        /// The remote's own message: kept only when the dataset opens (operator's eyes).
        message: Option<String>,
    },
    #[error("remote source '{store}' answered outside the protocol: {what}")]
    Protocol { store: String, what: String },
}

fn operator(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn detail(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_else(|| ": its message is in the server's log".into())
}

impl FederationError {
    /// A remote call's failure. `for_operator` keeps the remote's message (opening the dataset);
    /// otherwise it is logged and left out.
    pub(crate) fn from_status(store: &str, status: &tonic::Status, for_operator: bool) -> Self {
        use tonic::Code;
        let store = store.to_string();
        tracing::warn!(source = %store, code = ?status.code(), "a remote source call failed");
        // At debug level only: the remote's text may quote its rows.
        tracing::debug!(source = %store, message = %status.message(), "the remote's message");
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                FederationError::Unreachable { store }
            }
            Code::Unauthenticated | Code::PermissionDenied => FederationError::Refused {
                store,
                code: format!("{:?}", status.code()),
                message: for_operator.then(|| status.message().to_string()),
            },
            code => FederationError::Failed {
                store,
                code: format!("{code:?}"),
                message: for_operator.then(|| status.message().to_string()),
            },
        }
    }

    pub(crate) fn from_flight(
        store: &str,
        error: arrow_flight::error::FlightError,
        for_operator: bool,
    ) -> Self {
        use arrow_flight::error::FlightError as F;
        match error {
            F::Tonic(status) => Self::from_status(store, &status, for_operator),
            other => {
                tracing::warn!(source = %store, "a remote source sent what it should not");
                tracing::debug!(source = %store, error = %other, "the remote's answer");
                FederationError::Protocol {
                    store: store.to_string(),
                    what: match other {
                        F::Arrow(_) | F::DecodeError(_) => "data that does not decode".into(),
                        _ => "an unexpected message".into(),
                    },
                }
            }
        }
    }
}

pub type Result<T, E = FederationError> = std::result::Result<T, E>;
