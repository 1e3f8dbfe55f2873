//! The aggregates-only egress check of the tier guard (`TierGuard::aggregates_only`): a public
//! or `egress=aggregates` principal gets no participant row unaggregated, and may not use the
//! person key to single participants out. The same rule by lineage is in `lineage.rs`
//! (`aggregates_only_per_participant_rows_are_refused_by_lineage`).

use strata_engine::Tier;

use crate::tier_guard::guard;

const ROW_LEVEL: &str = "row-level results are not available to an aggregates-only principal \
                         (public tier or strata_egress=aggregates): summarize with COUNT, SUM, \
                         AVG … GROUP BY";

async fn aggregates_only(sql: &str) -> Result<String, String> {
    guard(Tier::Controlled, true, sql).await
}

#[tokio::test]
async fn aggregates_only_refuses_participant_rows() {
    for sql in [
        "SELECT person_id FROM person",
        "SELECT year_of_birth FROM person WHERE gender_concept_id = 8507",
        "SELECT DISTINCT condition_concept_id FROM condition_occurrence",
        "SELECT c.concept_name FROM condition_occurrence co \
         JOIN concept c ON c.concept_id = co.condition_concept_id",
    ] {
        assert_eq!(aggregates_only(sql).await, Err(ROW_LEVEL.into()), "{sql}");
    }
    // The same plans are fine for a row-level principal of the same tier.
    assert!(
        guard(Tier::Controlled, false, "SELECT person_id FROM person")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn aggregates_only_allows_counts_and_vocabulary_rows() {
    for sql in [
        "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id",
        "SELECT gender_concept_id, COUNT(DISTINCT person_id) AS n FROM person \
         GROUP BY gender_concept_id",
        "SELECT AVG(year_of_birth) FROM person",
        // No person key: not participants' rows.
        "SELECT concept_id, concept_name FROM concept",
    ] {
        assert!(aggregates_only(sql).await.is_ok(), "{sql}");
    }
}

#[tokio::test]
async fn aggregates_only_refuses_per_participant_groups_at_the_top() {
    let sql = "SELECT person_id, COUNT(*) AS n FROM condition_occurrence GROUP BY person_id";
    assert_eq!(aggregates_only(sql).await, Err(ROW_LEVEL.into()));
}

#[tokio::test]
async fn aggregates_only_allows_grouping_by_person_id_under_an_outer_aggregate() {
    // How many participants have more than one condition record: per-participant groups,
    // summarized by an outer COUNT.
    let sql = "SELECT COUNT(*) AS n FROM \
               (SELECT person_id, COUNT(*) AS k FROM condition_occurrence GROUP BY person_id) t \
               WHERE t.k > 1";
    assert_eq!(
        aggregates_only(sql).await.as_deref(),
        Ok("\
Projection: count(Int64(1)) AS count(*) AS n
  Aggregate: groupBy=[[]], aggr=[[count(Int64(1))]]
    Filter: t.k > Int64(1)
      SubqueryAlias: t
        Projection: condition_occurrence.person_id, count(Int64(1)) AS count(*) AS k
          Aggregate: groupBy=[[condition_occurrence.person_id]], aggr=[[count(Int64(1))]]
            TableScan: condition_occurrence")
    );
}

#[tokio::test]
async fn aggregates_only_refuses_slicing_by_the_person_key() {
    let filter = Err("an aggregates-only principal may not filter on the person key".into());
    assert_eq!(
        aggregates_only("SELECT COUNT(*) FROM person WHERE person_id = 42").await,
        filter
    );
    assert_eq!(
        aggregates_only("SELECT COUNT(*) FROM person WHERE person_id BETWEEN 1 AND 3").await,
        filter
    );
    // Groups computed from the key (here: participant 42 alone), even under an outer
    // aggregate.
    assert_eq!(
        aggregates_only(
            "SELECT MAX(n) FROM (SELECT CASE WHEN person_id = 42 THEN 1 ELSE 0 END AS g, \
             COUNT(*) AS n FROM person GROUP BY 1) t"
        )
        .await,
        Err("an aggregates-only principal may not group on the person key".into())
    );
    // Joining on the key is not slicing.
    assert!(
        aggregates_only(
            "SELECT COUNT(*) FROM person p JOIN condition_occurrence c \
             ON c.person_id = p.person_id"
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn aggregates_only_refuses_aggregating_the_person_key_into_a_value() {
    assert_eq!(
        aggregates_only("SELECT MAX(person_id) FROM person").await,
        Err("an aggregates-only principal may not aggregate a value of the person key".into())
    );
    // Counting participants is what the key is for.
    assert!(
        aggregates_only("SELECT COUNT(DISTINCT person_id) FROM condition_occurrence")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn aggregates_only_refuses_a_limit_before_the_aggregate() {
    assert_eq!(
        aggregates_only("SELECT COUNT(*) FROM (SELECT * FROM condition_occurrence LIMIT 10) t")
            .await,
        Err(
            "an aggregates-only principal may not LIMIT or OFFSET participant rows \
             before aggregating them"
                .into()
        )
    );
    // A LIMIT on the aggregated result is fine.
    assert!(
        aggregates_only(
            "SELECT gender_concept_id, COUNT(*) FROM person GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn aggregates_only_refuses_a_subquery_that_lists_a_participants_rows() {
    // Vocabulary rows, chosen row by row by one participant's records.
    let sql = "SELECT concept_name FROM concept WHERE concept_id IN \
               (SELECT condition_concept_id FROM condition_occurrence WHERE person_id = 1)";
    assert_eq!(aggregates_only(sql).await, Err(ROW_LEVEL.into()));
}
