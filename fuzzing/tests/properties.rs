//! The fuzz targets on stable Rust: structured random inputs (proptest) for each target, so the
//! test command exercises what `scripts/fuzz.sh` runs for hours. Every property also fails on a
//! panic anywhere in the process (a server task's panic is caught by tokio, not by the test).
//!
//! `STRATA_FUZZ_CASES` multiplies the number of cases (default 1: the test command's share).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};
use strata_engine::Tier;
use strata_passport::dev::{VisaKind, visa_claims};

mod generators;

use generators::{cohort_builder, flight, json_value, mutated_circe, passport, pg, sql};

fn config(cases: u32) -> Config {
    let scale: u32 = std::env::var("STRATA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Config {
        cases: cases * scale,
        // Crashes become named regression tests where they were fixed, not files here.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// Every test of this file runs alone: the panic count is the process's, so a property running
/// beside another test would be blamed for its panics.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `target`, failing on a panic in any thread while it ran.
fn no_panic(target: impl FnOnce()) {
    let _turn = one_at_a_time();
    strata_fuzzing::World::get();
    let watch = strata_fuzzing::watch_panics();
    target();
    if let Some(panic) = watch.panicked() {
        panic!("a server task panicked: {panic}");
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn sql_plans_protects_and_runs(text in sql::statement()) {
        no_panic(|| {
            strata_fuzzing::sql(&text);
        });
    }

    #[test]
    fn sql_mutants_end_in_rows_or_errors(text in sql::mutant()) {
        no_panic(|| {
            strata_fuzzing::sql(&text);
        });
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn circe_definitions_count_or_refuse(text in mutated_circe()) {
        no_panic(|| strata_fuzzing::cohort_json(&text));
    }

    #[test]
    fn cohort_builder_definitions_count_or_refuse(text in cohort_builder::definition()) {
        no_panic(|| strata_fuzzing::cohort_builder_json(&text));
    }

    #[test]
    fn any_json_is_a_cohort_or_a_refusal(value in json_value()) {
        no_panic(|| strata_fuzzing::cohort_json(&value.to_string()));
    }
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn headers_that_are_not_signed_passports_are_refused(header in passport::header()) {
        no_panic(|| strata_fuzzing::passport_token(&header));
    }

    #[test]
    fn signed_claims_grant_no_more_than_their_visas(claims in passport::claims()) {
        no_panic(|| {
            strata_fuzzing::passport_claims(&claims.to_string());
        });
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn flight_sql_commands_decode_or_refuse(input in flight::input()) {
        no_panic(|| strata_fuzzing::flight_sql(&input));
    }

    #[test]
    fn postgres_startup_bytes_are_answered(bytes in pg::startup()) {
        no_panic(|| strata_fuzzing::pg_raw(&bytes));
    }

    #[test]
    fn postgres_messages_after_login_are_answered(bytes in pg::messages()) {
        no_panic(|| strata_fuzzing::pg_after_login(&bytes));
    }
}

/// The claims path reaches past the signature: visas given as objects are signed and count, so
/// the property above is not vacuous.
#[test]
fn claims_with_the_visas_of_a_tier_grant_that_tier() {
    let _turn = one_at_a_time();
    let world = strata_fuzzing::World::get();
    let now = strata_passport::now_unix();
    let iss = world.issuer.issuer();
    let visas: Vec<Value> = VisaKind::for_tier(Tier::Registered)
        .into_iter()
        .map(|kind| visa_claims(iss, "someone", kind, now, now + 600, iss))
        .collect();
    let claims = json!({
        "iss": iss, "sub": "someone", "iat": now, "exp": now + 600, "ga4gh_passport_v1": visas,
    });
    let principal = strata_fuzzing::passport_claims(&claims.to_string())
        .expect("signed claims with a researcher's visas verify");
    assert_eq!(principal.tier, Tier::Registered);
    let mut foreign = claims.clone();
    foreign["ga4gh_passport_v1"][0]["sub"] = json!("someone else");
    let principal = strata_fuzzing::passport_claims(&foreign.to_string()).expect("verifies");
    assert_eq!(principal.tier, Tier::Public, "a visa of another subject");
}

/// The SQL generator writes statements the server answers, not only ones it refuses: most run
/// for a controlled (row-level) principal, so the properties above reach the policy rules and
/// execution rather than stopping at the parser.
#[test]
fn generated_statements_mostly_run() {
    let _turn = one_at_a_time();
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = sql::statement();
    let mut answered = 0;
    let mut refusals = Vec::new();
    for _ in 0..40 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        match strata_fuzzing::sql(&text).swap_remove(0) {
            Ok(()) => answered += 1,
            Err(e) => refusals.push(format!("{text}\n  -> {e}")),
        }
    }
    assert!(
        answered >= 28,
        "{answered}/40 answered; refused:\n{}",
        refusals.join("\n")
    );
}

/// The aggregates-only principal's cohort counts carry rounding 20 in their report, and a large
/// cohort is released rounded: the rounding check of `cohort_json` is not vacuous.
#[test]
fn aggregates_only_cohort_counts_are_rounded() {
    let _turn = one_at_a_time();
    let world = strata_fuzzing::World::get();
    let everyone = json!({"includes": [{"id": "g", "temporal": false, "items": [{"id": "i",
        "type": "PERSON", "searchParameters": [{"parameterId": "p", "name": "age",
        "domain": "PERSON", "type": "AGE", "group": false, "ancestorData": false,
        "standard": true, "attributes": [{"name": "AGE", "operator": "BETWEEN",
        "operands": ["0", "150"]}]}], "modifiers": []}]}], "excludes": [], "dataFilters": []});
    let call = world.call("fuzz", &world.principals[3]);
    let count = world
        .block_on(world.query.cohort_count(&call, &everyone.to_string()))
        .expect("everyone is a cohort");
    let summary = count.summary.expect("a protected count has a report");
    assert_eq!(summary.rounding, 20);
    let n = count.count.expect("the whole dataset is released");
    assert!(n >= 300 && n % 20 == 0, "{n}");
    strata_fuzzing::cohort_json(&everyone.to_string());
}
