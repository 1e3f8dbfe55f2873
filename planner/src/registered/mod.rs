//! Registered-tier views. A registered principal's session holds, under each participant
//! table's name, a view over the real table: every date and datetime shifted back by the
//! participant's offset, demographics generalized, controlled columns left out, participants
//! aged 89+ filtered away. DataFusion inlines the view into every plan that names the table, so
//! no SQL path (subquery, CTE, join, EXISTS, UNION) reaches the real values; the tier guard
//! accepts the real table's scan only underneath a view (see [`RegisteredBase`]).

mod base;
pub use base::KeepExec;
pub mod policy;
pub mod shift_bounds;
pub mod udfs;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Result as DfResult};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, col, lit, when,
};
use datafusion::physical_plan::ExecutionPlan;
use strata_engine::{Catalog, Tier};

use crate::tiers::TierMap;
pub use base::RegisteredBase;
use policy::{Attribute, GENDER_QUESTION, RACE_QUESTION, SEX_QUESTION};
pub use policy::{RegisteredPolicy, RegisteredSettings};
use udfs::Kind;

/// A participant table as the registered tier sees it. Listed as a base table: to the caller
/// it is the table.
#[derive(Debug)]
pub struct RegisteredView {
    view: ViewTable,
}

#[async_trait]
impl TableProvider for RegisteredView {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.view.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.view.scan(state, projection, filters, limit).await
    }
}

/// Builds the registered view of every participant table a registered principal may read.
pub fn build_views(
    catalog: &Catalog,
    tiers: &TierMap,
    tables: &BTreeMap<String, Arc<dyn TableProvider>>,
    policy: Arc<RegisteredPolicy>,
) -> DfResult<BTreeMap<String, Arc<dyn TableProvider>>> {
    let mut views = BTreeMap::new();
    for (name, entry) in &catalog.tables {
        let (Some(person_key), Some(table)) = (&entry.person_key, tables.get(name)) else {
            continue;
        };
        if tiers.table_tier(name).is_none_or(|t| t > Tier::Registered) {
            continue;
        }
        let view = build_view(name, person_key, table.clone(), tiers, policy.clone())?;
        views.insert(name.clone(), view);
    }
    Ok(views)
}

fn build_view(
    name: &str,
    person_key: &str,
    table: Arc<dyn TableProvider>,
    tiers: &TierMap,
    policy: Arc<RegisteredPolicy>,
) -> DfResult<Arc<dyn TableProvider>> {
    let schema = table.schema();
    let has = |c: &str| schema.column_with_name(c).is_some();
    let person = || col(Column::new(Some(name), person_key));
    let column = |c: &str| col(Column::new(Some(name), c));

    // Over the base table's own (unqualified) columns: it runs inside the scan.
    let mut keep =
        udfs::udf(Kind::Visible, policy.clone()).call(vec![col(Column::from_name(person_key))]);
    if let Some((question, answer)) = survey_columns(name)
        && has(question)
        && has(answer)
    {
        let keep_answer = udfs::udf(Kind::KeepAnswer, policy.clone());
        keep = keep.and(keep_answer.call(vec![
            col(Column::from_name(person_key)),
            col(Column::from_name(question)),
            col(Column::from_name(answer)),
        ]));
    }
    let base = Arc::new(RegisteredBase { inner: table, keep });

    let shift = udfs::udf(Kind::Shift, policy.clone());
    let mut projection = Vec::new();
    for field in schema.fields() {
        let c = field.name().as_str();
        if tiers
            .column_tier(name, c)
            .is_some_and(|t| t > Tier::Registered)
        {
            continue;
        }
        let expr = if c == person_key {
            column(c)
        } else if matches!(
            field.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        ) {
            shift.call(vec![person(), column(c)])
        } else if let Some(expr) = generalized(name, c, &has, &column, &person, &policy) {
            expr
        } else if is_text_date(c, field.data_type()) {
            udfs::udf(Kind::ShiftText, policy.clone()).call(vec![person(), column(c)])
        } else {
            column(c)
        };
        projection.push(expr.alias(c));
    }
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(base), None)?
        .project(projection)?
        .build()?;
    Ok(Arc::new(RegisteredView {
        view: ViewTable::new(plan, None),
    }))
}

