//! A gRPC request decoded into the query service's [`Call`]: the principal the interceptor
//! attached, the peer, and the workspace the client named.

use strata_query::{Call, Principal};
use tonic::Request;

pub fn call<T>(door: &'static str, request: &Request<T>) -> Call {
    let workspace = request
        .metadata()
        .get("x-strata-workspace")
        .and_then(|v| v.to_str().ok());
    Call::new(door)
        .with_principal(request.extensions().get::<Principal>().cloned())
        .with_peer(request.remote_addr().map(|a| a.to_string()))
        .with_workspace(workspace)
}

/// The Flight SQL door's calls.
pub fn flight<T>(request: &Request<T>) -> Call {
    call("flight", request)
}
