//! Who is asking: the caller's identity, tier and egress mode, as derived from a data passport
//! (see `passport.rs`) or granted to anonymous callers when the operator enables them.

use std::fmt;

use strata_engine::Tier;

/// Clock-skew leeway, in seconds, applied to every time claim (`exp`, `nbf`, `iat`, `asserted`)
/// and to [`Principal::is_expired`].
pub const LEEWAY_SECS: i64 = 30;

/// What a principal may take out of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Egress {
    /// Row-level results of the tiers held (and aggregates).
    Rows,
    /// Aggregate results only: public tier, or a passport with `strata_egress: "aggregates"`.
    Aggregates,
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Egress::Rows => "rows",
            Egress::Aggregates => "aggregates",
        })
    }
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The passport's `sub` (`"anonymous"` for anonymous callers).
    pub sub: String,
    /// The passport's `iss` (empty for anonymous callers).
    pub issuer: String,
    pub tier: Tier,
    pub egress: Egress,
    /// Effective expiry (unix seconds): the earliest `exp` of the passport and of the visas that
    /// granted the tier. `None` only for anonymous callers.
    pub expires_at: Option<i64>,
    /// Ids of the visas that granted the tier: their `jti`, else `sha256:<hex>` of the visa JWT.
    pub visa_ids: Vec<String>,
    /// True when no token was presented (anonymous access enabled by the operator).
    pub anonymous: bool,
    /// The local operator of a development server (no `--jwks`, loopback only): sees the data
    /// as stored, without disclosure control.
    pub operator: bool,
}

impl Principal {
    /// The caller without a token: public tier, aggregates only, never expires.
    pub fn anonymous() -> Self {
        Principal {
            sub: "anonymous".to_string(),
            issuer: String::new(),
            tier: Tier::Public,
            egress: Egress::Aggregates,
            expires_at: None,
            visa_ids: Vec::new(),
            anonymous: true,
            operator: false,
        }
    }

    /// True once `now` (unix seconds) is at or past the effective expiry plus the clock-skew
    /// leeway — the same rule the verifier applies to `exp`. Check on every call.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at
            .is_some_and(|exp| now >= exp.saturating_add(LEEWAY_SECS))
    }

    /// A stable identity for binding tickets and prepared statements: issuer and subject,
    /// length-prefixed so that no two (issuer, sub) pairs share a key. Tier and expiry are not
    /// part of it (re-check them on every use).
    pub fn key(&self) -> String {
        if self.anonymous {
            return "anonymous".to_string();
        }
        format!("{}:{}{}", self.issuer.len(), self.issuer, self.sub)
    }

    /// The principal as a statement was planned for: its identity with the tier and egress
    /// mode of the passport it presented. Tickets and prepared-statement handles are bound to
    /// it, so that a plan made under a higher tier (real dates, 89+ participants) or row-level
    /// egress is never redeemed with another passport of the same subject.
    pub fn session_key(&self) -> String {
        format!("{}|{}|{:?}", self.key(), self.tier, self.egress)
    }

    /// Whether this principal may read data of tier `tier`.
    pub fn may_read(&self, tier: Tier) -> bool {
        self.tier >= tier
    }

    /// True for principals that may receive aggregate results only.
    pub fn aggregates_only(&self) -> bool {
        self.egress == Egress::Aggregates || self.tier == Tier::Public
    }
}

impl fmt::Display for Principal {
    /// `sub@issuer (tier, egress)` — for logs; holds no secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.anonymous {
            write!(f, "anonymous ({}, {})", self.tier, self.egress)
        } else {
            write!(
                f,
                "{}@{} ({}, {})",
                self.sub, self.issuer, self.tier, self.egress
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_public_aggregates_and_never_expires() {
        let p = Principal::anonymous();
        assert_eq!(p.tier, Tier::Public);
        assert_eq!(p.egress, Egress::Aggregates);
        assert!(p.anonymous);
        assert!(!p.is_expired(i64::MAX));
        assert!(p.aggregates_only());
        assert_eq!(p.key(), "anonymous");
    }

    #[test]
    fn expiry_has_leeway() {
        let mut p = Principal::anonymous();
        p.anonymous = false;
        p.expires_at = Some(1_000);
        assert!(!p.is_expired(1_000));
        assert!(!p.is_expired(1_000 + LEEWAY_SECS - 1));
        assert!(p.is_expired(1_000 + LEEWAY_SECS));
    }

    #[test]
    fn keys_are_unambiguous() {
        let mut a = Principal::anonymous();
        a.anonymous = false;
        a.issuer = "https://a/".into();
        a.sub = "bc".into();
        let mut b = a.clone();
        b.issuer = "https://a/b".into();
        b.sub = "c".into();
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), "anonymous");
    }
}
