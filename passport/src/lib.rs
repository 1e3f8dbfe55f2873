//! Data passports (DESIGN.md, "Passports"): verify a GA4GH Passport v1.2 bearer token and its visas
//! against the configured JWKS, and derive the caller's [`Principal`] — tier, egress mode and
//! effective expiry.
//!
//! # Token rules
//! - `authorization: Bearer <JWT>`; the scheme is case-insensitive. No header → anonymous
//!   principal if the operator enabled anonymous access, else `Unauthenticated`.
//! - Passport header: `typ` `vnd.ga4gh.passport+jwt` (media-type rules: case-insensitive, an
//!   `application/` prefix allowed), `alg` exactly `RS256` or `ES256` (`none`, HMAC and anything
//!   else refused), no `crit`. `kid` picks the key; without `kid` every key of the issuer with that
//!   algorithm is tried. `jku`, `jwk`, `x5u`, `x5c` header members are never used or fetched.
//! - Passport claims: `iss` (a trusted issuer), `sub`, `exp` required; `nbf`/`iat` honoured;
//!   `ga4gh_passport_v1` a list of visa JWT strings (at most [`MAX_VISAS`]); optional
//!   `strata_egress` `"rows"` or `"aggregates"`. All time checks allow [`LEEWAY_SECS`] of skew.
//! - Anything wrong with the passport itself (malformed, bad signature, untrusted issuer or key,
//!   expired, not yet valid) → [`AuthError::Unauthenticated`] with a one-line message that never
//!   echoes the token.
//! - A visa that fails any check is *ignored* (never an error): wrong `alg`/`typ`, untrusted key,
//!   bad signature, expired, not yet valid, `sub` or `iss` differing from the passport's, a
//!   malformed `ga4gh_visa_v1`, `asserted` in the future, or non-empty `conditions` (which this
//!   server cannot evaluate). Visa `typ`, when present, must be `JWT` or `vnd.ga4gh.visa+jwt`.
//!   Type and value match exactly, case-sensitively.
//!
//! # Tiers
//! - registered: `ResearcherStatus` = `urn:strata:researcher:verified`, and
//!   `AcceptedTermsAndPolicies` = `urn:strata:terms:ducc` and = `urn:strata:terms:rcr-training`;
//! - controlled: registered and `ControlledAccessGrants` = `urn:strata:tier:controlled`;
//! - public: anything less. Public principals are always aggregates-only.
//!
//! The visas used are, per required (type, value), the valid visa with the latest `exp`; the
//! effective expiry is the minimum of the passport's `exp` and those visas' `exp`.
//!
//! # JWKS file (`strata serve --jwks FILE`)
//! A standard JWK Set (`{"keys": [...]}`) whose keys are tied to issuer URLs, either per key by a
//! non-standard `"iss"` member, or for all keys without one by a top-level `"issuer"` member:
//!
//! ```json
//! {"issuer": "https://default.example/issuer",
//!  "keys": [{"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "kid": "…", "alg": "ES256",
//!            "use": "sig", "iss": "https://dev.strata.local/issuer"},
//!           {"kty": "RSA", "n": "…", "e": "AQAB", "kid": "…", "alg": "RS256"}]}
//! ```
//! A key signs only for its issuer. Accepted keys: `kty` `EC` with `crv` `P-256` (ES256) and `kty`
//! `RSA` of 2048–4096 bits (RS256); `alg`, when given, must agree; `kid` is required and unique
//! per issuer; keys with `use` other than `sig` are skipped, as are keys of other algorithms
//! (with a warning). Symmetric (`oct`) keys and keys holding private parts (`d`) are refused.
//! `strata keys` writes a file of this form (one ES256 key, per-key `iss`).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use strata_engine::Tier;

pub mod principal;

pub use crate::principal::{Egress, LEEWAY_SECS, Principal};

pub const PASSPORT_TYP: &str = "vnd.ga4gh.passport+jwt";
pub const VISA_TYP: &str = "vnd.ga4gh.visa+jwt";
pub const PASSPORT_CLAIM: &str = "ga4gh_passport_v1";
pub const VISA_CLAIM: &str = "ga4gh_visa_v1";
pub const EGRESS_CLAIM: &str = "strata_egress";

pub const RESEARCHER_STATUS: &str = "ResearcherStatus";
pub const ACCEPTED_TERMS: &str = "AcceptedTermsAndPolicies";
pub const CONTROLLED_GRANTS: &str = "ControlledAccessGrants";
pub const RESEARCHER_VERIFIED: &str = "urn:strata:researcher:verified";
pub const TERMS_DUCC: &str = "urn:strata:terms:ducc";
pub const TERMS_RCR_TRAINING: &str = "urn:strata:terms:rcr-training";
pub const TIER_CONTROLLED: &str = "urn:strata:tier:controlled";

/// Longest bearer token accepted (bytes).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Most visas examined in one passport.
pub const MAX_VISAS: usize = 64;

/// Why a caller was not authenticated, or why the verifier could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Map to gRPC UNAUTHENTICATED. One line; never contains the token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The JWKS file could not be read or holds no usable key (a startup error).
    #[error("{0}")]
    Config(String),
}

fn unauth(msg: impl Into<String>) -> AuthError {
    AuthError::Unauthenticated(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }
}

struct TrustedKey {
    issuer: String,
    kid: String,
    alg: Alg,
    key: DecodingKey,
}

/// Verifies passports against keys configured up front. Cheap to share (`Arc`), `Send + Sync`.
pub struct PassportVerifier {
    keys: Vec<TrustedKey>,
    allow_anonymous: bool,
}

impl std::fmt::Debug for PassportVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{} {:?} {}", k.issuer, k.alg, k.kid))
            .collect();
        f.debug_struct("PassportVerifier")
            .field("keys", &keys)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

/// A visa that passed every check.
#[derive(Debug, Clone)]
struct ValidVisa {
    ty: String,
    value: String,
    exp: i64,
    id: String,
}

/// A compact JWS split into its decoded parts.
struct Jws<'a> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

fn parse_jws(token: &str) -> Result<Jws<'_>, &'static str> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (expected three base64url parts)");
    };
    let header = decode_json_part(h).ok_or("JWT header is not base64url JSON")?;
    let claims = decode_json_part(c).ok_or("JWT claims are not base64url JSON")?;
    if s.is_empty() {
        return Err("JWT is unsigned");
    }
    Ok(Jws {
        header,
        claims,
        signing_input: &token[..h.len() + 1 + c.len()],
        signature: s,
    })
}

fn decode_json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Media-type comparison for `typ` (RFC 7515 §4.1.9).
fn typ_is(typ: &str, expected: &str) -> bool {
    const PREFIX: &str = "application/";
    let t = typ.trim();
    // `get` (not indexing): the header is attacker-controlled and may hold multi-byte characters.
    let t = match (t.get(..PREFIX.len()), t.get(PREFIX.len()..)) {
        (Some(p), Some(rest)) if p.eq_ignore_ascii_case(PREFIX) => rest,
        _ => t,
    };
    t.eq_ignore_ascii_case(expected)
}