/// A text column named like a date or time (OMOP 5.3's `measurement_time` holds dates).
fn is_text_date(column: &str, data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) && ["_time", "_date", "_datetime"]
        .iter()
        .any(|s| column.ends_with(s))
}

/// The (question, answer concept) columns of tables that hold survey answers.
fn survey_columns(table: &str) -> Option<(&'static str, &'static str)> {
    match table {
        "ds_survey" => Some(("question_concept_id", "answer_concept_id")),
        "observation" => Some(("observation_source_concept_id", "value_as_concept_id")),
        _ => None,
    }
}

/// The generalized expression of a demographic column, if `column` is one.
fn generalized(
    table: &str,
    column: &str,
    has: &dyn Fn(&str) -> bool,
    col_of: &dyn Fn(&str) -> Expr,
    person: &dyn Fn() -> Expr,
    policy: &Arc<RegisteredPolicy>,
) -> Option<Expr> {
    let by = |kind: Kind, decided_by: &str| -> Option<Expr> {
        has(decided_by).then(|| {
            udfs::udf(kind, policy.clone()).call(vec![person(), col_of(decided_by), col_of(column)])
        })
    };
    let apply =
        |attribute: Attribute, decided_by: &str| by(Kind::Generalize(attribute), decided_by);
    // Decided by the standard concept (the source concept is 0 where the source was not
    // mapped, which would keep every source value) and by the source value's own rarity.
    let source =
        |attribute: Attribute, decided_by: &str| by(Kind::GeneralizeSource(attribute), decided_by);
    match (table, column) {
        ("person", "gender_concept_id") => apply(Attribute::Gender, "gender_concept_id"),
        ("person", "gender_source_value" | "gender_source_concept_id") => {
            source(Attribute::Gender, "gender_concept_id")
        }
        ("person", "sex_at_birth_concept_id") => {
            apply(Attribute::SexAtBirth, "sex_at_birth_concept_id")
        }
        ("person", "sex_at_birth_source_value" | "sex_at_birth_source_concept_id") => {
            apply(Attribute::SexAtBirth, "sex_at_birth_source_concept_id")
        }
        ("person", "race_concept_id") => apply(Attribute::Race, "race_concept_id"),
        ("person", "race_source_value" | "race_source_concept_id") => {
            source(Attribute::Race, "race_concept_id")
        }
        ("person", "ethnicity_source_value" | "ethnicity_source_concept_id") => {
            source(Attribute::Ethnicity, "ethnicity_concept_id")
        }
        _ => {
            let (question, answer) = survey_columns(table)?;
            let answer_columns: &[&str] = match table {
                "ds_survey" => &["answer_concept_id", "answer"],
                _ => &[
                    "value_as_concept_id",
                    "value_source_value",
                    "value_as_string",
                    "value_source_concept_id",
                ],
            };
            if !answer_columns.contains(&column) || !has(question) || !has(answer) {
                return None;
            }
            let by_question = |attribute: Attribute| {
                udfs::udf(Kind::Generalize(attribute), policy.clone()).call(vec![
                    person(),
                    col_of(answer),
                    col_of(column),
                ])
            };
            let q = col_of(question);
            when(
                q.clone().eq(lit(RACE_QUESTION)),
                by_question(Attribute::Race),
            )
            .when(
                q.clone().eq(lit(GENDER_QUESTION)),
                by_question(Attribute::Gender),
            )
            .when(q.eq(lit(SEX_QUESTION)), by_question(Attribute::SexAtBirth))
            .otherwise(col_of(column))
            .ok()
        }
    }
}

/// Whether a scan reads a real table from inside a registered view.
pub fn is_registered_base(scan: &datafusion::logical_expr::TableScan) -> bool {
    datafusion::datasource::source_as_provider(&scan.source).is_ok_and(|p| p.is::<RegisteredBase>())
}
