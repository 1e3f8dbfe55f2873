//! OHDSI Circe cohort definitions (`CohortExpression` JSON, as ATLAS and the OHDSI
//! PhenotypeLibrary write them) compiled to a DataFusion plan — never to SQL text — with the
//! semantics of Circe's own SQL: primary events in an observation period with the observation
//! window and the primary limit; additional criteria and the qualified limit; inclusion rules
//! and the expression limit; the end strategy (date offset or custom drug era), censoring
//! criteria and the observation period end, the earliest of them after the start; eras
//! collapsed with `EraPad`; the censor window. The output is `(person_id, cohort_start_date,
//! cohort_end_date)`.

mod concepts;
mod criteria;
mod exprs;
mod groups;
mod json;

use arrow::datatypes::DataType;
use datafusion::common::{JoinType, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, WindowFrame, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition, cast, col, lit, when,
};
use datafusion::prelude::SessionContext;
use serde_json::Value;

use super::CohortError;
use concepts::Codesets;
use exprs::{add_days, date, date_literal, int64, qc};
use json::Node;

pub(crate) struct Compiler<'a> {
    ctx: &'a SessionContext,
    codesets: Codesets,
}

/// Whether a definition is Circe's (top-level `PrimaryCriteria`).
pub fn is_circe(definition: &Value) -> bool {
    Node::root(definition).get("PrimaryCriteria").is_some()
}

const TOP_LEVEL: &[&str] = &[
    "conceptsets",
    "primarycriteria",
    "additionalcriteria",
    "qualifiedlimit",
    "expressionlimit",
    "inclusionrules",
    "endstrategy",
    "censoringcriteria",
    "collapsesettings",
    "censorwindow",
    "cdmversionrange",
    "title",
    "name",
    "description",
];

/// The cohort's rows: `person_id, cohort_start_date, cohort_end_date`.
pub async fn cohort(ctx: &SessionContext, definition: &Value) -> Result<DataFrame, CohortError> {
    let root = Node::root(definition);
    for (key, value) in root.entries()? {
        if !TOP_LEVEL.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(value.unsupported(&format!("{key} is not evaluated by this version")));
        }
    }
    let codesets = concepts::resolve(ctx, &root.list("ConceptSets")?).await?;
    let c = Compiler { ctx, codesets };
    let primary = spooled(c.primary_events(&root).await?);
    let qualified = spooled(c.qualified_events(&root, primary).await?);
    let included = spooled(c.included_events(&root, qualified).await?);
    let rows = c.cohort_rows(&root, included).await?;
    let eras = collapse(&root, rows)?;
    censor_window(&root, eras)
}

/// An event table every criteria group reads: computed once per execution.
pub(super) fn spooled(df: DataFrame) -> DataFrame {
    let (state, plan) = df.into_parts();
    DataFrame::new(state, super::spool::Spool::wrap(plan))
}

/// A limit's type. As in Circe's Java model (`ResultLimit.type = "First"`), a limit that is
/// absent or has no type keeps each participant's first event.
fn limit_type(root: &Node<'_>, key: &str) -> Result<String, CohortError> {
    let default = "FIRST";
    Ok(
        match root
            .get(key)
            .map(|l| l.opt_str("Type"))
            .transpose()?
            .flatten()
        {
            None => default.into(),
            Some(t) => t.to_ascii_uppercase(),
        },
    )
}

/// Keeps each participant's first (or last) row by `order` when the limit says so.
fn limited(
    rows: DataFrame,
    limit: &str,
    order: &[&str],
    path: &str,
) -> Result<DataFrame, CohortError> {
    let ascending = match limit {
        "ALL" => return Ok(rows),
        "FIRST" => true,
        "LAST" => false,
        other => {
            return Err(CohortError::Invalid(format!(
                "{path}.Type: {other:?} is not First, Last or All"
            )));
        }
    };
    let mut sort: Vec<_> = order
        .iter()
        .map(|c| col(*c).sort(ascending, false))
        .collect();
    sort.push(col("event_id").sort(true, false));
    let names: Vec<String> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok(rows
        .window(vec![
            row_number()
                .partition_by(vec![col("person_id")])
                .order_by(sort)
                .build()?
                .alias("limit_ordinal"),
        ])?
        .filter(col("limit_ordinal").eq(lit(1_u64)))?
        .select_columns(&names.iter().map(String::as_str).collect::<Vec<_>>())?)
}