/// A JWT NumericDate claim: an integer or a number (fraction dropped); `None` if absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                Ok(Some(
                    f.floor().clamp(i64::MIN as f64, i64::MAX as f64) as i64
                ))
            } else {
                Err(())
            }
        }
        Some(_) => Err(()),
    }
}

fn nonempty_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Which of a JWT's time checks failed.
enum TimeFault {
    Expired,
    NotYetValid,
    IssuedInFuture,
    Malformed,
}

/// Checks `exp` (required), `nbf` and `iat`, with leeway; returns `exp`.
fn check_times(claims: &Map<String, Value>, now: i64) -> Result<i64, TimeFault> {
    let exp = numeric_date(claims, "exp")
        .map_err(|_| TimeFault::Malformed)?
        .ok_or(TimeFault::Malformed)?;
    let nbf = numeric_date(claims, "nbf").map_err(|_| TimeFault::Malformed)?;
    let iat = numeric_date(claims, "iat").map_err(|_| TimeFault::Malformed)?;
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(TimeFault::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf) {
        return Err(TimeFault::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS)) {
        return Err(TimeFault::IssuedInFuture);
    }
    Ok(exp)
}

impl PassportVerifier {
    /// Loads the trusted keys from a JWKS file (format in the module docs).
    pub fn from_jwks_file(path: &Path, allow_anonymous: bool) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError::Config(format!("cannot read JWKS file {}: {e}", path.display()))
        })?;
        Self::from_jwks_text_of(path, &text, allow_anonymous)
    }

    /// [`PassportVerifier::from_jwks_json`] for the text read from `path` (named in errors).
    pub fn from_jwks_text_of(
        path: &Path,
        text: &str,
        allow_anonymous: bool,
    ) -> Result<Self, AuthError> {
        Self::from_jwks_json(text, allow_anonymous).map_err(|e| match e {
            AuthError::Config(msg) => AuthError::Config(format!("JWKS {}: {msg}", path.display())),
            other => other,
        })
    }

    /// Loads the trusted keys from JWKS text (format in the module docs).
    pub fn from_jwks_json(text: &str, allow_anonymous: bool) -> Result<Self, AuthError> {
        let cfg = |m: String| AuthError::Config(m);
        let doc: Value =
            serde_json::from_str(text).map_err(|e| cfg(format!("not valid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(cfg("expected a JSON object with a \"keys\" list".into()));
        };
        let default_issuer = match doc.get("issuer") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(cfg("\"issuer\" must be a non-empty string".into())),
        };
        let Some(Value::Array(jwks)) = doc.get("keys") else {
            return Err(cfg("expected a \"keys\" list".into()));
        };
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (i, jwk) in jwks.iter().enumerate() {
            let Value::Object(jwk) = jwk else {
                return Err(cfg(format!("keys[{i}] is not an object")));
            };
            if let Some(key) = parse_jwk(i, jwk, default_issuer.as_deref())? {
                if keys
                    .iter()
                    .any(|k| k.issuer == key.issuer && k.kid == key.kid)
                {
                    return Err(cfg(format!(
                        "keys[{i}]: kid {:?} appears twice for issuer {}",
                        key.kid, key.issuer
                    )));
                }
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(cfg("no usable RS256 or ES256 signing key".into()));
        }
        Ok(PassportVerifier {
            keys,
            allow_anonymous,
        })
    }

    /// A verifier that trusts no issuer: every token is refused; no token gives the anonymous
    /// principal only if `allow_anonymous`.
    pub fn without_keys(allow_anonymous: bool) -> Self {
        PassportVerifier {
            keys: Vec::new(),
            allow_anonymous,
        }
    }

    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// The trusted issuer URLs (sorted, deduplicated), for startup logs.
    pub fn issuers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.iter().map(|k| k.issuer.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Authenticates a request from its raw `authorization` header value at time `now` (unix s).
    pub fn verify(&self, authorization: Option<&str>, now: i64) -> Result<Principal, AuthError> {
        let raw = authorization.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return if self.allow_anonymous {
                Ok(Principal::anonymous())
            } else {
                Err(unauth(
                    "no passport: send 'authorization: Bearer <passport JWT>' (anonymous access is disabled)",
                ))
            };
        }
        let token = match raw.split_once(char::is_whitespace) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => return Err(unauth("authorization must be 'Bearer <passport JWT>'")),
        };
        if token.is_empty() {
            return Err(unauth("authorization must be 'Bearer <passport JWT>'"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauth(format!(
                "passport is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        self.verify_passport(token, now)
    }

    fn verify_passport(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let jws = parse_jws(token).map_err(|m| unauth(format!("malformed passport: {m}")))?;
        let alg = jws
            .header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or_else(|| unauth("passport alg must be RS256 or ES256"))?;
        match jws.header.get("typ").and_then(Value::as_str) {
            Some(t) if typ_is(t, PASSPORT_TYP) => {}
            _ => return Err(unauth(format!("passport typ must be {PASSPORT_TYP}"))),
        }
        if jws.header.contains_key("crit") {
            return Err(unauth("passport header has unsupported crit extensions"));
        }
        let issuer = nonempty_str(&jws.claims, "iss")
            .ok_or_else(|| unauth("malformed passport: no iss claim"))?;
        let sub = nonempty_str(&jws.claims, "sub")
            .ok_or_else(|| unauth("malformed passport: no sub claim"))?;
        self.check_signature(&jws, issuer, alg)
            .map_err(|fault| unauth(format!("passport {fault}")))?;
        let exp = check_times(&jws.claims, now).map_err(|f| {
            unauth(match f {
                TimeFault::Expired => "passport expired",
                TimeFault::NotYetValid => "passport not yet valid (nbf)",
                TimeFault::IssuedInFuture => "passport issued in the future (iat)",
                TimeFault::Malformed => {
                    "malformed passport: exp, nbf and iat must be numeric dates (exp is required)"
                }
            })
        })?;
        let egress = match jws.claims.get(EGRESS_CLAIM) {
            None | Some(Value::Null) => Egress::Rows,
            Some(Value::String(s)) if s == "rows" => Egress::Rows,
            Some(Value::String(s)) if s == "aggregates" => Egress::Aggregates,
            Some(_) => {
                return Err(unauth(format!(
                    "malformed passport: {EGRESS_CLAIM} must be \"rows\" or \"aggregates\""
                )));
            }
        };
        let visas = match jws.claims.get(PASSPORT_CLAIM) {
            Some(Value::Array(v)) => v,
            _ => {
                return Err(unauth(format!(
                    "malformed passport: {PASSPORT_CLAIM} must be a list of visa JWTs"
                )));
            }
        };
        if visas.len() > MAX_VISAS {
            return Err(unauth(format!(
                "passport holds more than {MAX_VISAS} visas"
            )));
        }
        let mut valid = Vec::new();
        for (i, visa) in visas.iter().enumerate() {
            let Some(visa) = visa.as_str() else {
                return Err(unauth(format!(
                    "malformed passport: {PASSPORT_CLAIM} must be a list of visa JWTs"
                )));
            };
            match self.check_visa(visa, issuer, sub, now) {
                Ok(v) => valid.push(v),
                Err(why) => tracing::debug!(visa = i, sub, "visa ignored: {why}"),
            }
        }
        let (tier, used) = derive_tier(&valid);
        let expires_at = used.iter().map(|v| v.exp).fold(exp, i64::min);
        Ok(Principal {
            sub: sub.to_string(),
            issuer: issuer.to_string(),
            tier,
            egress: if tier == Tier::Public {
                Egress::Aggregates
            } else {
                egress
            },
            expires_at: Some(expires_at),
            visa_ids: used.iter().map(|v| v.id.clone()).collect(),
            anonymous: false,
            operator: false,
        })
    }

    /// Finds the issuer's key(s) for `alg` (by `kid` when given) and checks the signature.
    fn check_signature(&self, jws: &Jws<'_>, issuer: &str, alg: Alg) -> Result<(), &'static str> {
        let kid = match jws.header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err("kid is not a string"),
        };
        let mut of_issuer = self.keys.iter().filter(|k| k.issuer == issuer).peekable();
        if of_issuer.peek().is_none() {
            return Err("issuer is not trusted");
        }
        let candidates: Vec<&TrustedKey> = of_issuer
            .filter(|k| k.alg == alg && kid.is_none_or(|kid| k.kid == kid))
            .collect();
        if candidates.is_empty() {
            return Err("signing key (kid and alg) is not among the issuer's trusted keys");
        }
        for key in candidates {
            if let Ok(true) = jsonwebtoken::crypto::verify(
                jws.signature,
                jws.signing_input.as_bytes(),
                &key.key,
                alg.jwt(),
            ) {
                return Ok(());
            }
        }
        Err("signature is invalid")
    }

    /// All checks of one visa; `Err` says why it is ignored (for debug logs).
    fn check_visa(
        &self,
        token: &str,
        issuer: &str,
        sub: &str,
        now: i64,
    ) -> Result<ValidVisa, &'static str> {
        let jws = parse_jws(token)?;
        let alg = jws
            .header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or("alg is not RS256 or ES256")?;
        match jws.header.get("typ") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if typ_is(t, VISA_TYP) || typ_is(t, "JWT") => {}
            Some(_) => return Err("typ is not a visa type"),
        }
        if jws.header.contains_key("crit") {
            return Err("unsupported crit extensions");
        }
        if nonempty_str(&jws.claims, "iss") != Some(issuer) {
            return Err("iss differs from the passport's");
        }
        if nonempty_str(&jws.claims, "sub") != Some(sub) {
            return Err("sub differs from the passport's");
        }
        self.check_signature(&jws, issuer, alg)?;
        let exp = check_times(&jws.claims, now).map_err(|f| match f {
            TimeFault::Expired => "expired",
            TimeFault::NotYetValid => "not yet valid",
            TimeFault::IssuedInFuture => "issued in the future",
            TimeFault::Malformed => "bad or missing exp/nbf/iat",
        })?;
        let Some(Value::Object(visa)) = jws.claims.get(VISA_CLAIM) else {
            return Err("no ga4gh_visa_v1 object");
        };
        let ty = visa
            .get("type")
            .and_then(Value::as_str)
            .ok_or("no visa type")?;
        let value = visa
            .get("value")
            .and_then(Value::as_str)
            .ok_or("no visa value")?;
        visa.get("source")
            .and_then(Value::as_str)
            .ok_or("no visa source")?;
        match visa.get("by") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err("visa by is not a string"),
        }
        let asserted = numeric_date(visa, "asserted")
            .ok()
            .flatten()
            .ok_or("no numeric asserted")?;
        if asserted > now.saturating_add(LEEWAY_SECS) {
            return Err("asserted in the future");
        }
        match visa.get("conditions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(c)) if c.is_empty() => {}
            Some(_) => return Err("has conditions this server cannot evaluate"),
        }
        let id = match nonempty_str(&jws.claims, "jti") {
            Some(jti) if jti.len() <= 256 => jti.to_string(),
            _ => {
                let digest = Sha256::digest(token.as_bytes());
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        Ok(ValidVisa {
            ty: ty.to_string(),
            value: value.to_string(),
            exp,
            id,
        })
    }
}

/// Parses one JWK; `Ok(None)` for keys that are skipped (other algorithms, encryption keys).
fn parse_jwk(
    i: usize,
    jwk: &Map<String, Value>,
    default_issuer: Option<&str>,
) -> Result<Option<TrustedKey>, AuthError> {
    let cfg = |m: String| AuthError::Config(format!("keys[{i}]: {m}"));
    let str_member = |name: &str| -> Result<Option<&str>, AuthError> {
        match jwk.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(cfg(format!("\"{name}\" must be a string"))),
        }
    };
    let kty = str_member("kty")?.ok_or_else(|| cfg("no \"kty\"".into()))?;
    if kty == "oct" {
        return Err(cfg(
            "symmetric (oct) keys are not accepted: passports are signed RS256 or ES256".into(),
        ));
    }
    if jwk.contains_key("d") || jwk.contains_key("p") || jwk.contains_key("q") {
        return Err(cfg(
            "holds private key material; a JWKS must hold public keys only".into(),
        ));
    }
    let kid = str_member("kid")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| cfg("no \"kid\"".into()))?
        .to_string();
    let issuer = match str_member("iss")? {
        Some(iss) if !iss.is_empty() => iss.to_string(),
        Some(_) => return Err(cfg("\"iss\" is empty".into())),
        None => default_issuer
            .ok_or_else(|| {
                cfg(format!(
                    "key {kid:?} names no issuer: add \"iss\" to the key or a top-level \"issuer\""
                ))
            })?
            .to_string(),
    };
    if let Some(u) = str_member("use")?
        && u != "sig"
    {
        tracing::warn!(kid, "JWKS key skipped: use is {u:?}, not sig");
        return Ok(None);
    }
    let declared = str_member("alg")?;
    let alg = match (kty, declared) {
        ("RSA", None | Some("RS256")) => Alg::Rs256,
        ("EC", None | Some("ES256")) => Alg::Es256,
        _ => {
            tracing::warn!(kid, kty, alg = ?declared, "JWKS key skipped: not an RS256 or ES256 key");
            return Ok(None);
        }
    };
    let b64 = |name: &str| -> Result<Vec<u8>, AuthError> {
        let s = str_member(name)?.ok_or_else(|| cfg(format!("no \"{name}\"")))?;
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| cfg(format!("\"{name}\" is not base64url")))
    };
    let key = match alg {
        Alg::Es256 => {
            if str_member("crv")? != Some("P-256") {
                tracing::warn!(kid, "JWKS key skipped: EC key not on P-256");
                return Ok(None);
            }
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(cfg("P-256 x and y must be 32 bytes each".into()));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            p256::PublicKey::from_sec1_bytes(&point)
                .map_err(|_| cfg("x, y is not a point on P-256".into()))?;
            DecodingKey::from_ec_der(&point)
        }
        Alg::Rs256 => {
            let n = b64("n")?;
            let e = b64("e")?;
            let n_trim: &[u8] = {
                let start = n.iter().position(|&b| b != 0).unwrap_or(n.len());
                &n[start..]
            };
            let bits = n_trim.len() * 8 - n_trim.first().map_or(0, |b| b.leading_zeros() as usize);
            if !(2048..=4096).contains(&bits) {
                return Err(cfg(format!(
                    "RSA modulus of {bits} bits (2048 to 4096 accepted)"
                )));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(cfg("bad RSA exponent".into()));
            }
            DecodingKey::from_rsa_raw_components(n_trim, &e)
        }
    };
    Ok(Some(TrustedKey {
        issuer,
        kid,
        alg,
        key,
    }))
}

