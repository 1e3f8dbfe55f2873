//! Development issuer keys and passports (`strata keys`, `strata token`, the demo): never used to
//! verify, only to mint what a test or a demo presents.

use super::*;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

/// The issuer URL `strata keys` names unless told otherwise.
pub const DEFAULT_ISSUER: &str = "https://dev.strata.local/issuer";

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn segment(v: &Value) -> String {
    b64url(v.to_string().as_bytes())
}

/// An ES256 signing key tied to an issuer URL; `kid` is the key's RFC 7638 thumbprint.
#[derive(Clone)]
pub struct DevIssuer {
    issuer: String,
    kid: String,
    key: SigningKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// A fresh random key pair.
    pub fn generate(issuer: &str) -> Self {
        Self::from_key(issuer, SigningKey::random(&mut rand::rngs::OsRng))
    }

    /// The key from a PKCS#8 PEM (`issuer.pem` as written by [`DevIssuer::private_key_pem`]).
    pub fn from_pkcs8_pem(issuer: &str, pem: &str) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| "not a PKCS#8 PEM P-256 private key".to_string())?;
        Ok(Self::from_key(issuer, key))
    }

    fn from_key(issuer: &str, key: SigningKey) -> Self {
        let (x, y) = coordinates(&key);
        // RFC 7638: members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(&Sha256::digest(canonical.as_bytes()));
        DevIssuer {
            issuer: issuer.to_string(),
            kid,
            key,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// PKCS#8 PEM of the private key (keep it 0600).
    pub fn private_key_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default()
    }

    /// SPKI PEM of the public key.
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public JWK, with `kid`, `alg`, `use` and the issuer as `iss`.
    pub fn public_jwk(&self) -> Value {
        let (x, y) = coordinates(&self.key);
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": self.kid,
               "alg": "ES256", "use": "sig", "iss": self.issuer})
    }

    /// A JWKS that trusts this issuer (what `strata keys` writes to `jwks.json`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.public_jwk()]})
    }

    /// Signs `header` (its `alg` and `kid` are set here) and `claims` with ES256.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut header = header.clone();
        if let Value::Object(h) = &mut header {
            h.insert("alg".into(), json!("ES256"));
            h.insert("kid".into(), json!(self.kid));
        }
        let input = format!("{}.{}", segment(&header), segment(claims));
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&sig.to_bytes()))
    }
}

fn coordinates(key: &SigningKey) -> (String, String) {
    let point = key.verifying_key().to_encoded_point(false);
    let x = point.x().map(|x| b64url(x)).unwrap_or_default();
    let y = point.y().map(|y| b64url(y)).unwrap_or_default();
    (x, y)
}

/// `header.claims.` with an empty signature (for `alg: none` attacks).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", segment(header), segment(claims))
}

/// An HS256 JWT with `secret` as the HMAC key (for key-confusion attacks).
pub fn sign_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", segment(header), segment(claims));
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap_or_default();
    format!("{input}.{sig}")
}

/// The same JWT with one bit of its signature flipped.
pub fn tamper_signature(token: &str) -> String {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return token.to_string();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    if bytes.is_empty() {
        bytes.push(0);
    }
    bytes[0] ^= 0x01;
    format!("{input}.{}", b64url(&bytes))
}

/// The visas a dev passport can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisaKind {
    Researcher,
    Ducc,
    RcrTraining,
    Controlled,
}

impl VisaKind {
    pub fn type_and_value(self) -> (&'static str, &'static str) {
        match self {
            VisaKind::Researcher => (RESEARCHER_STATUS, RESEARCHER_VERIFIED),
            VisaKind::Ducc => (ACCEPTED_TERMS, TERMS_DUCC),
            VisaKind::RcrTraining => (ACCEPTED_TERMS, TERMS_RCR_TRAINING),
            VisaKind::Controlled => (CONTROLLED_GRANTS, TIER_CONTROLLED),
        }
    }

    fn by(self) -> &'static str {
        match self {
            VisaKind::Researcher => "so",
            VisaKind::Ducc | VisaKind::RcrTraining => "self",
            VisaKind::Controlled => "dac",
        }
    }

    /// The visas a tier needs.
    pub fn for_tier(tier: Tier) -> Vec<VisaKind> {
        match tier {
            Tier::Public => vec![],
            Tier::Registered => {
                vec![VisaKind::Researcher, VisaKind::Ducc, VisaKind::RcrTraining]
            }
            Tier::Controlled => vec![
                VisaKind::Researcher,
                VisaKind::Ducc,
                VisaKind::RcrTraining,
                VisaKind::Controlled,
            ],
        }
    }
}

