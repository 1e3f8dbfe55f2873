//! The tier guard (`planner/src/tier_guard.rs`): no table and no column above the principal's
//! tier, through any path. These sessions register every table, so the guard alone decides.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::optimizer::AnalyzerRule;
use strata_engine::Tier;
use strata_planner::PlannerError;
use strata_planner::tier_guard::TierGuard;

use crate::common::*;

/// Applies the guard as the analyzer does; the refusal as the server reports it.
pub async fn guard(tier: Tier, aggregates_only: bool, sql: &str) -> Result<String, String> {
    let ctx = unrestricted();
    let plan = logical_plan(&ctx, sql).await;
    let rule = TierGuard::new(tier_map(), tier).aggregates_only(aggregates_only);
    match rule.analyze(plan, &ConfigOptions::default()) {
        Ok(plan) => Ok(text(&plan)),
        Err(e) => match PlannerError::from_datafusion(e) {
            PlannerError::NotPermitted(m) => Err(m),
            other => panic!("{sql}: not a refusal: {other:?}"),
        },
    }
}

#[tokio::test]
async fn tier_guard_passes_permitted_plans_unchanged() {
    let sql = "SELECT c.concept_name, COUNT(*) AS n FROM condition_occurrence co \
               JOIN concept c ON c.concept_id = co.condition_concept_id GROUP BY c.concept_name";
    let before = text(&logical_plan(&unrestricted(), sql).await);
    let after = guard(Tier::Registered, false, sql)
        .await
        .expect("permitted");
    // The guard checks, it never rewrites.
    assert_eq!(after, before);
    assert_eq!(
        after,
        "\
Projection: c.concept_name, count(Int64(1)) AS count(*) AS n
  Aggregate: groupBy=[[c.concept_name]], aggr=[[count(Int64(1))]]
    Inner Join:  Filter: c.concept_id = co.condition_concept_id
      SubqueryAlias: co
        TableScan: condition_occurrence
      SubqueryAlias: c
        TableScan: concept"
    );
}

#[tokio::test]
async fn tier_guard_refuses_a_controlled_table_at_the_registered_tier() {
    assert_eq!(
        guard(Tier::Registered, false, "SELECT COUNT(*) FROM genotype").await,
        Err("table 'genotype' requires the controlled tier (yours: registered)".into())
    );
    assert!(
        guard(Tier::Controlled, false, "SELECT COUNT(*) FROM genotype")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn tier_guard_finds_controlled_tables_in_subqueries_ctes_and_unions() {
    let denied = Err("table 'genotype' requires the controlled tier (yours: registered)".into());
    for sql in [
        "SELECT COUNT(*) FROM concept WHERE EXISTS (SELECT 1 FROM genotype)",
        "SELECT concept_name FROM concept WHERE concept_id IN \
         (SELECT CAST(person_id AS INT) FROM genotype)",
        "WITH g AS (SELECT * FROM genotype) SELECT COUNT(*) FROM g",
        "SELECT person_id FROM condition_occurrence UNION ALL SELECT person_id FROM genotype",
        "SELECT (SELECT COUNT(*) FROM genotype) AS n",
    ] {
        assert_eq!(guard(Tier::Registered, false, sql).await, denied, "{sql}");
    }
}

#[tokio::test]
async fn tier_guard_refuses_registered_tables_at_the_public_tier() {
    assert_eq!(
        guard(Tier::Public, false, "SELECT COUNT(*) FROM person").await,
        Err("table 'person' requires the registered tier (yours: public)".into())
    );
    // The vocabulary is public.
    assert!(
        guard(Tier::Public, false, "SELECT concept_name FROM concept")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn tier_guard_refuses_a_table_with_a_controlled_column_read_plainly() {
    // The analyzer runs before projection pushdown: the scan of `person` still reads every
    // column, `birth_datetime` (controlled) included, so a registered principal is refused the
    // plain table whatever the query names. The server gives registered principals the view,
    // which has no such column (`registered_views.rs`); a controlled principal reads it.
    let denied =
        Err("column person.birth_datetime requires the controlled tier (yours: registered)".into());
    for sql in [
        "SELECT birth_datetime FROM person",
        "SELECT COUNT(*) FROM person WHERE birth_datetime IS NOT NULL",
        "SELECT year_of_birth FROM person",
    ] {
        assert_eq!(guard(Tier::Registered, false, sql).await, denied, "{sql}");
        assert!(guard(Tier::Controlled, false, sql).await.is_ok(), "{sql}");
    }
    // A table without controlled columns is read plainly.
    assert!(
        guard(
            Tier::Registered,
            false,
            "SELECT condition_start_date FROM condition_occurrence"
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn tables_above_the_tier_are_refused_even_when_not_registered() {
    // The server registers only the tables a principal may read: planning then fails with
    // "table not found", which the guard turns into the same refusal, and names that exist
    // nowhere get a refusal too below the top tier (no probing for hidden names).
    let ctx = session_of(
        &tables()
            .into_iter()
            .filter(|(n, _)| n != "genotype")
            .collect(),
        None,
    );
    let registered = TierGuard::new(tier_map(), Tier::Registered);
    let refusal = |sql: &'static str, guard: TierGuard| {
        let ctx = ctx.clone();
        async move {
            match strata_planner::plan_sql_guarded(&ctx, sql, &guard).await {
                Err(PlannerError::UnavailableTable {
                    message,
                    denied: true,
                    ..
                }) => message,
                other => panic!("{sql}: {other:?}"),
            }
        }
    };
    assert_eq!(
        refusal("SELECT COUNT(*) FROM genotype", registered).await,
        "table 'genotype' requires the controlled tier (yours: registered)"
    );
    assert_eq!(
        refusal(
            "SELECT COUNT(*) FROM secret_table",
            TierGuard::new(tier_map(), Tier::Public)
        )
        .await,
        "table 'secret_table' is not available at the public tier"
    );
    let controlled = TierGuard::new(tier_map(), Tier::Controlled);
    assert!(matches!(
        strata_planner::plan_sql_guarded(&ctx, "SELECT * FROM secret_table", &controlled).await,
        Err(PlannerError::UnavailableTable { denied: false, .. })
    ));
}

#[tokio::test]
async fn tier_guard_lists_the_tables_a_plan_touches() {
    let ctx = unrestricted();
    let plan = logical_plan(
        &ctx,
        "SELECT COUNT(*) FROM person p WHERE EXISTS \
         (SELECT 1 FROM condition_occurrence c WHERE c.person_id = p.person_id)",
    )
    .await;
    let guard = Arc::new(TierGuard::new(tier_map(), Tier::Registered));
    assert_eq!(
        guard.tables_touched(&plan),
        vec![
            ("condition_occurrence".to_string(), Tier::Registered),
            ("person".to_string(), Tier::Registered),
        ]
    );
}