impl Compiler<'_> {
    /// Primary events: the criteria's events in an observation period that covers the
    /// observation window, numbered per participant (Circe's `event_id`), limited.
    async fn primary_events(&self, root: &Node<'_>) -> Result<DataFrame, CohortError> {
        let pc = root
            .get("PrimaryCriteria")
            .ok_or_else(|| root.invalid("PrimaryCriteria is needed"))?;
        for (key, value) in pc.entries()? {
            if !matches!(
                key.to_ascii_lowercase().as_str(),
                "criterialist" | "observationwindow" | "primarycriterialimit"
            ) {
                return Err(value.unsupported(&format!("{key} is not evaluated by this version")));
            }
        }
        let list = pc.list("CriteriaList")?;
        if list.is_empty() {
            return Err(pc.invalid("CriteriaList needs at least one criterion"));
        }
        let mut events: Option<DataFrame> = None;
        for criterion in &list {
            let e = self.criteria(criterion).await?;
            events = Some(match events {
                None => e,
                Some(u) => u.union(e)?,
            });
        }
        let events = events.expect("at least one criterion");
        let (prior, post) = match pc.get("ObservationWindow") {
            None => (0, 0),
            Some(w) => (
                w.opt_i64("PriorDays")?.unwrap_or(0),
                w.opt_i64("PostDays")?.unwrap_or(0),
            ),
        };
        let op = crate::cohort::table(self.ctx, "observation_period")
            .await?
            .alias("op")?;
        let op_start = || date(qc("op", "observation_period_start_date"));
        let op_end = || date(qc("op", "observation_period_end_date"));
        let in_period = events
            .alias("e")?
            .join_on(
                op,
                JoinType::Inner,
                [
                    qc("e", "person_id").eq(int64(qc("op", "person_id"))),
                    qc("e", "start_date").gt_eq(op_start()),
                    qc("e", "start_date").lt_eq(op_end()),
                ],
            )?
            .filter(
                add_days(op_start(), lit(prior as i32))
                    .lt_eq(qc("e", "start_date"))
                    .and(add_days(qc("e", "start_date"), lit(post as i32)).lt_eq(op_end())),
            )?;
        let limit = limit_type(&pc, "PrimaryCriteriaLimit")?;
        let ascending = limit != "LAST";
        let numbered = in_period
            .window(vec![
                row_number()
                    .partition_by(vec![qc("e", "person_id")])
                    .order_by(vec![
                        qc("e", "sort_date").sort(ascending, false),
                        qc("e", "event_id").sort(true, false),
                    ])
                    .build()?
                    .alias("ordinal"),
            ])?
            .select(vec![
                qc("e", "person_id").alias("person_id"),
                cast(col("ordinal"), DataType::Int64).alias("event_id"),
                qc("e", "start_date").alias("start_date"),
                qc("e", "end_date").alias("end_date"),
                qc("e", "visit_occurrence_id").alias("visit_occurrence_id"),
                op_start().alias("op_start_date"),
                op_end().alias("op_end_date"),
            ])?;
        Ok(match limit.as_str() {
            "ALL" => numbered,
            "FIRST" | "LAST" => numbered.filter(col("event_id").eq(lit(1_i64)))?,
            other => {
                return Err(CohortError::Invalid(format!(
                    "{}.PrimaryCriteriaLimit.Type: {other:?} is not First, Last or All",
                    pc.path
                )));
            }
        })
    }

    async fn qualified_events(
        &self,
        root: &Node<'_>,
        primary: DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let Some(group) = root.get("AdditionalCriteria") else {
            // Circe applies the qualified limit only with additional criteria (even empty ones).
            return Ok(primary);
        };
        let mut events = primary;
        if !json::is_empty_group(&group)? {
            let kept = self.group(&group, &events).await?;
            events = groups::semi(events, kept, true)?;
        }
        limited(
            events,
            &limit_type(root, "QualifiedLimit")?,
            &["start_date"],
            "$.QualifiedLimit",
        )
    }

    async fn included_events(
        &self,
        root: &Node<'_>,
        qualified: DataFrame,
    ) -> Result<DataFrame, CohortError> {
        // Every rule is evaluated against the qualified events, as Circe does, so the plan grows
        // linearly with the rules (each rule over the previous rule's survivors would nest the
        // qualified events 2^rules times).
        let mut events = qualified.clone();
        for rule in root.list("InclusionRules")? {
            let Some(group) = rule.get("expression") else {
                continue;
            };
            if json::is_empty_group(&group)? {
                continue;
            }
            let kept = self.group(&group, &qualified).await?;
            events = groups::semi(events, kept, true)?;
        }
        limited(
            events,
            &limit_type(root, "ExpressionLimit")?,
            &["start_date"],
            "$.ExpressionLimit",
        )
    }

    /// Each included event with its end: the earliest, on or after its start, of the end
    /// strategy's date, the censoring events and the end of its observation period.
    async fn cohort_rows(
        &self,
        root: &Node<'_>,
        included: DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let ends_of = |df: DataFrame, end: Expr| -> Result<DataFrame, CohortError> {
            Ok(df.select(vec![
                col("person_id"),
                col("event_id"),
                end.alias("end_date"),
            ])?)
        };
        // The observation period end is a candidate unless a date offset (capped at it) decides.
        let strategy = root.get("EndStrategy");
        let date_offset = strategy
            .as_ref()
            .is_some_and(|s| s.get("DateOffset").is_some());
        let mut candidates = Vec::new();
        if !date_offset {
            candidates.push(ends_of(included.clone(), col("op_end_date"))?);
        }
        if let Some(strategy) = strategy
            && let Some(e) = self.strategy_ends(&strategy, &included).await?
        {
            candidates.push(e);
        }
        for c in root.list("CensoringCriteria")? {
            candidates.push(self.censoring_ends(&c, &included).await?);
        }
        let mut ends = candidates
            .pop()
            .expect("a date offset or the observation period end");
        for c in candidates {
            ends = c.union(ends)?;
        }
        let ends = ends.select(vec![
            col("person_id").alias("x_person"),
            col("event_id").alias("x_event"),
            col("end_date").alias("x_end"),
        ])?;
        Ok(included
            .join_on(
                ends,
                JoinType::Inner,
                [
                    col("person_id").eq(col("x_person")),
                    col("event_id").eq(col("x_event")),
                    col("x_end").gt_eq(col("start_date")),
                ],
            )?
            .aggregate(
                vec![col("person_id"), col("event_id"), col("start_date")],
                vec![min(col("x_end")).alias("end_date")],
            )?
            .select(vec![col("person_id"), col("start_date"), col("end_date")])?)
    }

    async fn strategy_ends(
        &self,
        strategy: &Node<'_>,
        included: &DataFrame,
    ) -> Result<Option<DataFrame>, CohortError> {
        let entries = strategy.entries()?;
        let Some((kind, body)) = entries.first() else {
            return Ok(None);
        };
        if entries.len() > 1 {
            return Err(strategy.invalid("one end strategy is needed"));
        }
        match kind.to_ascii_lowercase().as_str() {
            "dateoffset" => {
                let field = body.opt_str("DateField")?.unwrap_or("StartDate");
                let from = match field {
                    "StartDate" => col("start_date"),
                    "EndDate" => col("end_date"),
                    other => {
                        return Err(body
                            .invalid(&format!("DateField {other:?} is not StartDate or EndDate")));
                    }
                };
                let offset = body.opt_i64("Offset")?.unwrap_or(0);
                let end = add_days(from, lit(offset as i32));
                let capped =
                    when(end.clone().gt(col("op_end_date")), col("op_end_date")).otherwise(end)?;
                Ok(Some(included.clone().select(vec![
                    col("person_id"),
                    col("event_id"),
                    capped.alias("end_date"),
                ])?))
            }
            "customera" => Ok(Some(self.custom_era_ends(body, included).await?)),
            _ => Err(body.unsupported(&format!("end strategy {kind}"))),
        }
    }

    /// The custom drug era end strategy: the participant's exposures to the concept set,
    /// collapsed into eras across gaps of at most `GapDays`; an event in an era ends at the
    /// era's end plus `Offset`.
    async fn custom_era_ends(
        &self,
        body: &Node<'_>,
        included: &DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let codeset = body
            .get("DrugCodesetId")
            .ok_or_else(|| body.invalid("DrugCodesetId is needed"))?;
        let gap = body.opt_i64("GapDays")?.unwrap_or(0);
        let offset = body.opt_i64("Offset")?.unwrap_or(0);
        let start = || date(col("drug_exposure_start_date"));
        let end = match body.opt_i64("DaysSupplyOverride")? {
            Some(days) => add_days(start(), lit(days as i32)),
            None => datafusion::functions::expr_fn::coalesce(vec![
                date(col("drug_exposure_end_date")),
                add_days(start(), col("days_supply")),
                add_days(start(), lit(1_i32)),
            ]),
        };
        let persons = included
            .clone()
            .select(vec![col("person_id").alias("ip")])?
            .distinct()?;
        let exposures = crate::cohort::table(self.ctx, "drug_exposure")
            .await?
            .filter(
                self.in_codeset(int64(col("drug_concept_id")), &codeset)?
                    .or(self.in_codeset(int64(col("drug_source_concept_id")), &codeset)?),
            )?
            .select(vec![
                int64(col("person_id")).alias("person_id"),
                start().alias("start_date"),
                end.alias("end_date"),
            ])?
            .join(persons, JoinType::LeftSemi, &["person_id"], &["ip"], None)?;
        // As in Circe, the offset widens the gap that bridges exposures too.
        let eras = merge_intervals(exposures, gap + offset, gap)?.select(vec![
            col("person_id").alias("era_person"),
            col("start_date").alias("era_start"),
            col("end_date").alias("era_end"),
        ])?;
        Ok(included
            .clone()
            .join_on(
                eras,
                JoinType::Inner,
                [
                    col("person_id").eq(col("era_person")),
                    col("start_date").gt_eq(col("era_start")),
                    col("start_date").lt_eq(col("era_end")),
                ],
            )?
            .select(vec![
                col("person_id"),
                col("event_id"),
                col("era_end").alias("end_date"),
            ])?)
    }

    /// The first censoring event from the index event's start to its observation period end.
    async fn censoring_ends(
        &self,
        criterion: &Node<'_>,
        included: &DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let events = self.criteria(criterion).await?.alias("c")?;
        Ok(included
            .clone()
            .alias("i")?
            .join_on(
                events,
                JoinType::Inner,
                [
                    qc("i", "person_id").eq(qc("c", "person_id")),
                    qc("c", "start_date").gt_eq(qc("i", "start_date")),
                    qc("c", "start_date").lt_eq(qc("i", "op_end_date")),
                ],
            )?
            .aggregate(
                vec![
                    qc("i", "person_id").alias("person_id"),
                    qc("i", "event_id").alias("event_id"),
                ],
                vec![min(qc("c", "start_date")).alias("end_date")],
            )?)
    }
}

