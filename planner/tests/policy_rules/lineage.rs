//! The lineage and disclosure rewrite (`planner/src/disclosure/lineage.rs`, `cells.rs`): every
//! aggregate over participant rows gets each group's participant set, each cell a reason code
//! (`strata_cell_check`: 1..=20 participants, or dominated), and then
//! - row-level principals: the result's cells are masked at the output (`strata_mask`), and
//!   the result ends with the hidden `__strata_cell_set` column for the release ledger;
//! - aggregates-only principals: each cell is protected where it is computed
//!   (`strata_protect`: NULL unless releasable, counts rounded up to 20), so no later use
//!   (HAVING, an outer query) sees a true small value.
//!
//! The plans rewritten here are the optimized plans the disclosure planner receives.

use std::sync::Arc;

use strata_planner::disclosure::lineage::{CELL_SET_COLUMN, Rewriter};
use strata_planner::disclosure::{Level, SuppressionCounter};

use crate::common::*;

/// The rewritten plan of `sql` (or the refusal), and the rewriter's protected cell count.
async fn rewrite(
    level: Level,
    sql: &str,
) -> Result<(datafusion::logical_expr::LogicalPlan, usize), String> {
    let plan = optimized(&unrestricted(), sql).await;
    let keys = person_keys();
    let mut rewriter = Rewriter::new(
        &keys,
        protection(level),
        Arc::new(SuppressionCounter::default()),
    );
    let rewritten = rewriter.rewrite(&plan).map_err(|u| u.0)?;
    Ok((rewritten, rewriter.protected_cells))
}

const BY_GENDER: &str =
    "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id";

/// The scan carries the person key up as `__strata_lineage_1`; the aggregate unions it into
/// each group's participant set (`__strata_lineage_2`); `strata_cell_check` gives the cell its
/// reason code (`__strata_code_3`); inside the query the count stays exact, and at the output
/// `strata_mask` withholds it where the code is set; the participant sets go out last for the
/// release ledger.
#[tokio::test]
async fn row_level_counts_are_masked_at_the_output() {
    let (plan, cells) = rewrite(Level::RowLevel, BY_GENDER).await.unwrap();
    assert_eq!(cells, 1);
    assert_plan(
        &plan,
        r#"
Projection: person.gender_concept_id, strata_mask(n, __strata_code_3) AS n, strata_cell_set(__strata_lineage_2) AS __strata_cell_set_0
  Projection: person.gender_concept_id, count(Int64(1)) AS count(*) AS n, __strata_lineage_2, __strata_code_3
    Projection: person.gender_concept_id, count(Int64(1)), __strata_lineage_2, __strata_code_3
      Projection: person.gender_concept_id, count(Int64(1)), __strata_lineage_2, strata_cell_check(__strata_lineage_2) AS __strata_code_3
        Aggregate: groupBy=[[person.gender_concept_id]], aggr=[[count(Int64(1)), strata_participants(__strata_lineage_1) AS __strata_lineage_2]]
          Projection: person.gender_concept_id, CAST(person.person_id AS Int64) AS __strata_lineage_1
            TableScan: person projection=[gender_concept_id, person_id]
"#,
    );
}

/// The same plan, with the count replaced by `strata_protect(count, code)` right above the
/// aggregate: NULL when the code is set, else rounded up to 20, for every later use.
#[tokio::test]
async fn aggregates_only_counts_are_protected_where_computed() {
    let (plan, cells) = rewrite(Level::AggregatesOnly, BY_GENDER).await.unwrap();
    assert_eq!(cells, 1);
    assert_plan(
        &plan,
        r#"
Projection: person.gender_concept_id, strata_mask(n, __strata_code_3) AS n, strata_cell_set(__strata_lineage_2) AS __strata_cell_set_0
  Projection: person.gender_concept_id, count(Int64(1)) AS count(*) AS n, __strata_lineage_2, __strata_code_3
    Projection: person.gender_concept_id, strata_protect_rounded(count(Int64(1)), __strata_code_3) AS count(Int64(1)), __strata_lineage_2, __strata_code_3
      Projection: person.gender_concept_id, count(Int64(1)), __strata_lineage_2, strata_cell_check(__strata_lineage_2) AS __strata_code_3
        Aggregate: groupBy=[[person.gender_concept_id]], aggr=[[count(Int64(1)), strata_participants(__strata_lineage_1) AS __strata_lineage_2]]
          Projection: person.gender_concept_id, CAST(person.person_id AS Int64) AS __strata_lineage_1
            TableScan: person projection=[gender_concept_id, person_id]
"#,
    );
}

