//! Who is calling: a passport presented through any door (a gRPC bearer header, a PostgreSQL
//! password) is verified, expiry included, into the [`Principal`] every later step works for.

use strata_engine::Tier;
use strata_passport::principal::{Egress, Principal};
use strata_passport::{PassportVerifier, now_unix};

use crate::error::QueryError;

pub enum Authenticator {
    /// Passports verified against the configured JWKS.
    Passports(PassportVerifier, PassportCache),
    /// No `--jwks`: a development server on loopback; every caller is the local operator.
    OpenLoopback,
}

impl Authenticator {
    pub fn passports(verifier: PassportVerifier) -> Self {
        Authenticator::Passports(verifier, passport_cache())
    }

    /// `authorization` is the whole header value, `Bearer <JWT>`; `None` when the caller sent
    /// none (anonymous, if the operator allows it).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, QueryError> {
        match self {
            Authenticator::Passports(verifier, cache) => {
                let now = now_unix();
                // The same token verifies the same way against the same keys: its signatures
                // are checked once, its expiry on every call.
                let key = authorization.map(|h| {
                    use sha2::Digest;
                    <[u8; 32]>::from(sha2::Sha256::digest(h.as_bytes()))
                });
                if let Some(k) = &key
                    && let Some(principal) = cache.get(k)
                {
                    if principal.is_expired(now) {
                        cache.invalidate(k);
                        return Err(QueryError::Unauthenticated(
                            "the passport has expired".into(),
                        ));
                    }
                    return Ok(principal);
                }
                let principal = verifier
                    .verify(authorization, now)
                    .map_err(|e| QueryError::Unauthenticated(e.to_string()))?;
                if let Some(k) = key {
                    cache.insert(k, principal.clone());
                }
                Ok(principal)
            }
            Authenticator::OpenLoopback => Ok(Principal {
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

/// Verified passports by the SHA-256 of the authorization value.
pub type PassportCache = moka::sync::Cache<[u8; 32], Principal>;

fn passport_cache() -> PassportCache {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(300))
        .build()
}
