//! A small dataset in memory and the sessions a principal of each tier gets over it, built from
//! the rules' public constructors the way the server's executor builds them
//! (`flight-server/src/executor.rs`, `base_session`).
//!
//! - `person(person_id, year_of_birth, gender_concept_id, race_concept_id, birth_datetime)`:
//!   registered, with `birth_datetime` a controlled column; everyone White (8527). 30 men (8507), 25 women (8532), 3 others (0), and
//!   participant 900 born in 1920 (aged 89+ in 2024, left out of the registered tier).
//! - `condition_occurrence(person_id, condition_concept_id, condition_start_date)`: registered.
//!   Concept 201826 for 25 participants, 4043241 for participant 1 only.
//! - `concept(concept_id, concept_name)`: public vocabulary, no person key.
//! - `genotype(person_id, variant_id)`: controlled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use arrow::array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::config::ConfigOptions;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use strata_engine::catalog::{Partitioning, TableEntry};
use strata_engine::{Catalog, Tier};
use strata_planner::disclosure::{
    self, DisclosurePlanner, DisclosureReport, Dominance, Level, Protection,
};
use strata_planner::registered::{self, RegisteredPolicy, RegisteredSettings};
use strata_planner::tier_guard::TierGuard;
use strata_planner::tiers::TierMap;

pub const MEN: i64 = 30;
pub const WOMEN: i64 = 25;
pub const OTHERS: i64 = 3;
/// Born in 1920: 104 in the reference year, so left out of the registered tier.
pub const ELDER: i64 = 900;
pub const REFERENCE_YEAR: i32 = 2024;
pub const SECRET: [u8; 32] = [7; 32];
/// 2020-01-01 as days since the epoch.
pub const JAN_1_2020: i32 = 18262;

fn entry(tier: Tier, person_key: Option<&str>, column_tiers: &[(&str, Tier)]) -> TableEntry {
    TableEntry {
        domain: if person_key.is_some() {
            "ehr".into()
        } else {
            "vocabulary".into()
        },
        tier,
        person_key: person_key.map(String::from),
        partitioning: Partitioning::Single,
        store: "local".into(),
        path: None,
        shard_locations: BTreeMap::new(),
        column_tiers: column_tiers
            .iter()
            .map(|(c, t)| (c.to_string(), *t))
            .collect(),
        rows: 0,
    }
}

pub fn catalog() -> Catalog {
    let mut c = Catalog::new("policy-tests", "memory");
    c.tables.insert(
        "person".into(),
        entry(
            Tier::Registered,
            Some("person_id"),
            &[("birth_datetime", Tier::Controlled)],
        ),
    );
    c.tables.insert(
        "condition_occurrence".into(),
        entry(Tier::Registered, Some("person_id"), &[]),
    );
    c.tables
        .insert("concept".into(), entry(Tier::Public, None, &[]));
    c.tables.insert(
        "genotype".into(),
        entry(Tier::Controlled, Some("person_id"), &[]),
    );
    c
}

fn mem(schema: Schema, columns: Vec<ArrayRef>) -> Arc<dyn TableProvider> {
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("memtable"))
}

