//! Who is calling: a passport presented through any door (a gRPC bearer header, a PostgreSQL
//! password) is verified, expiry included, into the [`Principal`] every later step works for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use strata_engine::Tier;
use strata_passport::principal::{Egress, Principal};
use strata_passport::{AuthError, PassportVerifier, now_unix};

use crate::error::QueryError;

pub enum Authenticator {
    /// Passports verified against the configured JWKS.
    Passports(Jwks, PassportCache),
    /// No `--jwks`: a development server on loopback; every caller is the local operator.
    OpenLoopback,
}

/// The trusted keys, read again whenever their file changes: an issuer rotates or revokes a
/// key by rewriting the file, without a restart. A file that does not parse keeps the keys
/// loaded before (and says so in the log): a half-written or mistaken edit never locks every
/// caller out, nor lets anyone in.
pub struct Jwks {
    path: PathBuf,
    allow_anonymous: bool,
    loaded: RwLock<Loaded>,
}

struct Loaded {
    stamp: Stamp,
    /// The content the keys came from, and when it was last compared with the file: an edit in
    /// place that keeps the size within one tick of the clock leaves the stamp as it was.
    digest: [u8; 32],
    compared: Instant,
    verifier: Arc<PassportVerifier>,
    /// Counts the reloads: a cached verdict is good only under the keys that gave it.
    generation: u64,
}

/// What tells a changed file at the cost of one `stat`: modification time, size and inode (an
/// atomic rename).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl Jwks {
    pub fn open(path: &Path, allow_anonymous: bool) -> Result<Self, AuthError> {
        let seen = stamp(path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError::Config(format!("cannot read JWKS file {}: {e}", path.display()))
        })?;
        let verifier = PassportVerifier::from_jwks_text_of(path, &text, allow_anonymous)?;
        Ok(Jwks {
            path: path.to_path_buf(),
            allow_anonymous,
            loaded: RwLock::new(Loaded {
                stamp: seen,
                digest: digest(text.as_bytes()),
                compared: Instant::now(),
                verifier: Arc::new(verifier),
                generation: 0,
            }),
        })
    }

    /// The keys as the file has them now, and their generation; `reloaded` runs when they
    /// changed.
    fn current(&self, reloaded: impl FnOnce()) -> (Arc<PassportVerifier>, u64) {
        let now = stamp(&self.path);
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.stamp == now && loaded.compared.elapsed() < Duration::from_secs(1) {
                return (loaded.verifier.clone(), loaded.generation);
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if loaded.stamp != now || loaded.compared.elapsed() >= Duration::from_secs(1) {
            loaded.stamp = now;
            loaded.compared = Instant::now();
            self.reload(&mut loaded, reloaded);
        }
        (loaded.verifier.clone(), loaded.generation)
    }

    fn reload(&self, loaded: &mut Loaded, reloaded: impl FnOnce()) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(jwks = %self.path.display(), error = %e,
                    "the JWKS file cannot be read; the keys loaded before stay trusted");
                return;
            }
        };
        let now = digest(text.as_bytes());
        if now == loaded.digest {
            return;
        }
        loaded.digest = now;
        match PassportVerifier::from_jwks_text_of(&self.path, &text, self.allow_anonymous) {
            Ok(verifier) => {
                tracing::info!(jwks = %self.path.display(), "trusted keys reloaded");
                loaded.verifier = Arc::new(verifier);
                loaded.generation += 1;
                reloaded();
            }
            Err(e) => tracing::error!(
                jwks = %self.path.display(),
                error = %e,
                "the JWKS file changed but cannot be used; the keys loaded before stay trusted"
            ),
        }
    }
}

impl Authenticator {
    /// Passports against the JWKS at `path`, reloaded when it changes.
    pub fn jwks_file(path: &Path, allow_anonymous: bool) -> Result<Self, AuthError> {
        Ok(Authenticator::Passports(
            Jwks::open(path, allow_anonymous)?,
            passport_cache(),
        ))
    }

    /// `authorization` is the whole header value, `Bearer <JWT>`; `None` when the caller sent
    /// none (anonymous, if the operator allows it).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, QueryError> {
        match self {
            Authenticator::Passports(jwks, cache) => {
                // New keys void every verdict of the old ones (a revoked key's passports).
                let (verifier, generation) = jwks.current(|| cache.invalidate_all());
                let now = now_unix();
                // The same token verifies the same way against the same keys: its signatures
                // are checked once, its expiry on every call.
                let key = authorization.map(|h| {
                    use sha2::Digest;
                    <[u8; 32]>::from(sha2::Sha256::digest(h.as_bytes()))
                });
                if let Some(k) = &key
                    && let Some((principal, verified_by)) = cache.get(k)
                    && verified_by == generation
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
                    cache.insert(k, (principal.clone(), generation));
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

/// Verified passports by the SHA-256 of the authorization value, with the generation of the keys
/// that verified them.
pub type PassportCache = moka::sync::Cache<[u8; 32], (Principal, u64)>;

fn passport_cache() -> PassportCache {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(300))
        .build()
}