/// The tier granted by a set of valid visas, and the visas that grant it.
fn derive_tier(valid: &[ValidVisa]) -> (Tier, Vec<&ValidVisa>) {
    let mut best: HashMap<(&str, &str), &ValidVisa> = HashMap::new();
    for v in valid {
        let e = best.entry((v.ty.as_str(), v.value.as_str())).or_insert(v);
        if v.exp > e.exp {
            *e = v;
        }
    }
    let get = |ty: &str, value: &str| best.get(&(ty, value)).copied();
    let registered = [
        get(RESEARCHER_STATUS, RESEARCHER_VERIFIED),
        get(ACCEPTED_TERMS, TERMS_DUCC),
        get(ACCEPTED_TERMS, TERMS_RCR_TRAINING),
    ];
    if registered.iter().any(Option::is_none) {
        return (Tier::Public, Vec::new());
    }
    let mut used: Vec<&ValidVisa> = registered.into_iter().flatten().collect();
    match get(CONTROLLED_GRANTS, TIER_CONTROLLED) {
        Some(c) => {
            used.push(c);
            (Tier::Controlled, used)
        }
        None => (Tier::Registered, used),
    }
}

/// The current time in unix seconds (for [`PassportVerifier::verify`] and
/// [`Principal::is_expired`]).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Dev issuer and passport minting for `strata keys`, `strata token`, `strata demo` and tests:
/// an ES256 (P-256) key pair, and passports of any tier, including deliberately broken ones.
pub mod dev;