/// The real tables, by name.
pub fn tables() -> BTreeMap<String, Arc<dyn TableProvider>> {
    // person: 1..=30 men, 31..=55 women, 56..=58 others, and the elder.
    let mut ids = Vec::new();
    let mut genders = Vec::new();
    for (n, gender) in [(MEN, 8507), (WOMEN, 8532), (OTHERS, 0)] {
        for _ in 0..n {
            ids.push(ids.len() as i64 + 1);
            genders.push(gender);
        }
    }
    ids.push(ELDER);
    genders.push(8507);
    let years: Vec<i32> = ids
        .iter()
        .map(|&p| if p == ELDER { 1920 } else { 1950 + p as i32 })
        .collect();
    let births: Vec<i64> = years
        .iter()
        .map(|y| (*y as i64 - 1970) * 365 * 86_400_000_000)
        .collect();
    let person = mem(
        Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("year_of_birth", DataType::Int32, false),
            Field::new("gender_concept_id", DataType::Int32, false),
            Field::new("race_concept_id", DataType::Int32, false),
            Field::new(
                "birth_datetime",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ]),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int32Array::from(years)),
            Arc::new(Int32Array::from(genders)),
            Arc::new(Int32Array::from(vec![8527; ids.len()])),
            Arc::new(TimestampMicrosecondArray::from(births)),
        ],
    );

    // condition_occurrence: 201826 for participants 1..=25 (two rows each), 4043241 for 1.
    let mut persons = Vec::new();
    let mut concepts = Vec::new();
    let mut dates = Vec::new();
    for p in 1..=25i64 {
        for k in 0..2 {
            persons.push(p);
            concepts.push(201826);
            dates.push(JAN_1_2020 + (p as i32) * 3 + k * 40);
        }
    }
    persons.push(1);
    concepts.push(4043241);
    dates.push(JAN_1_2020 + 100);
    let condition_occurrence = mem(
        Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("condition_concept_id", DataType::Int32, false),
            Field::new("condition_start_date", DataType::Date32, true),
        ]),
        vec![
            Arc::new(Int64Array::from(persons)),
            Arc::new(Int32Array::from(concepts)),
            Arc::new(Date32Array::from(dates)),
        ],
    );

    let concept = mem(
        Schema::new(vec![
            Field::new("concept_id", DataType::Int32, false),
            Field::new("concept_name", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(Int32Array::from(vec![201826, 4043241, 8507, 8532])),
            Arc::new(StringArray::from(vec![
                "Type 2 diabetes mellitus",
                "Rare condition",
                "Male",
                "Female",
            ])),
        ],
    );

    let genotype = mem(
        Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("variant_id", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["1-12345-A-G", "1-12345-A-G"])),
        ],
    );

    BTreeMap::from([
        ("person".to_string(), person),
        ("condition_occurrence".to_string(), condition_occurrence),
        ("concept".to_string(), concept),
        ("genotype".to_string(), genotype),
    ])
}

pub fn tier_map() -> Arc<TierMap> {
    Arc::new(TierMap::from_catalog(&catalog()))
}

pub fn person_keys() -> Arc<HashMap<String, String>> {
    Arc::new(disclosure::person_keys(&catalog()))
}

/// A session holding `tables` under their names, with `planner` as its query planner.
pub fn session_of(
    tables: &BTreeMap<String, Arc<dyn TableProvider>>,
    planner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
) -> SessionContext {
    let mut builder = SessionStateBuilder::new().with_default_features();
    if let Some(p) = planner {
        builder = builder.with_query_planner(p);
    }
    let ctx = SessionContext::new_with_state(builder.build());
    for (name, table) in tables {
        ctx.register_table(name.as_str(), table.clone())
            .expect("register");
    }
    ctx
}

/// A session with every table registered (the tier guard alone keeps a principal out).
pub fn unrestricted() -> SessionContext {
    session_of(&tables(), None)
}

/// The registered policy read from the data, as the server does at start-up.
pub async fn registered_policy() -> Arc<RegisteredPolicy> {
    let settings = RegisteredSettings {
        reference_year: Some(REFERENCE_YEAR),
        ..RegisteredSettings::default()
    };
    let ctx = unrestricted();
    let person = ctx.table_provider("person").await.expect("person").schema();
    let has = |t: &str| {
        ctx.table_exist(t).unwrap_or(false)
            || t.strip_prefix("person.")
                .is_some_and(|c| person.column_with_name(c).is_some())
    };
    let mut facts = Vec::new();
    for (fact, sql) in RegisteredPolicy::fact_queries(&settings, REFERENCE_YEAR, has) {
        let batches = ctx.sql(&sql).await.expect("fact query").collect().await;
        let rows = strata_planner::registered::policy::fact_rows(&batches.expect("facts"));
        facts.push((fact, rows.expect("integer facts")));
    }
    Arc::new(RegisteredPolicy::from_facts(&SECRET, &settings, facts))
}