/// DataFusion plans COUNT(DISTINCT person_id) as per-participant groups (`alias1`) under an
/// outer count; the rewrite puts the pair back into one aggregate whose count is the size of
/// the group's participant set (`strata_set_size`), the set the cell is checked and released
/// on: one aggregation of the ids instead of two.
#[tokio::test]
async fn count_distinct_person_id_by_gender_is_read_off_the_participant_set() {
    let (plan, _) = rewrite(
        Level::RowLevel,
        "SELECT gender_concept_id, COUNT(DISTINCT person_id) AS n FROM person \
         GROUP BY gender_concept_id",
    )
    .await
    .unwrap();
    assert_plan(
        &plan,
        r#"
Projection: person.gender_concept_id, strata_mask(n, __strata_code_3) AS n, strata_cell_set(__strata_lineage_2) AS __strata_cell_set_0
  Projection: person.gender_concept_id, count(alias1) AS n, __strata_lineage_2, __strata_code_3
    Projection: person.gender_concept_id, count(alias1), __strata_lineage_2, __strata_code_3
      Projection: person.gender_concept_id, strata_set_size(__strata_lineage_2) AS count(alias1), __strata_lineage_2, strata_cell_check(__strata_lineage_2) AS __strata_code_3
        Aggregate: groupBy=[[person.gender_concept_id]], aggr=[[strata_participants(__strata_lineage_1) AS __strata_lineage_2]]
          Projection: person.person_id, person.gender_concept_id, CAST(person.person_id AS Int64) AS __strata_lineage_1
            TableScan: person projection=[person_id, gender_concept_id]
"#,
    );
}

/// A distinct count of anything but the person key stays DataFusion's two aggregates: the
/// inner groups are not one participant each, and the outer count is a cell over them.
#[tokio::test]
async fn count_distinct_of_another_column_keeps_its_two_aggregates() {
    let (plan, _) = rewrite(
        Level::RowLevel,
        "SELECT gender_concept_id, COUNT(DISTINCT year_of_birth) AS n FROM person \
         GROUP BY gender_concept_id",
    )
    .await
    .unwrap();
    let shown = plan.display_indent().to_string();
    assert!(!shown.contains("strata_set_size"), "{shown}");
    assert!(
        shown.contains("aggr=[[count(alias1), strata_participants("),
        "{shown}"
    );
    assert!(
        shown.contains("person.year_of_birth AS alias1]], aggr=[["),
        "{shown}"
    );
}

#[tokio::test]
async fn plans_without_a_participant_aggregate_are_not_rewritten() {
    for sql in [
        // Participant rows: row-level data, for the tier guard to allow or not.
        "SELECT person_id, year_of_birth FROM person WHERE gender_concept_id = 8507",
        // An aggregate of the vocabulary.
        "SELECT COUNT(*) FROM concept",
    ] {
        let original = optimized(&unrestricted(), sql).await;
        let (plan, cells) = rewrite(Level::RowLevel, sql).await.unwrap();
        assert_eq!(text(&plan), text(&original), "{sql}");
        assert_eq!(cells, 0, "{sql}");
    }
}

#[tokio::test]
async fn small_cells_are_suppressed_and_large_ones_released() {
    let (ctx, report) = protected_session(Level::RowLevel);
    let got = pairs(&ctx, BY_GENDER).await;
    // 3 others: 1..=20, suppressed. 30 men and the elder: 31; 25 women: exact for rows.
    assert_eq!(
        got,
        vec![(0, None), (8507, Some(MEN + 1)), (8532, Some(WOMEN))]
    );
    assert_eq!(report.protected_cells(), 1);
    assert_eq!(report.suppressed_cells(), 1);
    assert_eq!(report.suppressed.of("threshold"), 1);
    // The last column is the hidden participant set the release ledger reads.
    let (ctx, _) = protected_session(Level::RowLevel);
    assert_eq!(
        column_names(&ctx, BY_GENDER).await,
        vec![
            "gender_concept_id".to_string(),
            "n".to_string(),
            format!("{CELL_SET_COLUMN}_0")
        ]
    );
}