/// How the passport itself is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassportAlg {
    #[default]
    Es256,
    /// `alg: none`, empty signature.
    None,
    /// HS256 with the issuer's public key PEM as the HMAC secret.
    Hs256PublicKey,
}

/// What `strata token` mints.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub tier: Tier,
    pub sub: String,
    /// `strata_egress` claim; absent when `None`.
    pub egress: Option<Egress>,
    pub ttl_secs: i64,
    /// Issue time (unix s).
    pub now: i64,
    /// Passport and visas expired an hour ago (issued two hours ago).
    pub expired: bool,
    /// Visas left out.
    pub missing: Vec<VisaKind>,
    pub alg: PassportAlg,
    /// Visas name this `sub` instead of the passport's.
    pub visa_sub: Option<String>,
    /// Visas name this `iss` and are signed by a fresh key nobody trusts.
    pub visa_issuer: Option<String>,
    /// The passport's signature has a bit flipped.
    pub forge: bool,
}

impl TokenSpec {
    pub fn new(tier: Tier, sub: &str, now: i64) -> Self {
        TokenSpec {
            tier,
            sub: sub.to_string(),
            egress: None,
            ttl_secs: 3600,
            now,
            expired: false,
            missing: Vec::new(),
            alg: PassportAlg::Es256,
            visa_sub: None,
            visa_issuer: None,
            forge: false,
        }
    }
}

fn jti() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The claims of one visa.
pub fn visa_claims(
    iss: &str,
    sub: &str,
    kind: VisaKind,
    iat: i64,
    exp: i64,
    source: &str,
) -> Value {
    let (ty, value) = kind.type_and_value();
    json!({
        "iss": iss, "sub": sub, "iat": iat, "exp": exp, "jti": jti(),
        VISA_CLAIM: {"type": ty, "asserted": iat, "value": value, "source": source, "by": kind.by()},
    })
}

/// The header of a visa (`alg`/`kid` are set when signing).
pub fn visa_header() -> Value {
    json!({"typ": VISA_TYP})
}

/// The header of a passport (`alg`/`kid` are set when signing).
pub fn passport_header() -> Value {
    json!({"typ": PASSPORT_TYP})
}

/// Mints a passport as `spec` says, signed by `issuer`.
pub fn mint_passport(issuer: &DevIssuer, spec: &TokenSpec) -> String {
    let (iat, exp) = if spec.expired {
        (spec.now - 7200, spec.now - 3600)
    } else {
        (spec.now, spec.now + spec.ttl_secs.max(1))
    };
    let visa_sub = spec.visa_sub.as_deref().unwrap_or(&spec.sub);
    let untrusted = spec.visa_issuer.as_deref().map(DevIssuer::generate);
    let visa_signer = untrusted.as_ref().unwrap_or(issuer);
    let visas: Vec<Value> = VisaKind::for_tier(spec.tier)
        .into_iter()
        .filter(|k| !spec.missing.contains(k))
        .map(|kind| {
            let claims = visa_claims(
                visa_signer.issuer(),
                visa_sub,
                kind,
                iat,
                exp,
                issuer.issuer(),
            );
            Value::String(visa_signer.sign(&visa_header(), &claims))
        })
        .collect();
    let mut claims = json!({
        "iss": issuer.issuer(), "sub": spec.sub, "iat": iat, "exp": exp, "jti": jti(),
        PASSPORT_CLAIM: visas,
    });
    if let Some(egress) = spec.egress {
        claims[EGRESS_CLAIM] = json!(egress.to_string());
    }
    let token = match spec.alg {
        PassportAlg::Es256 => issuer.sign(&passport_header(), &claims),
        PassportAlg::None => unsigned(
            &json!({"typ": PASSPORT_TYP, "alg": "none", "kid": issuer.kid()}),
            &claims,
        ),
        PassportAlg::Hs256PublicKey => sign_hs256(
            issuer.public_key_pem().as_bytes(),
            &json!({"typ": PASSPORT_TYP, "alg": "HS256", "kid": issuer.kid()}),
            &claims,
        ),
    };
    if spec.forge {
        tamper_signature(&token)
    } else {
        token
    }
}