#[cfg(test)]
mod tests {
    use super::dev::*;
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;
    const ISS: &str = DEFAULT_ISSUER;

    fn issuer() -> DevIssuer {
        // One key per test binary run is plenty; keygen is cheap for P-256.
        DevIssuer::generate(ISS)
    }

    fn verifier(iss: &DevIssuer) -> PassportVerifier {
        PassportVerifier::from_jwks_json(&iss.jwks().to_string(), false).unwrap()
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    fn verify(v: &PassportVerifier, token: &str) -> Result<Principal, AuthError> {
        v.verify(Some(&bearer(token)), NOW)
    }

    fn mint(iss: &DevIssuer, tier: Tier, f: impl FnOnce(&mut TokenSpec)) -> String {
        let mut spec = TokenSpec::new(tier, "alice", NOW);
        f(&mut spec);
        mint_passport(iss, &spec)
    }

    /// A passport with hand-made visas (claims given in full), signed by `iss`.
    fn passport_with(iss: &DevIssuer, visas: Vec<String>, exp: i64) -> String {
        let claims = json!({"iss": ISS, "sub": "alice", "iat": NOW, "exp": exp,
                            PASSPORT_CLAIM: visas});
        iss.sign(&passport_header(), &claims)
    }

    fn visa(kind: VisaKind, exp: i64) -> Value {
        visa_claims(ISS, "alice", kind, NOW - 10, exp, ISS)
    }

    fn signed(iss: &DevIssuer, claims: &Value) -> String {
        iss.sign(&visa_header(), claims)
    }

    fn registered_visas(iss: &DevIssuer) -> Vec<String> {
        VisaKind::for_tier(Tier::Registered)
            .into_iter()
            .map(|k| signed(iss, &visa(k, NOW + 3600)))
            .collect()
    }

    fn assert_unauth(r: Result<Principal, AuthError>, needle: &str) {
        match r {
            Err(AuthError::Unauthenticated(m)) => {
                assert!(
                    m.contains(needle),
                    "message {m:?} should mention {needle:?}"
                );
                assert!(!m.contains('\n'));
            }
            other => panic!("expected Unauthenticated({needle}), got {other:?}"),
        }
    }

    // ---- tiers --------------------------------------------------------------------------------

    #[test]
    fn tier_public_registered_controlled() {
        let iss = issuer();
        let v = verifier(&iss);
        let p = verify(&v, &mint(&iss, Tier::Public, |_| {})).unwrap();
        assert_eq!(
            (p.tier, p.egress, p.anonymous),
            (Tier::Public, Egress::Aggregates, false)
        );
        assert!(p.visa_ids.is_empty());
        assert_eq!(p.sub, "alice");
        assert_eq!(p.issuer, ISS);

        let p = verify(&v, &mint(&iss, Tier::Registered, |_| {})).unwrap();
        assert_eq!((p.tier, p.egress), (Tier::Registered, Egress::Rows));
        assert_eq!(p.visa_ids.len(), 3);
        assert_eq!(p.expires_at, Some(NOW + 3600));

        let p = verify(&v, &mint(&iss, Tier::Controlled, |_| {})).unwrap();
        assert_eq!((p.tier, p.egress), (Tier::Controlled, Egress::Rows));
        assert_eq!(p.visa_ids.len(), 4);
    }

    #[test]
    fn egress_claim() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| {
            s.egress = Some(Egress::Aggregates)
        });
        let p = verify(&v, &t).unwrap();
        assert_eq!((p.tier, p.egress), (Tier::Controlled, Egress::Aggregates));
        let t = mint(&iss, Tier::Public, |s| s.egress = Some(Egress::Rows));
        assert_eq!(verify(&v, &t).unwrap().egress, Egress::Aggregates);
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: [],
                            EGRESS_CLAIM: "everything"});
        assert_unauth(
            verify(&v, &iss.sign(&passport_header(), &claims)),
            EGRESS_CLAIM,
        );
    }

    #[test]
    fn missing_visas_lower_the_tier() {
        let iss = issuer();
        let v = verifier(&iss);
        for kind in [VisaKind::Researcher, VisaKind::Ducc, VisaKind::RcrTraining] {
            let t = mint(&iss, Tier::Controlled, |s| s.missing = vec![kind]);
            let p = verify(&v, &t).unwrap();
            assert_eq!(p.tier, Tier::Public, "{kind:?} missing");
            assert_eq!(p.egress, Egress::Aggregates);
            assert_eq!(p.expires_at, Some(NOW + 3600));
        }
        let t = mint(&iss, Tier::Controlled, |s| {
            s.missing = vec![VisaKind::Controlled]
        });
        assert_eq!(verify(&v, &t).unwrap().tier, Tier::Registered);
    }

    // ---- no token / header form ---------------------------------------------------------------

    #[test]
    fn anonymous_only_when_enabled() {
        let iss = issuer();
        let v = verifier(&iss);
        assert_unauth(v.verify(None, NOW), "anonymous access is disabled");
        assert_unauth(v.verify(Some("  "), NOW), "anonymous access is disabled");
        let open = PassportVerifier::from_jwks_json(&iss.jwks().to_string(), true).unwrap();
        assert_eq!(open.verify(None, NOW).unwrap(), Principal::anonymous());
        // A bad token is refused even when anonymous access is on.
        assert_unauth(open.verify(Some("Bearer x.y.z"), NOW), "malformed");
    }

    #[test]
    fn header_forms() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Registered, |_| {});
        assert!(v.verify(Some(&format!("bearer  {t} ")), NOW).is_ok());
        assert_unauth(v.verify(Some(&format!("Basic {t}")), NOW), "Bearer");
        assert_unauth(v.verify(Some(&t), NOW), "Bearer");
        assert_unauth(v.verify(Some("Bearer"), NOW), "Bearer");
        assert_unauth(verify(&v, "a.b"), "malformed passport");
        assert_unauth(verify(&v, "a.b.c.d"), "malformed passport");
        assert_unauth(verify(&v, "!!!.b.c"), "malformed passport");
    }

    #[test]
    fn messages_never_echo_the_token() {
        let iss = issuer();
        let v = verifier(&iss);
        for t in [
            mint(&iss, Tier::Registered, |s| s.forge = true),
            mint(&iss, Tier::Registered, |s| s.expired = true),
            mint(&iss, Tier::Registered, |s| s.alg = PassportAlg::None),
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln".to_string(),
        ] {
            let Err(AuthError::Unauthenticated(m)) = verify(&v, &t) else {
                panic!("should fail")
            };
            for part in t.split('.').filter(|p| p.len() > 3) {
                assert!(!m.contains(part), "{m:?} echoes the token");
            }
        }
    }

    // ---- broken passports ---------------------------------------------------------------------

    #[test]
    fn alg_none_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| s.alg = PassportAlg::None);
        assert_unauth(verify(&v, &t), "malformed passport: JWT is unsigned");
        // alg none with some signature bytes still refused on alg.
        let t2 = format!("{}c2ln", t);
        assert_unauth(verify(&v, &t2), "alg must be RS256 or ES256");
        // "None", "NONE" too.
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: []});
        for alg in ["None", "NONE", "nOnE"] {
            let t = unsigned(&json!({"typ": PASSPORT_TYP, "alg": alg}), &claims) + "c2ln";
            assert_unauth(verify(&v, &t), "alg must be RS256 or ES256");
        }
    }

    #[test]
    fn hs256_with_public_key_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| {
            s.alg = PassportAlg::Hs256PublicKey
        });
        assert_unauth(verify(&v, &t), "alg must be RS256 or ES256");
        // Also with the JWK JSON or the raw point as the secret, and other HMAC/other algs.
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: []});
        for alg in [
            "HS256", "HS384", "HS512", "ES384", "RS512", "PS256", "EdDSA",
        ] {
            let h = json!({"typ": PASSPORT_TYP, "alg": alg, "kid": iss.kid()});
            let t = sign_hs256(iss.public_jwk().to_string().as_bytes(), &h, &claims);
            assert_unauth(verify(&v, &t), "alg must be RS256 or ES256");
        }
    }

    #[test]
    fn alg_swapped_to_rs256_on_ec_key_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Registered, |_| {});
        let (h, rest) = t.split_once('.').unwrap();
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["alg"] = json!("RS256");
        let t = format!("{}.{rest}", b64url(header.to_string().as_bytes()));
        assert_unauth(verify(&v, &t), "signing key");
    }

    #[test]
    fn forged_signature_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| s.forge = true);
        assert_unauth(verify(&v, &t), "passport signature is invalid");
        // Claims changed after signing (tier escalation by editing the payload).
        let good = mint(&iss, Tier::Public, |_| {});
        let (h, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60,
                            PASSPORT_CLAIM: registered_visas(&iss)});
        let t = format!("{h}.{}.{sig}", b64url(claims.to_string().as_bytes()));
        assert_unauth(verify(&v, &t), "passport signature is invalid");
    }

    #[test]
    fn passport_from_untrusted_issuer_or_key_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        // Same issuer URL, other key (kid differs).
        let other = DevIssuer::generate(ISS);
        assert_unauth(
            verify(&v, &mint(&other, Tier::Registered, |_| {})),
            "signing key",
        );
        // Other issuer URL.
        let stranger = DevIssuer::generate("https://evil.example/");
        assert_unauth(
            verify(&v, &mint(&stranger, Tier::Registered, |_| {})),
            "issuer is not trusted",
        );
        // Other key pretending to be the trusted kid: signature fails.
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: []});
        let t = other.sign(&passport_header(), &claims);
        let (h, rest) = t.split_once('.').unwrap();
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["kid"] = json!(iss.kid());
        let t = format!("{}.{rest}", b64url(header.to_string().as_bytes()));
        assert_unauth(verify(&v, &t), "passport signature is invalid");
    }

    #[test]
    fn expired_passport_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Registered, |s| s.expired = true);
        assert_unauth(verify(&v, &t), "passport expired");
        // Leeway: 30 s past exp is refused, 29 s is accepted.
        let t = passport_with(&iss, registered_visas(&iss), NOW - 29);
        assert!(verify(&v, &t).is_ok());
        let t = passport_with(&iss, registered_visas(&iss), NOW - 30);
        assert_unauth(verify(&v, &t), "passport expired");
        // No exp at all.
        let claims = json!({"iss": ISS, "sub": "alice", PASSPORT_CLAIM: []});
        assert_unauth(
            verify(&v, &iss.sign(&passport_header(), &claims)),
            "exp is required",
        );
        // Not yet valid.
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 600, "nbf": NOW + 300, PASSPORT_CLAIM: []});
        assert_unauth(
            verify(&v, &iss.sign(&passport_header(), &claims)),
            "not yet valid",
        );
    }

    #[test]
    fn typ_missing_or_wrong_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60,
                            PASSPORT_CLAIM: registered_visas(&iss)});
        for header in [
            json!({}),
            json!({"typ": "JWT"}),
            json!({"typ": VISA_TYP}),
            json!({"typ": "vnd.ga4gh.passport+jwt2"}),
            json!({"typ": 7}),
            json!({"typ": "applicatio\u{e9}/vnd.ga4gh.passport+jwt"}),
            json!({"typ": "abcdefghijk\u{e9}passport+jwt"}),
        ] {
            assert_unauth(
                verify(&v, &iss.sign(&header, &claims)),
                "typ must be vnd.ga4gh.passport+jwt",
            );
        }
        for typ in [
            "application/vnd.ga4gh.passport+jwt",
            "VND.GA4GH.PASSPORT+JWT",
        ] {
            let p = verify(&v, &iss.sign(&json!({"typ": typ}), &claims)).unwrap();
            assert_eq!(p.tier, Tier::Registered);
        }
        // A visa presented as a passport.
        let visa_token = signed(&iss, &visa(VisaKind::Researcher, NOW + 60));
        assert_unauth(verify(&v, &visa_token), "typ");
    }

    #[test]
    fn crit_header_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: []});
        let h = json!({"typ": PASSPORT_TYP, "crit": ["exp"]});
        assert_unauth(verify(&v, &iss.sign(&h, &claims)), "crit");
    }

    #[test]
    fn malformed_claims_refused() {
        let iss = issuer();
        let v = verifier(&iss);
        for claims in [
            json!({"iss": ISS, "sub": "alice", "exp": NOW + 60}),
            json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: "x"}),
            json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: [1]}),
            json!({"iss": ISS, "exp": NOW + 60, PASSPORT_CLAIM: []}),
            json!({"sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: []}),
            json!({"iss": ISS, "sub": "alice", "exp": "tomorrow", PASSPORT_CLAIM: []}),
        ] {
            assert_unauth(
                verify(&v, &iss.sign(&passport_header(), &claims)),
                "passport",
            );
        }
        let many: Vec<String> = (0..=MAX_VISAS).map(|_| "x".to_string()).collect();
        let claims = json!({"iss": ISS, "sub": "alice", "exp": NOW + 60, PASSPORT_CLAIM: many});
        assert_unauth(
            verify(&v, &iss.sign(&passport_header(), &claims)),
            "more than",
        );
    }

    // ---- visas --------------------------------------------------------------------------------

    #[test]
    fn expired_visa_lowers_tier() {
        let iss = issuer();
        let v = verifier(&iss);
        let mut visas = registered_visas(&iss);
        visas.push(signed(&iss, &visa(VisaKind::Controlled, NOW - 31)));
        let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
        assert_eq!(p.tier, Tier::Registered);
        assert_eq!(p.expires_at, Some(NOW + 3600));

        let mut visas = registered_visas(&iss);
        visas[0] = signed(&iss, &visa(VisaKind::Researcher, NOW - 3600));
        let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
        assert_eq!(p.tier, Tier::Public);
    }

    #[test]
    fn effective_expiry_is_the_minimum() {
        let iss = issuer();
        let v = verifier(&iss);
        let visas = vec![
            signed(&iss, &visa(VisaKind::Researcher, NOW + 900)),
            signed(&iss, &visa(VisaKind::Ducc, NOW + 3000)),
            signed(&iss, &visa(VisaKind::RcrTraining, NOW + 600)),
            signed(&iss, &visa(VisaKind::Controlled, NOW + 300)),
        ];
        let p = verify(&v, &passport_with(&iss, visas.clone(), NOW + 3600)).unwrap();
        assert_eq!(p.tier, Tier::Controlled);
        assert_eq!(p.expires_at, Some(NOW + 300));
        assert!(!p.is_expired(NOW + 300 + LEEWAY_SECS - 1));
        assert!(p.is_expired(NOW + 300 + LEEWAY_SECS));
        // Passport earliest.
        let p = verify(&v, &passport_with(&iss, visas[..3].to_vec(), NOW + 100)).unwrap();
        assert_eq!((p.tier, p.expires_at), (Tier::Registered, Some(NOW + 100)));
        // Visas not used for the tier do not shorten it.
        let mut visas = registered_visas(&iss);
        let mut odd = visa(VisaKind::Researcher, NOW + 5);
        odd[VISA_CLAIM]["value"] = json!("urn:strata:researcher:pending");
        visas.push(signed(&iss, &odd));
        let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
        assert_eq!(p.expires_at, Some(NOW + 3600));
        // Of two equal visas, the longer-lived one is used.
        let mut visas = registered_visas(&iss);
        visas.push(signed(&iss, &visa(VisaKind::Ducc, NOW + 10)));
        let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
        assert_eq!(p.expires_at, Some(NOW + 3600));
    }

    #[test]
    fn wrong_subject_visas_ignored() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| {
            s.visa_sub = Some("mallory".into())
        });
        let p = verify(&v, &t).unwrap();
        assert_eq!(p.tier, Tier::Public);
        assert_eq!(p.sub, "alice");
        // One wrong-subject visa among good ones.
        let mut visas = registered_visas(&iss);
        let mut c = visa(VisaKind::Controlled, NOW + 3600);
        c["sub"] = json!("Alice");
        visas.push(signed(&iss, &c));
        assert_eq!(
            verify(&v, &passport_with(&iss, visas, NOW + 3600))
                .unwrap()
                .tier,
            Tier::Registered
        );
    }

    #[test]
    fn untrusted_issuer_visas_ignored() {
        let iss = issuer();
        let v = verifier(&iss);
        let t = mint(&iss, Tier::Controlled, |s| {
            s.visa_issuer = Some("https://evil.example/".into())
        });
        assert_eq!(verify(&v, &t).unwrap().tier, Tier::Public);
        // Visas naming the trusted issuer but signed with an untrusted key.
        let rogue = DevIssuer::generate(ISS);
        let visas: Vec<String> = VisaKind::for_tier(Tier::Controlled)
            .into_iter()
            .map(|k| rogue.sign(&visa_header(), &visa(k, NOW + 3600)))
            .collect();
        assert_eq!(
            verify(&v, &passport_with(&iss, visas, NOW + 3600))
                .unwrap()
                .tier,
            Tier::Public
        );
        // Visas from a second trusted issuer are still ignored: iss differs from the passport's.
        let second = DevIssuer::generate("https://other.example/");
        let mut jwks = iss.jwks();
        jwks["keys"]
            .as_array_mut()
            .unwrap()
            .push(second.public_jwk());
        let v2 = PassportVerifier::from_jwks_json(&jwks.to_string(), false).unwrap();
        let visas: Vec<String> = VisaKind::for_tier(Tier::Registered)
            .into_iter()
            .map(|k| {
                second.sign(
                    &visa_header(),
                    &visa_claims(second.issuer(), "alice", k, NOW, NOW + 60, ISS),
                )
            })
            .collect();
        assert_eq!(
            verify(&v2, &passport_with(&iss, visas, NOW + 3600))
                .unwrap()
                .tier,
            Tier::Public
        );
    }

    #[test]
    fn visa_with_conditions_ignored() {
        let iss = issuer();
        let v = verifier(&iss);
        let mut visas = registered_visas(&iss);
        let mut c = visa(VisaKind::Controlled, NOW + 3600);
        c[VISA_CLAIM]["conditions"] = json!([[{"type": "AffiliationAndRole",
            "value": "const:faculty@uni.example", "by": "so"}]]);
        visas.push(signed(&iss, &c));
        let p = verify(&v, &passport_with(&iss, visas.clone(), NOW + 3600)).unwrap();
        assert_eq!(p.tier, Tier::Registered);
        // An empty conditions list is no condition.
        let mut c = visa(VisaKind::Controlled, NOW + 3600);
        c[VISA_CLAIM]["conditions"] = json!([]);
        visas.pop();
        visas.push(signed(&iss, &c));
        assert_eq!(
            verify(&v, &passport_with(&iss, visas, NOW + 3600))
                .unwrap()
                .tier,
            Tier::Controlled
        );
    }

    #[test]
    fn case_changed_values_ignored() {
        let iss = issuer();
        let v = verifier(&iss);
        for (field, new) in [
            ("value", "URN:strata:researcher:verified"),
            ("value", "urn:strata:researcher:Verified"),
            ("value", "urn:strata:researcher:verified "),
            ("type", "researcherstatus"),
            ("type", "RESEARCHERSTATUS"),
        ] {
            let mut visas = registered_visas(&iss);
            let mut r = visa(VisaKind::Researcher, NOW + 3600);
            r[VISA_CLAIM][field] = json!(new);
            visas[0] = signed(&iss, &r);
            assert_eq!(
                verify(&v, &passport_with(&iss, visas, NOW + 3600))
                    .unwrap()
                    .tier,
                Tier::Public,
                "{field} = {new:?}"
            );
        }
        let mut visas = registered_visas(&iss);
        let mut c = visa(VisaKind::Controlled, NOW + 3600);
        c[VISA_CLAIM]["value"] = json!("urn:strata:tier:Controlled");
        visas.push(signed(&iss, &c));
        assert_eq!(
            verify(&v, &passport_with(&iss, visas, NOW + 3600))
                .unwrap()
                .tier,
            Tier::Registered
        );
    }

    #[test]
    fn broken_visas_ignored() {
        let iss = issuer();
        let v = verifier(&iss);
        let good = visa(VisaKind::Controlled, NOW + 3600);
        let mut broken: Vec<String> = Vec::new();
        // alg none, HS256 with the public key, forged signature.
        broken.push(unsigned(&json!({"alg": "none"}), &good));
        broken.push(sign_hs256(
            iss.public_key_pem().as_bytes(),
            &json!({"alg": "HS256", "kid": iss.kid()}),
            &good,
        ));
        broken.push(tamper_signature(&signed(&iss, &good)));
        // Passport typ on a visa, visa claim missing or malformed, asserted in the future.
        broken.push(iss.sign(&passport_header(), &good));
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(VISA_CLAIM);
        broken.push(signed(&iss, &c));
        let mut c = good.clone();
        c[VISA_CLAIM]["value"] = json!(["urn:strata:tier:controlled"]);
        broken.push(signed(&iss, &c));
        let mut c = good.clone();
        c[VISA_CLAIM].as_object_mut().unwrap().remove("source");
        broken.push(signed(&iss, &c));
        let mut c = good.clone();
        c[VISA_CLAIM]["asserted"] = json!(NOW + 3600);
        broken.push(signed(&iss, &c));
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        broken.push(signed(&iss, &c));
        broken.push("not-a-jwt".into());
        for (i, b) in broken.into_iter().enumerate() {
            let mut visas = registered_visas(&iss);
            visas.push(b);
            let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
            assert_eq!(p.tier, Tier::Registered, "broken visa #{i} was accepted");
        }
    }

    #[test]
    fn visa_ids_are_jti_or_hash() {
        let iss = issuer();
        let v = verifier(&iss);
        let mut visas = registered_visas(&iss);
        let mut r = visa(VisaKind::Researcher, NOW + 3600);
        r.as_object_mut().unwrap().remove("jti");
        visas[0] = signed(&iss, &r);
        let p = verify(&v, &passport_with(&iss, visas, NOW + 3600)).unwrap();
        assert_eq!(p.visa_ids.len(), 3);
        assert!(p.visa_ids[0].starts_with("sha256:"), "{:?}", p.visa_ids);
        assert_eq!(p.visa_ids[1].len(), 32);
    }

    // ---- RS256 ---------------------------------------------------------------------------------

    /// A 2048-bit RSA test key (PKCS#1), for RS256 passports. Test-only, not a secret.
    const RSA_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEA0x9GV/W/Yx8xv4fZEw7Wnw0oHda6XYRyK+EByK5+npICqrGu\n\