#[tokio::test]
async fn a_cell_with_fewer_contributors_than_its_row_is_released_on_its_own_set() {
    let (ctx, _) = protected_session(Level::RowLevel);
    let sql = "SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE year_of_birth > 1950) AS young \
               FROM person";
    // The row's participants for `n`; the filtered rows' for `young`.
    assert_eq!(
        column_names(&ctx, sql).await,
        vec![
            "n".to_string(),
            "young".to_string(),
            format!("{CELL_SET_COLUMN}_0"),
            format!("{CELL_SET_COLUMN}_1")
        ]
    );
}

#[tokio::test]
async fn aggregates_only_counts_are_rounded_up_and_small_ones_withheld() {
    let (ctx, _) = protected_session(Level::AggregatesOnly);
    let got = pairs(&ctx, BY_GENDER).await;
    assert_eq!(got, vec![(0, None), (8507, Some(40)), (8532, Some(40))]);
}

#[tokio::test]
async fn aggregates_only_later_uses_see_the_protected_value() {
    // HAVING on a count: a row-level principal's HAVING sees the true 3 (the cell is still
    // masked in the result); an aggregates-only principal's sees NULL, so the group is gone
    // and cannot be probed for.
    let sql = "SELECT gender_concept_id, COUNT(*) AS n FROM person \
               GROUP BY gender_concept_id HAVING COUNT(*) < 5";
    let (rows, _) = protected_session(Level::RowLevel);
    assert_eq!(pairs(&rows, sql).await, vec![(0, None)]);
    let (dash, _) = protected_session(Level::AggregatesOnly);
    assert_eq!(pairs(&dash, sql).await, vec![]);
}

#[tokio::test]
async fn a_single_participants_condition_is_suppressed() {
    let sql = "SELECT condition_concept_id, COUNT(DISTINCT person_id) AS n \
               FROM condition_occurrence GROUP BY condition_concept_id";
    let (ctx, report) = protected_session(Level::RowLevel);
    assert_eq!(
        pairs(&ctx, sql).await,
        vec![(201826, Some(25)), (4043241, None)]
    );
    assert_eq!(report.suppressed_cells(), 1);
}

#[tokio::test]
async fn aggregates_only_per_participant_rows_are_refused_by_lineage() {
    let sql = "SELECT person_id, COUNT(*) AS n FROM condition_occurrence GROUP BY person_id";
    assert_eq!(
        rewrite(Level::AggregatesOnly, sql).await.map(|_| ()),
        Err(
            "row-level results are not available to an aggregates-only principal: \
             summarize the per-participant rows with an outer aggregate"
                .into()
        )
    );
    // Per-participant groups are one participant's own rows: exact for a row-level
    // principal, with nothing to mask.
    let (ctx, report) = protected_session(Level::RowLevel);
    let got = pairs(&ctx, sql).await;
    assert_eq!(got[0], (1, Some(3)));
    assert!(got.iter().all(|(_, n)| n.is_some()));
    assert_eq!(report.suppressed_cells(), 0);
}

#[tokio::test]
async fn per_participant_groups_under_an_outer_aggregate_are_one_protected_cell() {
    let sql = "SELECT k, COUNT(*) AS n FROM \
               (SELECT person_id, COUNT(*) AS k FROM condition_occurrence GROUP BY person_id) t \
               GROUP BY k";
    let (_, cells) = rewrite(Level::AggregatesOnly, sql).await.unwrap();
    assert_eq!(cells, 1);
    // 24 participants with 2 records, participant 1 with 3.
    let (ctx, _) = protected_session(Level::RowLevel);
    assert_eq!(pairs(&ctx, sql).await, vec![(2, Some(24)), (3, None)]);
}