/// The registered views of the participant tables, by name.
pub async fn registered_views() -> BTreeMap<String, Arc<dyn TableProvider>> {
    registered::build_views(
        &catalog(),
        &tier_map(),
        &tables(),
        registered_policy().await,
    )
    .expect("views")
}

/// The session of a registered principal: tables up to the registered tier, participant tables
/// swapped for their views, the tier guard as an analyzer rule and the shifted-date bounds as an
/// optimizer rule.
pub async fn registered_session() -> SessionContext {
    registered_session_with(true).await
}

/// The registered session, with or without the shifted-date bounds.
pub async fn registered_session_with(shift_bounds: bool) -> SessionContext {
    let tiers = tier_map();
    let views = registered_views().await;
    let visible: BTreeMap<_, _> = tables()
        .into_iter()
        .filter(|(name, _)| {
            tiers
                .table_tier(name)
                .is_some_and(|t| t <= Tier::Registered)
        })
        .map(|(name, t)| match views.get(&name) {
            Some(view) => (name, view.clone()),
            None => (name, t),
        })
        .collect();
    let ctx = session_of(&visible, None);
    ctx.add_analyzer_rule(Arc::new(TierGuard::new(tiers, Tier::Registered)));
    if shift_bounds {
        strata_planner::registered::shift_bounds::ShiftBounds::install(&ctx);
    }
    ctx
}

pub fn protection(level: Level) -> Protection {
    Protection {
        threshold: disclosure::MIN_THRESHOLD,
        rounding: (level == Level::AggregatesOnly).then_some(20),
        level,
        dominance: Dominance::default(),
    }
}

/// A session whose query planner is the disclosure planner at `level`; its report tells what
/// protection did.
pub fn protected_session(level: Level) -> (SessionContext, Arc<DisclosureReport>) {
    let report = Arc::new(DisclosureReport::default());
    let planner = DisclosurePlanner::new(person_keys(), protection(level), report.clone());
    (session_of(&tables(), Some(Arc::new(planner))), report)
}

/// The plan DataFusion's SQL planner makes, before any analyzer rule.
pub async fn logical_plan(ctx: &SessionContext, sql: &str) -> LogicalPlan {
    ctx.state()
        .create_logical_plan(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The plan after the session's analyzer rules (views inlined, types coerced, tier guard).
pub async fn analyzed(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<LogicalPlan> {
    let plan = logical_plan(ctx, sql).await;
    let state = ctx.state();
    state
        .analyzer()
        .execute_and_check(plan, &ConfigOptions::default(), |_, _| {})
}

/// The plan after the session's analyzer and optimizer rules: what a query planner receives.
pub async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
    let plan = logical_plan(ctx, sql).await;
    ctx.state()
        .optimize(&plan)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn text(plan: &LogicalPlan) -> String {
    format!("{}", plan.display_indent())
}

/// Compares plan text line by line, ignoring leading/trailing blank lines of `expected`.
#[track_caller]
pub fn assert_plan(plan: &LogicalPlan, expected: &str) {
    let actual = text(plan);
    let expected = expected.trim_matches('\n');
    assert_eq!(
        actual.trim_end(),
        expected,
        "\n\nactual plan:\n{actual}\n\nexpected plan:\n{expected}\n"
    );
}

/// Runs `sql` in `ctx` and returns the first two columns as (key, value) pairs of Int64, with
/// the values' NULLs as None, sorted by key.
pub async fn pairs(ctx: &SessionContext, sql: &str) -> Vec<(i64, Option<i64>)> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in batches {
        let k = arrow::compute::cast(b.column(0), &DataType::Int64).expect("cast");
        let v = arrow::compute::cast(b.column(1), &DataType::Int64).expect("cast");
        let (k, v) = (
            k.as_primitive::<arrow::datatypes::Int64Type>(),
            v.as_primitive::<arrow::datatypes::Int64Type>(),
        );
        for i in 0..b.num_rows() {
            out.push((k.value(i), v.is_valid(i).then(|| v.value(i))));
        }
    }
    out.sort();
    out
}

/// The names of a query result's columns.
pub async fn column_names(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches = df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default()
}