/// Intervals `(person_id, start_date, end_date)` merged per participant when one starts no
/// later than `pad` days after the end of those before it; a merged interval ends `unpad` days
/// before its latest padded end.
fn merge_intervals(rows: DataFrame, pad: i64, unpad: i64) -> Result<DataFrame, CohortError> {
    let padded = rows.select(vec![
        col("person_id"),
        col("start_date"),
        add_days(col("end_date"), lit(pad as i32)).alias("padded_end"),
    ])?;
    let preceding = WindowFrame::new_bounds(
        WindowFrameUnits::Rows,
        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        WindowFrameBound::Preceding(ScalarValue::UInt64(Some(1))),
    );
    let prev_max =
        Expr::from(WindowFunction::new(
            WindowFunctionDefinition::AggregateUDF(
                datafusion::functions_aggregate::min_max::max_udaf(),
            ),
            vec![col("padded_end")],
        ))
        .partition_by(vec![col("person_id")])
        .order_by(vec![col("start_date").sort(true, false)])
        .window_frame(preceding)
        .build()?
        .alias("prev_end");
    let starts = padded.window(vec![prev_max])?.select(vec![
        col("person_id"),
        col("start_date"),
        col("padded_end"),
        when(col("prev_end").gt_eq(col("start_date")), lit(0_i64))
            .otherwise(lit(1_i64))?
            .alias("is_start"),
    ])?;
    let running = WindowFrame::new_bounds(
        WindowFrameUnits::Rows,
        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        WindowFrameBound::CurrentRow,
    );
    let group = Expr::from(WindowFunction::new(
        WindowFunctionDefinition::AggregateUDF(datafusion::functions_aggregate::sum::sum_udaf()),
        vec![col("is_start")],
    ))
    .partition_by(vec![col("person_id")])
    .order_by(vec![
        col("start_date").sort(true, false),
        col("is_start").sort(false, false),
    ])
    .window_frame(running)
    .build()?
    .alias("era");
    Ok(starts
        .window(vec![group])?
        .aggregate(
            vec![col("person_id"), col("era")],
            vec![
                min(col("start_date")).alias("start_date"),
                max(col("padded_end")).alias("padded_end"),
            ],
        )?
        .select(vec![
            col("person_id"),
            col("start_date"),
            add_days(col("padded_end"), lit(-unpad as i32)).alias("end_date"),
        ])?)
}