C2PqVmNLSCJJGOcviN91iDzaa/OSb+Sv1AiEkQTuURmVJbSV+W+SfI4hj4LwdCqb\n\
1d/VDhhRVJtJktxBM7lHnsuyse2lJD2ZDOqNHZbv82PvCiNdfQja3TrZhpqAghdd\n\
EjzJG4DP1VnDWmOG4GhWUoYPbB3SuXIquWPCcrErEQblMWEtKZDcDMn4uwjmi6PX\n\
b5vvEUL1MvTQh7r2js0uXqawDWrZQZA6Og02T26WtixnXjvYXncQ6qoXrBt5RhKa\n\
EYfEHNuz5Jil4Cxs3Nd9Yl/7DfsIG2bTrfGL2QIDAQABAoIBABOu0MIWmTdGiz7O\n\
DYDnWz8M3PabNFjPpk1M9vucuRVTi4gadJ1/PTO8oiIhgCsgMqBSJQUEl2CFHtvr\n\
uDDOcn2KtiU9e1g+k9TjgAa4wYw9qulJp6my6owb3ElFCQD2I+YMmg7F8uz/uOu+\n\
CmzX2Twu/EP2xyxsy6SClNUXTXxs87z2qdC9+nxxdQDlUA7QLh+mIevGtyc5lHQ8\n\
97q6Pv8XVbAYH2CHtKZU2bstoKOxr/09mi8TeKTNA6O21vnn9oAdL1tv55Th3/e4\n\
2wc6d/8t0btSmkAl/Uhc/Zc2Dr2sZGkwGcn9MdyA5k87EkbHHrKq7xuQvFFD1SwO\n\
A81D6hkCgYEA7rhTYvM36u1q/+NeeXcPsr5yB58iBKvgeNL0berwEB8isit3jDBW\n\
EfHMi0rHo8Aomg4r0L3nocBUH+MjRoAvubIlOIjojwpvVPd00bbT43IGEC6Z63/P\n\
mB1FMAOqA5RPZMLpZS8zb2lphmqhlrMreDEBqd2Z2I0Vly1aSZKv5ScCgYEA4meJ\n\
33+lSayJjyfEHDacm+l44ZnOV22AUYc89rkVsBd1zaO0EqvGwyVExhKQoIJyM+YQ\n\
j5cSQBCXVKcdbi128Rsuj34fNQGUqYMja9xnsigpuS3PweRHUgE/CV4sqRhritn0\n\
Cc8DzuPD2IAxJrqlYzVclNFJiJF7VfOyjCXTpv8CgYAGT/98fVv8LV0H+TY1Vg2n\n\
N1wCkZWvs+/SohlukqjYdEpRlc6qeVi9TryO7mJLFTi9oiRMd8kZQOG4miQDqD4a\n\
1fgf/5bOuYLqJ0UCiqgdupUodmMBlDakGhoLQ/2J7LEQxAqx70aX6pysvkMZnhFH\n\
M1yM5lw8Grb4cW2Sxns6PwKBgBflP6sEKOjWugoO82ba6LqX8Lc26Y1WtFVmhauw\n\
qzZTs45JuebClI7iLxkMupEGU5FgtdzB4B484gwAO132lHgsG0Tv1dFdYlhly+ZF\n\
c/hcvtKZoDThqBliokmV0/bg6fDUwioK3GcIqRH/rbBdwLjw192pHS651B+lQfIC\n\
yAz3AoGBAJIZrEaRSsIVePjNI6jio90Zk6wn6GOEzg5TUXuE2tNWtUYZB+24+lnd\n\
sUu8wHPKgfySMMP6lSl1oSIunkpki+acWRwWI4g90KSCBX8nUUNySPQ6s4YvaCTC\n\
I60mxYbbssy3GAc/VOdvbHTHn1g4q5vNtzuPOhhe3agybMyIGs5/\n\
-----END RSA PRIVATE KEY-----\n";
    const RSA_N: &str = "0x9GV_W_Yx8xv4fZEw7Wnw0oHda6XYRyK-EByK5-npICqrGuC2PqVmNLSCJJGOcviN91iDzaa_OSb-Sv1AiEkQTuURmVJbSV-W-SfI4hj4LwdCqb1d_VDhhRVJtJktxBM7lHnsuyse2lJD2ZDOqNHZbv82PvCiNdfQja3TrZhpqAghddEjzJG4DP1VnDWmOG4GhWUoYPbB3SuXIquWPCcrErEQblMWEtKZDcDMn4uwjmi6PXb5vvEUL1MvTQh7r2js0uXqawDWrZQZA6Og02T26WtixnXjvYXncQ6qoXrBt5RhKaEYfEHNuz5Jil4Cxs3Nd9Yl_7DfsIG2bTrfGL2Q";

    fn rs256(header: &Value, claims: &Value) -> String {
        let mut header = header.clone();
        header["alg"] = json!("RS256");
        header["kid"] = json!("rsa-1");
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
        format!("{input}.{sig}")
    }

    #[test]
    fn rs256_passports_and_visas() {
        let rsa_iss = "https://rsa.example/";
        let jwks = json!({"issuer": rsa_iss, "keys": [
            {"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "rsa-1", "alg": "RS256", "use": "sig"}]});
        let v = PassportVerifier::from_jwks_json(&jwks.to_string(), false).unwrap();
        let visas: Vec<String> = VisaKind::for_tier(Tier::Controlled)
            .into_iter()
            .map(|k| {
                rs256(
                    &visa_header(),
                    &visa_claims(rsa_iss, "bob", k, NOW, NOW + 600, rsa_iss),
                )
            })
            .collect();
        let claims =
            json!({"iss": rsa_iss, "sub": "bob", "exp": NOW + 3600, PASSPORT_CLAIM: visas});
        let p = verify(&v, &rs256(&passport_header(), &claims)).unwrap();
        assert_eq!(
            (p.tier, p.expires_at, p.issuer.as_str()),
            (Tier::Controlled, Some(NOW + 600), rsa_iss)
        );
        // HS256 signed with the RSA public key's modulus as the secret: refused.
        let h = json!({"typ": PASSPORT_TYP, "alg": "HS256", "kid": "rsa-1"});
        assert_unauth(
            verify(&v, &sign_hs256(RSA_N.as_bytes(), &h, &claims)),
            "alg must be RS256 or ES256",
        );
        // Forged RS256.
        let t = tamper_signature(&rs256(&passport_header(), &claims));
        assert_unauth(verify(&v, &t), "passport signature is invalid");
        // ES256 header on the RSA key: no ES256 key for the issuer.
        let t = rs256(&passport_header(), &claims);
        let (h, rest) = t.split_once('.').unwrap();
        let mut header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["alg"] = json!("ES256");
        let t = format!("{}.{rest}", b64url(header.to_string().as_bytes()));
        assert_unauth(verify(&v, &t), "signing key");
    }

    // ---- JWKS loading --------------------------------------------------------------------------

    #[test]
    fn jwks_rules() {
        let iss = issuer();
        let load = |v: Value| PassportVerifier::from_jwks_json(&v.to_string(), false);
        assert!(load(iss.jwks()).is_ok());
        assert_eq!(load(iss.jwks()).unwrap().issuers(), vec![ISS.to_string()]);
        let with = |f: &dyn Fn(&mut Value)| {
            let mut jwks = iss.jwks();
            f(&mut jwks["keys"][0]);
            load(jwks)
        };
        let is_config = |r: Result<PassportVerifier, AuthError>, needle: &str| match r {
            Err(AuthError::Config(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
            other => panic!("expected Config({needle}), got {other:?}"),
        };
        // No issuer for the key.
        is_config(
            with(&|k| {
                k.as_object_mut().unwrap().remove("iss");
            }),
            "names no issuer",
        );
        // Top-level default issuer instead.
        let mut jwks = iss.jwks();
        jwks["keys"][0].as_object_mut().unwrap().remove("iss");
        jwks["issuer"] = json!(ISS);
        let v = load(jwks).unwrap();
        assert_eq!(
            verify(&v, &mint(&iss, Tier::Registered, |_| {}))
                .unwrap()
                .tier,
            Tier::Registered
        );
        // Private parts, symmetric keys, missing kid, bad points.
        is_config(with(&|k| k["d"] = json!("AAAA")), "private key material");
        is_config(
            load(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h", "iss": ISS}]})),
            "symmetric",
        );
        is_config(
            with(&|k| {
                k.as_object_mut().unwrap().remove("kid");
            }),
            "kid",
        );
        is_config(with(&|k| k["x"] = k["y"].clone()), "not a point");
        // Other algorithms are skipped, leaving no usable key.
        is_config(with(&|k| k["alg"] = json!("ES384")), "no usable");
        is_config(with(&|k| k["use"] = json!("enc")), "no usable");
        // Duplicate kid.
        let mut jwks = iss.jwks();
        let k = jwks["keys"][0].clone();
        jwks["keys"].as_array_mut().unwrap().push(k);
        is_config(load(jwks), "appears twice");
        // Short RSA keys.
        is_config(
            load(
                json!({"keys": [{"kty": "RSA", "n": b64url(&[0xff; 128]), "e": "AQAB",
                                  "kid": "r", "iss": ISS}]}),
            ),
            "1024 bits",
        );
        is_config(load(json!([])), "keys");
        is_config(load(json!({"keys": []})), "no usable");
        let missing = PassportVerifier::from_jwks_file(Path::new("/nonexistent/jwks.json"), false);
        is_config(missing, "cannot read JWKS file");
    }

    #[test]
    fn dev_issuer_round_trips_through_pem() {
        let iss = issuer();
        let pem = iss.private_key_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = DevIssuer::from_pkcs8_pem(ISS, &pem).unwrap();
        assert_eq!(back.kid(), iss.kid());
        let v = verifier(&iss);
        assert_eq!(
            verify(&v, &mint(&back, Tier::Controlled, |_| {}))
                .unwrap()
                .tier,
            Tier::Controlled
        );
        assert!(DevIssuer::from_pkcs8_pem(ISS, "nope").is_err());
    }
}
