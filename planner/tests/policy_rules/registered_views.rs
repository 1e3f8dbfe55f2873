//! Registered views (`planner/src/registered/`): a registered principal's session holds each
//! participant table's view under the table's name; DataFusion inlines it into every plan, so
//! every read sees shifted dates, generalized demographics, no controlled column and no
//! participant aged 89+.

use arrow::array::AsArray;
use arrow::datatypes::{Date32Type, Int64Type};
use strata_planner::PlannerError;
use strata_planner::registered::policy::{GENDER_GENERALIZED, RACE_ANOTHER_SINGLE};

use crate::common::*;

#[tokio::test]
async fn registered_views_are_built_for_participant_tables_up_to_the_registered_tier() {
    let views = registered_views().await;
    // Not the vocabulary (no person key), not genotype (controlled).
    assert_eq!(
        views.keys().collect::<Vec<_>>(),
        vec!["condition_occurrence", "person"]
    );
    // The controlled column is left out of the view.
    let person: Vec<String> = views["person"]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        person,
        vec![
            "person_id",
            "year_of_birth",
            "gender_concept_id",
            "race_concept_id"
        ]
    );
}

#[tokio::test]
async fn registered_reads_are_swapped_for_views() {
    let ctx = registered_session().await;
    let plan = analyzed(
        &ctx,
        "SELECT person_id, year_of_birth, gender_concept_id FROM person",
    )
    .await
    .expect("permitted");
    assert_plan(
        &plan,
        r#"
Projection: person.person_id, person.year_of_birth, person.gender_concept_id
  SubqueryAlias: person
    Projection: person.person_id AS person_id, person.year_of_birth AS year_of_birth, strata_generalize_gender(person.person_id, person.gender_concept_id, person.gender_concept_id) AS gender_concept_id, strata_generalize_race(person.person_id, person.race_concept_id, person.race_concept_id) AS race_concept_id
      TableScan: person
"#,
    );
}

#[tokio::test]
async fn registered_views_shift_every_date_and_keep_vocabulary_reads() {
    let ctx = registered_session().await;
    let plan = analyzed(
        &ctx,
        "SELECT c.concept_name, co.condition_start_date FROM condition_occurrence co \
         JOIN concept c ON c.concept_id = co.condition_concept_id",
    )
    .await
    .expect("permitted");
    assert_plan(
        &plan,
        r#"
Projection: c.concept_name, co.condition_start_date
  Inner Join:  Filter: c.concept_id = co.condition_concept_id
    SubqueryAlias: co
      SubqueryAlias: condition_occurrence
        Projection: condition_occurrence.person_id AS person_id, condition_occurrence.condition_concept_id AS condition_concept_id, strata_shift_date(condition_occurrence.person_id, condition_occurrence.condition_start_date) AS condition_start_date
          TableScan: condition_occurrence
    SubqueryAlias: c
      TableScan: concept
"#,
    );
}