/// `CollapseSettings`: overlapping (or, with `EraPad`, nearby) cohort periods of a participant
/// become one.
fn collapse(root: &Node<'_>, rows: DataFrame) -> Result<DataFrame, CohortError> {
    let pad = match root.get("CollapseSettings") {
        None => 0,
        Some(s) => {
            if let Some(kind) = s.opt_str("CollapseType")?
                && !kind.eq_ignore_ascii_case("ERA")
            {
                return Err(s.unsupported(&format!("CollapseType {kind}")));
            }
            s.opt_i64("EraPad")?.unwrap_or(0)
        }
    };
    merge_intervals(rows, pad, pad)
}

/// `CensorWindow {StartDate, EndDate}`: cohort periods clipped to the window.
fn censor_window(root: &Node<'_>, eras: DataFrame) -> Result<DataFrame, CohortError> {
    let mut start = col("start_date");
    let mut end = col("end_date");
    let mut rows = eras;
    if let Some(w) = root.get("CensorWindow") {
        let bound = |key: &str| -> Result<Option<Expr>, CohortError> {
            w.get(key).map(|v| date_literal(&v)).transpose()
        };
        if let Some(s) = bound("StartDate")? {
            start = when(col("start_date").gt(s.clone()), col("start_date")).otherwise(s)?;
        }
        if let Some(e) = bound("EndDate")? {
            end = when(col("end_date").lt(e.clone()), col("end_date")).otherwise(e)?;
        }
        rows = rows.filter(start.clone().lt_eq(end.clone()))?;
    }
    Ok(rows.select(vec![
        col("person_id"),
        start.alias("cohort_start_date"),
        end.alias("cohort_end_date"),
    ])?)
}
