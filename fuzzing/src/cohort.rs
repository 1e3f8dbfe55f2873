//! Cohort definitions (OHDSI Circe JSON and Cohort Builder JSON) through parsing, compilation
//! to a plan, protection and counting.

use std::time::Duration;

use crate::World;

const NO_COUNT_OUTLIVES: Duration = Duration::from_secs(60);

/// Counts the cohort `text` defines, as a row-level and an aggregates-only principal, then its
/// breakdown by sex. Holds: an answer or a typed error, within the limits; a released count is
/// never one of 1..=20 participants (counts are suppressed or rounded, never small), and is a
/// multiple of the rounding base its report names (20 for the aggregates-only principal).
pub fn cohort_json(text: &str) {
    let world = World::get();
    for principal in [&world.principals[0], &world.principals[3]] {
        let call = world.call("fuzz", principal);
        let counted = world.within(NO_COUNT_OUTLIVES, async {
            let count = world.query.cohort_count(&call, text).await;
            if let Ok(count) = &count {
                let rounding = count.summary.as_ref().map_or(1, |s| s.rounding);
                check_released(count.count, rounding, text);
                let breakdown = world.query.cohort_breakdown(&call, text, "sex").await;
                if let Ok(breakdown) = breakdown {
                    let rounding = breakdown.summary.as_ref().map_or(1, |s| s.rounding);
                    for (_, n) in breakdown.rows {
                        check_released(n, rounding, text);
                    }
                }
            }
        });
        assert!(
            counted.is_some(),
            "a cohort count outlived every limit: {text:?}"
        );
    }
}

/// [`cohort_json`] for inputs the fuzzer shapes as Cohort Builder JSON: the same entry point
/// (the service tells the formats apart), seeded differently.
pub fn cohort_builder_json(text: &str) {
    cohort_json(text)
}

fn check_released(count: Option<i64>, rounding: u64, text: &str) {
    if let Some(n) = count {
        assert!(
            !(1..=20).contains(&n),
            "a cohort count of {n} participants was released: {text:?}"
        );
        assert_eq!(
            n % rounding.max(1) as i64,
            0,
            "a count of {n} released unrounded (base {rounding}): {text:?}"
        );
    }
}
