//! The shifted-date bound (`planner/src/registered/shift_bounds.rs`): a filter on a registered
//! view's shifted date, `shift(person, d) >= X`, gets the bound it implies on the real date
//! (`d >= X + 1 day`, or `d <= X + 365 days` for an upper bound), which Parquet statistics can
//! prune with; the original condition still decides each row.

use crate::common::*;

/// The conjuncts of the (one) filter of the optimized plan of `sql`, sorted.
async fn conjuncts(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    let plan = text(&optimized(ctx, sql).await);
    let filters: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Filter: "))
        .collect();
    assert_eq!(filters.len(), 1, "{plan}");
    let mut out: Vec<String> = filters[0].split(" AND ").map(String::from).collect();
    out.sort();
    out
}

/// The bounds the rule adds to the filter of `sql`, as they reach the scan of the real table
/// (its `partial_filters`, which the Parquet statistics prune with); each is also in the filter
/// above the view's rows.
async fn implied_bounds(sql: &str) -> Vec<String> {
    let pushed = |plan: String| -> Vec<String> {
        plan.lines()
            .filter_map(|l| {
                l.split_once("partial_filters=[")
                    .map(|(_, f)| f.to_string())
            })
            .flat_map(|f| {
                f.trim_end_matches(']')
                    .split(", ")
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let with = pushed(text(
        &optimized(&registered_session_with(true).await, sql).await,
    ));
    let without = pushed(text(
        &optimized(&registered_session_with(false).await, sql).await,
    ));
    let filter = conjuncts(&registered_session_with(true).await, sql).await;
    let mut added: Vec<String> = with.into_iter().filter(|b| !without.contains(b)).collect();
    for bound in &added {
        assert!(
            filter.contains(bound),
            "{bound} is not in the filter {filter:?}"
        );
    }
    added.sort();
    added
}

#[tokio::test]
async fn a_date_filter_on_a_shifted_column_gets_the_widened_bound() {
    let sql = "SELECT COUNT(*) FROM condition_occurrence \
               WHERE condition_start_date >= DATE '2020-01-01'";
    let plan = optimized(&registered_session().await, sql).await;
    // The caller's filter with the real date's bound first, which alone reaches the scan (a
    // filter that cannot fail on any row): Parquet statistics and the page index prune with it.
    // The view's own row filter runs inside the scan, before any of them.
    assert_plan(
        &plan,
        r#"
Projection: count(Int64(1)) AS count(*)
  Aggregate: groupBy=[[]], aggr=[[count(Int64(1))]]
    SubqueryAlias: condition_occurrence
      Projection:
        Filter: condition_occurrence.condition_start_date >= Date32("2020-01-02") AND strata_shift_date(condition_occurrence.person_id, condition_occurrence.condition_start_date) >= Date32("2020-01-01")
          TableScan: condition_occurrence projection=[person_id, condition_start_date], partial_filters=[condition_occurrence.condition_start_date >= Date32("2020-01-02")]
"#,
    );
}

#[tokio::test]
async fn a_lower_bound_moves_by_the_smallest_offset() {
    assert_eq!(
        implied_bounds(
            "SELECT COUNT(*) FROM condition_occurrence \
             WHERE condition_start_date > DATE '2020-03-01'"
        )
        .await,
        vec![r#"condition_occurrence.condition_start_date > Date32("2020-03-02")"#]
    );
}

#[tokio::test]
async fn an_upper_bound_moves_by_the_largest_offset() {
    // 2020 is a leap year: 365 days after January 1st is December 31st.
    assert_eq!(
        implied_bounds(
            "SELECT COUNT(*) FROM condition_occurrence \
             WHERE condition_start_date < DATE '2020-01-01'"
        )
        .await,
        vec![r#"condition_occurrence.condition_start_date < Date32("2020-12-31")"#]
    );
}

#[tokio::test]
async fn an_equality_becomes_the_window_of_possible_offsets() {
    assert_eq!(
        implied_bounds(
            "SELECT COUNT(*) FROM condition_occurrence \
             WHERE condition_start_date = DATE '2021-01-01'"
        )
        .await,
        vec![
            r#"condition_occurrence.condition_start_date <= Date32("2022-01-01")"#,
            r#"condition_occurrence.condition_start_date >= Date32("2021-01-02")"#,
        ]
    );
}

#[tokio::test]
async fn between_gets_both_bounds() {
    assert_eq!(
        implied_bounds(
            "SELECT COUNT(*) FROM condition_occurrence \
             WHERE condition_start_date BETWEEN DATE '2020-01-01' AND DATE '2020-06-30'"
        )
        .await,
        vec![
            r#"condition_occurrence.condition_start_date <= Date32("2021-06-30")"#,
            r#"condition_occurrence.condition_start_date >= Date32("2020-01-02")"#,
        ]
    );
}

#[tokio::test]
async fn filters_that_imply_no_bound_are_left_alone() {
    for sql in [
        // Not a shifted column.
        "SELECT COUNT(*) FROM person WHERE year_of_birth >= 1960",
        // Not-equal bounds nothing.
        "SELECT COUNT(*) FROM condition_occurrence WHERE condition_start_date <> DATE '2020-01-01'",
        // Against another column, not a literal.
        "SELECT COUNT(*) FROM condition_occurrence \
         WHERE condition_start_date > condition_start_date - INTERVAL '1' DAY",
    ] {
        assert_eq!(implied_bounds(sql).await, Vec::<String>::new(), "{sql}");
    }
}

#[tokio::test]
async fn the_widened_bound_keeps_every_row_the_shifted_filter_keeps() {
    for sql in [
        "SELECT condition_concept_id, COUNT(*) FROM condition_occurrence \
         WHERE condition_start_date >= DATE '2019-09-01' GROUP BY 1",
        "SELECT condition_concept_id, COUNT(*) FROM condition_occurrence \
         WHERE condition_start_date < DATE '2019-12-01' GROUP BY 1",
        "SELECT condition_concept_id, COUNT(*) FROM condition_occurrence \
         WHERE condition_start_date BETWEEN DATE '2019-06-01' AND DATE '2019-12-31' GROUP BY 1",
    ] {
        let with = pairs(&registered_session_with(true).await, sql).await;
        let without = pairs(&registered_session_with(false).await, sql).await;
        assert_eq!(with, without, "{sql}");
        assert!(!with.is_empty(), "{sql}: the filter should keep some rows");
    }
}
