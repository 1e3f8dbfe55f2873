//! Who is calling: every gRPC call's bearer passport is verified (expiry included) before any
//! handler runs, and the resulting `Principal` rides in the request's extensions.

use std::sync::Arc;

use strata_engine::Tier;
use strata_planner::passport::{PassportVerifier, now_unix};
use strata_planner::principal::{Egress, Principal};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

pub enum Auth {
    /// Passports verified against the configured JWKS.
    Passports(PassportVerifier),
    /// No `--jwks`: a development server on loopback; every caller is the local operator.
    OpenLoopback,
}

impl Auth {
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        match self {
            Auth::Passports(verifier) => {
                let header = match metadata.get("authorization") {
                    Some(v) => Some(v.to_str().map_err(|_| {
                        Status::unauthenticated("authorization header is not text")
                    })?),
                    None => None,
                };
                verifier
                    .verify(header, now_unix())
                    .map_err(|e| Status::unauthenticated(e.to_string()))
            }
            Auth::OpenLoopback => Ok(Principal {
                sub: "local-operator".into(),
                issuer: "strata:open-loopback".into(),
                tier: Tier::Controlled,
                egress: Egress::Rows,
                expires_at: None,
                visa_ids: Vec::new(),
                anonymous: false,
            }),
        }
    }
}

/// Tonic interceptor: authenticate, then hand the principal to the handler.
pub fn interceptor(
    auth: Arc<Auth>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let principal = auth.authenticate(request.metadata())?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The principal the interceptor attached.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a handler without authentication"))
}
