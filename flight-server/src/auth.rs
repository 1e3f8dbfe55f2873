//! Who is calling: every gRPC call's bearer passport is verified (expiry included) before any
//! handler runs, and the resulting `Principal` rides in the request's extensions.

use std::sync::Arc;

use strata_engine::Tier;
use strata_planner::passport::{PassportVerifier, now_unix};
use strata_planner::principal::{Egress, Principal};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::audit::AuditLog;

pub enum Auth {
    /// Passports verified against the configured JWKS.
    Passports(PassportVerifier, PassportCache),
    /// No `--jwks`: a development server on loopback; every caller is the local operator.
    OpenLoopback,
}

impl Auth {
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        match self {
            Auth::Passports(verifier, cache) => {
                let header = match metadata.get("authorization") {
                    Some(v) => Some(v.to_str().map_err(|_| {
                        Status::unauthenticated("authorization header is not text")
                    })?),
                    None => None,
                };
                let now = now_unix();
                // The same token verifies the same way against the same keys: its signatures
                // are checked once, its expiry on every call.
                let key = header.map(|h| {
                    use sha2::Digest;
                    <[u8; 32]>::from(sha2::Sha256::digest(h.as_bytes()))
                });
                if let Some(k) = &key
                    && let Some(principal) = cache.get(k)
                {
                    if principal.is_expired(now) {
                        cache.invalidate(k);
                        return Err(Status::unauthenticated("the passport has expired"));
                    }
                    return Ok(principal);
                }
                let principal = verifier
                    .verify(header, now)
                    .map_err(|e| Status::unauthenticated(e.to_string()))?;
                if let Some(k) = key {
                    cache.insert(k, principal.clone());
                }
                Ok(principal)
            }
            Auth::OpenLoopback => Ok(Principal {
                sub: "local-operator".into(),
                issuer: "strata:open-loopback".into(),
                tier: Tier::Controlled,
                egress: Egress::Rows,
                expires_at: None,
                visa_ids: Vec::new(),
                anonymous: false,
                operator: true,
            }),
        }
    }
}

/// Verified passports by the SHA-256 of the bearer header.
pub type PassportCache = moka::sync::Cache<[u8; 32], Principal>;

pub fn passport_cache() -> PassportCache {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(300))
        .build()
}

/// Tonic interceptor: authenticate, then hand the principal to the handler. A refused token
/// leaves an audit record (who it claimed to be is not trusted, so not recorded).
pub fn interceptor(
    auth: Arc<Auth>,
    audit: Arc<AuditLog>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let principal = match auth.authenticate(request.metadata()) {
            Ok(p) => p,
            Err(status) => {
                let mut record = crate::service::audit_record(&request, "authenticate");
                record.outcome = "unauthenticated".into();
                record.error = Some(status.message().to_string());
                audit.submit(&record);
                return Err(status);
            }
        };
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