#[tokio::test]
async fn registered_dates_are_shifted_back_by_one_offset_per_person() {
    let policy = registered_policy().await;
    let ctx = registered_session().await;
    let sql = "SELECT person_id, condition_start_date FROM condition_occurrence \
               ORDER BY person_id, condition_start_date";
    let shifted = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let real = unrestricted()
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows = |batches: &[arrow::array::RecordBatch]| -> Vec<(i64, i32)> {
        batches
            .iter()
            .flat_map(|b| {
                let p = b.column(0).as_primitive::<Int64Type>().clone();
                let d = b.column(1).as_primitive::<Date32Type>().clone();
                (0..b.num_rows())
                    .map(move |i| (p.value(i), d.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (shifted, real) = (rows(&shifted), rows(&real));
    assert_eq!(shifted.len(), real.len());
    let mut offsets = std::collections::BTreeSet::new();
    for ((p, s), (q, r)) in shifted.iter().zip(&real) {
        assert_eq!(p, q);
        let offset = policy.offset_days(*p);
        assert!((1..=365).contains(&offset));
        assert_eq!(*s, r - offset as i32, "participant {p}");
        offsets.insert(offset);
    }
    // Different participants, different offsets (a keyed hash, not one constant).
    assert!(offsets.len() > 10, "{offsets:?}");
}

#[tokio::test]
async fn registered_views_leave_out_participants_aged_89_and_older() {
    let registered = registered_session().await;
    let count = |ctx: datafusion::prelude::SessionContext| async move {
        pairs(
            &ctx,
            &format!("SELECT 0, COUNT(*) FROM person WHERE person_id = {ELDER}"),
        )
        .await
    };
    assert_eq!(count(unrestricted()).await, vec![(0, Some(1))]);
    assert_eq!(count(registered).await, vec![(0, Some(0))]);
}

#[tokio::test]
async fn registered_views_generalize_gender_and_rare_races() {
    let ctx = registered_session().await;
    let got = pairs(
        &ctx,
        "SELECT gender_concept_id, COUNT(*) FROM person GROUP BY gender_concept_id",
    )
    .await;
    // The elder is left out; "other" (0) becomes the program's generalized code.
    assert_eq!(
        got,
        vec![
            (8507, Some(MEN)),
            (8532, Some(WOMEN)),
            (GENDER_GENERALIZED, Some(OTHERS)),
        ]
    );
    // A race held by fewer than 200 participants becomes "Another single population".
    let got = pairs(
        &ctx,
        "SELECT race_concept_id, COUNT(*) FROM person GROUP BY race_concept_id",
    )
    .await;
    assert_eq!(got, vec![(RACE_ANOTHER_SINGLE, Some(MEN + WOMEN + OTHERS))]);
}

#[tokio::test]
async fn a_controlled_column_is_refused_by_name_at_the_registered_tier() {
    let ctx = registered_session().await;
    let guard =
        strata_planner::tier_guard::TierGuard::new(tier_map(), strata_engine::Tier::Registered);
    let got =
        strata_planner::plan_sql_guarded(&ctx, "SELECT birth_datetime FROM person", &guard).await;
    match got {
        Err(PlannerError::NotPermitted(m)) => assert_eq!(
            m,
            "column person.birth_datetime requires the controlled tier (yours: registered)"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_the_table_under_a_view_passes_the_tier_guard() {
    // The view's base scan reads the whole person table (the controlled column included);
    // the guard accepts it because it is a RegisteredBase, reached only through the view.
    let ctx = registered_session().await;
    let plan = analyzed(&ctx, "SELECT COUNT(*) FROM person").await;
    assert!(plan.is_ok(), "{plan:?}");
    // The same table registered plainly is refused on that column.
    let plain = unrestricted();
    plain.add_analyzer_rule(std::sync::Arc::new(
        strata_planner::tier_guard::TierGuard::new(tier_map(), strata_engine::Tier::Registered),
    ));
    let err = analyzed(&plain, "SELECT * FROM person").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("column person.birth_datetime requires the controlled tier"),
        "{err}"
    );
}

#[tokio::test]
async fn the_views_row_filter_runs_before_any_expression_of_the_caller() {
    // Fails on the elder's row only (division by zero): the registered tier must not see it.
    let sql = format!(
        "SELECT COUNT(*) FROM person \
         WHERE 10 / (person_id - {ELDER}) > -100 AND person_id IN ({ELDER}, 1, 2)"
    );
    assert!(
        unrestricted()
            .sql(&sql)
            .await
            .unwrap()
            .collect()
            .await
            .is_err(),
        "the probe fails on the elder's row"
    );
    let ctx = registered_session().await;
    let df = ctx.sql(&sql).await.unwrap();
    let physical = df.clone().create_physical_plan().await.unwrap();
    let shown = datafusion::physical_plan::displayable(physical.as_ref())
        .indent(false)
        .to_string();
    // The caller's filter above the view's rows; below them only the filter that cannot fail.
    let caller = shown.find("FilterExec: 10 /").expect("caller's filter");
    let rows = shown.find("RegisteredRowsExec").expect("the view's rows");
    assert!(caller < rows, "{shown}");
    let below = &shown[rows..];
    assert!(!below.contains("10 /"), "{shown}");
    assert!(below.contains("person_id@0 = 1"), "{shown}");
    let batches = df
        .collect()
        .await
        .expect("the elder's row is never evaluated");
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 2);
}
