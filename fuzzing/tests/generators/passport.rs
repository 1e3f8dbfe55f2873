//! Passports: headers that are not signed passports, and claims (signed by the harness) whose
//! times, subjects, visas and egress claims are right, wrong or of the wrong type.

use proptest::prelude::*;
use serde_json::{Value, json};
use strata_passport::dev::{DEFAULT_ISSUER, b64url};

use super::json_value;

/// An `authorization` value: schemes, segments and base64 of JSON, none validly signed.
pub fn header() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        json_value().prop_map(|v| b64url(v.to_string().as_bytes())),
        Just(b64url(br#"{"alg":"ES256","typ":"vnd.ga4gh.passport+jwt"}"#)),
        Just(b64url(br#"{"alg":"none","typ":"vnd.ga4gh.passport+jwt"}"#)),
        Just(b64url(
            br#"{"alg":"HS256","typ":"vnd.ga4gh.passport+jwt","kid":"x"}"#
        )),
        "[A-Za-z0-9_-]{0,40}",
        ".{0,20}",
    ];
    (
        prop::sample::select(&["Bearer ", "bearer ", "Basic ", "", "Bearer  "][..]),
        prop::collection::vec(segment, 0..5),
    )
        .prop_map(|(scheme, segments)| format!("{scheme}{}", segments.join(".")))
}

fn time() -> impl Strategy<Value = Value> {
    let now = strata_passport::now_unix();
    prop_oneof![
        (-7200i64..7200).prop_map(move |d| json!(now + d)),
        any::<i64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        Just(Value::Null),
        "[0-9]{1,12}".prop_map(Value::from),
    ]
}

fn subject() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!("someone")),
        1 => Just(json!("someone else")),
        1 => Just(json!("")),
        1 => json_value(),
    ]
}

fn visa() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        ("ResearcherStatus", "urn:strata:researcher:verified"),
        ("AcceptedTermsAndPolicies", "urn:strata:terms:ducc"),
        ("AcceptedTermsAndPolicies", "urn:strata:terms:rcr-training"),
        ("ControlledAccessGrants", "urn:strata:tier:controlled"),
        ("ControlledAccessGrants", "https://example.org/anything"),
    ]);
    let object = (
        subject(),
        time(),
        time(),
        kind,
        prop::sample::select(&["so", "self", "dac", "system", ""][..]),
        prop_oneof![Just(json!(DEFAULT_ISSUER)), json_value()],
    )
        .prop_map(|(sub, iat, exp, (ty, value), by, iss)| {
            json!({"iss": iss, "sub": sub, "iat": iat, "exp": exp,
                   "ga4gh_visa_v1": {"type": ty, "value": value, "source": DEFAULT_ISSUER,
                                     "by": by, "asserted": iat}})
        });
    prop_oneof![4 => object, 1 => json_value()]
}

/// Passport claims; the harness signs them and every visa object among them.
pub fn claims() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => Just(json!(DEFAULT_ISSUER)), 1 => json_value()],
        subject(),
        time(),
        time(),
        prop_oneof![
            4 => prop::collection::vec(visa(), 0..6).prop_map(Value::Array),
            1 => json_value(),
        ],
        prop_oneof![
            Just(Value::Null),
            Just(json!("rows")),
            Just(json!("aggregates")),
            json_value()
        ],
    )
        .prop_map(|(iss, sub, iat, exp, visas, egress)| {
            let mut claims = json!({"iss": iss, "sub": sub, "iat": iat, "exp": exp,
                                    "ga4gh_passport_v1": visas});
            if !egress.is_null() {
                claims["strata_egress"] = egress;
            }
            claims
        })
}
