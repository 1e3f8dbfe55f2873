//! Passports: arbitrary bearer headers, and arbitrary claims signed by the trusted issuer (so
//! the claims, times and visas are parsed past the signature check).

use serde_json::Value;
use strata_engine::Tier;
use strata_passport::dev::{passport_header, visa_header};
use strata_passport::{Egress, PASSPORT_CLAIM, Principal, now_unix};

use crate::World;

/// Verifies `header` as an `authorization` value. Holds: a refusal or a principal, and a
/// principal from a header that is not a passport the issuer signed is only ever anonymous
/// (which the world does not allow).
pub fn passport_token(header: &str) {
    let world = World::get();
    if let Ok(principal) = world.verifier.verify(Some(header), now_unix()) {
        panic!("an unsigned header verified as {principal}: {header:?}");
    }
}

/// Signs `claims` (JSON) as a passport of the trusted issuer, each visa given as a JSON object
/// signed as a visa of the same issuer, and verifies it. Holds: a tier above public comes only
/// with signed visas naming the passport's subject; public principals get aggregates only; the
/// principal is who the claims name and expires no later than the passport. Returns the
/// principal, if the claims verified.
pub fn passport_claims(claims: &str) -> Option<Principal> {
    let Ok(mut claims) = serde_json::from_str::<Value>(claims) else {
        return None;
    };
    let world = World::get();
    let mut signed_visas = Vec::new();
    if let Some(Value::Array(visas)) = claims.get_mut(PASSPORT_CLAIM) {
        for visa in visas.iter_mut() {
            if visa.is_object() {
                signed_visas.push(visa.clone());
                *visa = Value::String(world.issuer.sign(&visa_header(), visa));
            }
        }
    }
    let token = world.issuer.sign(&passport_header(), &claims);
    let Ok(principal) = world
        .verifier
        .verify(Some(&format!("Bearer {token}")), now_unix())
    else {
        return None;
    };
    assert_eq!(
        claims.get("sub").and_then(Value::as_str),
        Some(principal.sub.as_str()),
        "the principal is not the passport's subject: {claims}"
    );
    if principal.tier > Tier::Public {
        let own = |v: &Value| v.get("sub").and_then(Value::as_str) == Some(&principal.sub);
        assert!(
            signed_visas.iter().any(own),
            "tier {} without a visa naming {}: {claims}",
            principal.tier,
            principal.sub
        );
    } else {
        assert_eq!(
            principal.egress,
            Egress::Aggregates,
            "public rows: {claims}"
        );
    }
    if let (Some(expires), Some(exp)) = (
        principal.expires_at,
        claims.get("exp").and_then(Value::as_f64),
    ) {
        assert!(
            expires as f64 <= exp.floor() + 1.0,
            "the principal outlives its passport: {claims}"
        );
    }
    Some(principal)
}
