//! Criteria groups (`AdditionalCriteria`, inclusion rules, `CorrelatedCriteria`): which index
//! events satisfy a group. An event table has the columns `person_id, event_id, start_date,
//! end_date, visit_occurrence_id, op_start_date, op_end_date`; a group yields the distinct
//! `(person_id, event_id)` of the events it keeps. Every intermediate count is per event of one
//! participant and stays inside the cohort boundary.

use datafusion::common::JoinType;
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
use datafusion::logical_expr::{Expr, col, lit};

use super::Compiler;
use super::exprs::{Precision, add_days, concept_list, date_range, int64, numeric_range, qc, year};
use super::json::{Node, is_empty_group};
use crate::cohort::CohortError;

fn keys(df: DataFrame, rel: &str) -> Result<DataFrame, CohortError> {
    Ok(df.select(vec![
        qc(rel, "person_id").alias("person_id"),
        qc(rel, "event_id").alias("event_id"),
    ])?)
}

/// The rows of `events` whose `(person_id, event_id)` is (or is not) in `keys`.
pub(super) fn semi(
    events: DataFrame,
    keys: DataFrame,
    keep: bool,
) -> Result<DataFrame, CohortError> {
    let keys = keys.select(vec![
        col("person_id").alias("k_person"),
        col("event_id").alias("k_event"),
    ])?;
    Ok(events.join(
        keys,
        if keep {
            JoinType::LeftSemi
        } else {
            JoinType::LeftAnti
        },
        &["person_id", "event_id"],
        &["k_person", "k_event"],
        None,
    )?)
}

impl Compiler<'_> {
    /// The `(person_id, event_id)` of `events` that satisfy group `g`.
    pub(super) async fn group(
        &self,
        g: &Node<'_>,
        events: &DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let all = || keys(events.clone().alias("e")?, "e");
        if is_empty_group(g)? {
            return all();
        }
        let mut parts = Vec::new();
        for cc in g.list("CriteriaList")? {
            parts.push(Box::pin(self.correlated(&cc, events)).await?);
        }
        for dc in g.list("DemographicCriteriaList")? {
            parts.push(self.demographic(&dc, events).await?);
        }
        for sub in g.list("Groups")? {
            parts.push(Box::pin(self.group(&sub, events)).await?);
        }
        let kind = g.opt_str("Type")?.unwrap_or("ALL").to_ascii_uppercase();
        let n = parts.len() as i64;
        let threshold = |what: &str| -> Result<i64, CohortError> {
            g.opt_i64("Count")?
                .ok_or_else(|| g.invalid(&format!("{what} needs Count")))
        };
        match kind.as_str() {
            "ALL" => self.counted(parts, events, |c| c.eq(lit(n)), false),
            "ANY" => self.counted(parts, events, |c| c.gt(lit(0_i64)), false),
            "AT_LEAST" => {
                let k = threshold("AT_LEAST")?;
                if k <= 0 {
                    return all();
                }
                self.counted(parts, events, |c| c.gt_eq(lit(k)), false)
            }
            "AT_MOST" => {
                let k = threshold("AT_MOST")?;
                // Events no part holds (count 0) qualify too: keep all but those over k.
                self.counted(parts, events, |c| c.gt(lit(k)), true)
            }
            other => Err(g.invalid(&format!("unknown group Type {other:?}"))),
        }
    }

    /// Events held by a number of `parts` (each a distinct key set) that satisfies `cond`; with
    /// `complement`, the events of `events` that do not.
    fn counted(
        &self,
        parts: Vec<DataFrame>,
        events: &DataFrame,
        cond: impl Fn(Expr) -> Expr,
        complement: bool,
    ) -> Result<DataFrame, CohortError> {
        let mut union: Option<DataFrame> = None;
        for p in parts {
            union = Some(match union {
                None => p,
                Some(u) => u.union(p)?,
            });
        }
        let union = union.expect("a non-empty group has parts");
        let held = union
            .aggregate(
                vec![col("person_id"), col("event_id")],
                vec![count(lit(1)).alias("held")],
            )?
            .filter(cond(col("held")))?
            .select(vec![col("person_id"), col("event_id")])?;
        if complement {
            let rest = semi(events.clone(), held, false)?;
            return keys(rest.alias("e")?, "e");
        }
        Ok(held)
    }

    /// A correlated (windowed) criterion: the index events with the required number of the
    /// criterion's events in the window.
    async fn correlated(
        &self,
        cc: &Node<'_>,
        events: &DataFrame,
    ) -> Result<DataFrame, CohortError> {
        for (key, value) in cc.entries()? {
            if !matches!(
                key.to_ascii_lowercase().as_str(),
                "criteria"
                    | "startwindow"
                    | "endwindow"
                    | "occurrence"
                    | "restrictvisit"
                    | "ignoreobservationperiod"
            ) {
                return Err(value.unsupported(&format!("{key} is not evaluated by this version")));
            }
        }
        let criteria = cc
            .get("Criteria")
            .ok_or_else(|| cc.invalid("Criteria is needed"))?;
        let found = self.criteria(&criteria).await?.alias("a")?;
        let p = events.clone().alias("p")?;
        let mut on = vec![qc("p", "person_id").eq(qc("a", "person_id"))];
        let in_period = !cc.flag("IgnoreObservationPeriod")?;
        if in_period {
            on.push(qc("a", "start_date").gt_eq(qc("p", "op_start_date")));
            on.push(qc("a", "start_date").lt_eq(qc("p", "op_end_date")));
        }
        if let Some(w) = cc.get("StartWindow") {
            on.extend(window(&w, false, in_period)?);
        }
        if let Some(w) = cc.get("EndWindow") {
            on.extend(window(&w, true, in_period)?);
        }
        if cc.flag("RestrictVisit")? {
            on.push(qc("a", "visit_occurrence_id").eq(qc("p", "visit_occurrence_id")));
        }
        let matched = p.join_on(found, JoinType::Inner, on)?;
        let occurrence = cc.get("Occurrence");
        let (kind, n, distinct, column) = match &occurrence {
            None => (2, 1, false, None),
            Some(o) => (
                o.opt_i64("Type")?.unwrap_or(2),
                o.opt_i64("Count")?.unwrap_or(1),
                o.flag("IsDistinct")?,
                o.get("CountColumn"),
            ),
        };
        // A distinct count without a column counts distinct concepts (Circe's default).
        let counted_column = match &column {
            None => "domain_concept_id",
            Some(c) => match c.str()?.to_ascii_uppercase().as_str() {
                "DOMAIN_CONCEPT" => "domain_concept_id",
                "START_DATE" => "start_date",
                "END_DATE" => "end_date",
                "VISIT_ID" => "visit_occurrence_id",
                other => {
                    return Err(c.unsupported(&format!("CountColumn {other}")));
                }
            },
        };
        let counter = if distinct {
            count_distinct(qc("a", counted_column))
        } else {
            count(lit(1))
        };
        let counts = || -> Result<DataFrame, CohortError> {
            Ok(matched.clone().aggregate(
                vec![
                    qc("p", "person_id").alias("person_id"),
                    qc("p", "event_id").alias("event_id"),
                ],
                vec![counter.clone().alias("n")],
            )?)
        };
        let pick = |cond: Expr| -> Result<DataFrame, CohortError> {
            Ok(counts()?
                .filter(cond)?
                .select(vec![col("person_id"), col("event_id")])?)
        };
        let without = |over: DataFrame| -> Result<DataFrame, CohortError> {
            keys(semi(events.clone(), over, false)?.alias("e")?, "e")
        };
        match (kind, n) {
            // Exactly 0 / at most N: events with no (or few enough) matches qualify too.
            (0, 0) | (1, _) => without(pick(col("n").gt(lit(n)))?),
            (0, _) => pick(col("n").eq(lit(n))),
            (2, n) if n <= 0 => keys(events.clone().alias("e")?, "e"),
            (2, _) => pick(col("n").gt_eq(lit(n))),
            _ => Err(occurrence
                .expect("a type other than the default came from Occurrence")
                .invalid(&format!("unknown Occurrence Type {kind}"))),
        }
    }

    /// Demographic criteria on the index event's person and dates.
    async fn demographic(
        &self,
        dc: &Node<'_>,
        events: &DataFrame,
    ) -> Result<DataFrame, CohortError> {
        let person = crate::cohort::table(self.ctx, "person")
            .await?
            .alias("pp")?;
        let mut rows = events.clone().alias("e")?.join_on(
            person,
            JoinType::Inner,
            [qc("e", "person_id").eq(int64(qc("pp", "person_id")))],
        )?;
        for (key, value) in dc.entries()? {
            let p = match key.to_ascii_lowercase().as_str() {
                "age" => numeric_range(
                    year(qc("e", "start_date")) - int64(qc("pp", "year_of_birth")),
                    &value,
                    Precision::Whole,
                )?,
                "gender" => concept_list(int64(qc("pp", "gender_concept_id")), &value)?,
                "race" => concept_list(int64(qc("pp", "race_concept_id")), &value)?,
                "ethnicity" => concept_list(int64(qc("pp", "ethnicity_concept_id")), &value)?,
                "gendercs" => {
                    self.concept_selection(int64(qc("pp", "gender_concept_id")), &value)?
                }
                "racecs" => self.concept_selection(int64(qc("pp", "race_concept_id")), &value)?,
                "ethnicitycs" => {
                    self.concept_selection(int64(qc("pp", "ethnicity_concept_id")), &value)?
                }
                "occurrencestartdate" => date_range(qc("e", "start_date"), &value)?,
                "occurrenceenddate" => date_range(qc("e", "end_date"), &value)?,
                other => {
                    return Err(value.unsupported(&format!("demographic attribute {other}")));
                }
            };
            rows = rows.filter(p)?;
        }
        keys(rows, "e")
    }

    /// A criterion with its own `CorrelatedCriteria`: its events, each taken as an index event
    /// (within an observation period), kept if they satisfy the group.
    pub(super) async fn correlated_to_own_events(
        &self,
        events: DataFrame,
        group: &Node<'_>,
    ) -> Result<DataFrame, CohortError> {
        let events = super::spooled(events);
        let indexed = self.in_observation(events.clone()).await?;
        let kept = self.group(group, &indexed).await?;
        semi(events, kept, true)
    }

    /// Events joined to the observation period holding their start date, with its dates.
    pub(super) async fn in_observation(&self, events: DataFrame) -> Result<DataFrame, CohortError> {
        let op = crate::cohort::table(self.ctx, "observation_period")
            .await?
            .alias("op")?;
        let start = |e| super::exprs::date(e);
        Ok(events
            .alias("q")?
            .join_on(
                op,
                JoinType::Inner,
                [
                    qc("q", "person_id").eq(int64(qc("op", "person_id"))),
                    start(qc("op", "observation_period_start_date")).lt_eq(qc("q", "start_date")),
                    start(qc("op", "observation_period_end_date")).gt_eq(qc("q", "start_date")),
                ],
            )?
            .select(vec![
                qc("q", "person_id").alias("person_id"),
                qc("q", "event_id").alias("event_id"),
                qc("q", "start_date").alias("start_date"),
                qc("q", "end_date").alias("end_date"),
                qc("q", "visit_occurrence_id").alias("visit_occurrence_id"),
                start(qc("op", "observation_period_start_date")).alias("op_start_date"),
                start(qc("op", "observation_period_end_date")).alias("op_end_date"),
            ])?)
    }
}

/// The join conditions of a `StartWindow` / `EndWindow` between index `p` and event `a`. A
/// bound without `Days` is the index event's observation period start (`Coeff` -1) or end,
/// or no bound when the observation period is ignored.
fn window(w: &Node<'_>, end_window: bool, in_period: bool) -> Result<Vec<Expr>, CohortError> {
    let index = if w.opt_bool("UseIndexEnd")? == Some(true) {
        qc("p", "end_date")
    } else {
        qc("p", "start_date")
    };
    // An end window looks at the event's end unless told otherwise; a start window at its
    // start unless told otherwise (Circe's defaults for an absent flag).
    let use_event_end = match w.opt_bool("UseEventEnd")? {
        Some(b) => b,
        None => end_window,
    };
    let event = if use_event_end {
        qc("a", "end_date")
    } else {
        qc("a", "start_date")
    };
    let mut out = Vec::new();
    for (key, lower) in [("Start", true), ("End", false)] {
        let Some(bound) = w.get(key) else { continue };
        let coeff = bound.opt_i64("Coeff")?.unwrap_or(0);
        let at = match bound.opt_i64("Days")? {
            Some(days) => add_days(index.clone(), lit((coeff * days) as i32)),
            None if !in_period => continue,
            None if coeff == -1 => qc("p", "op_start_date"),
            None => qc("p", "op_end_date"),
        };
        out.push(if lower {
            event.clone().gt_eq(at)
        } else {
            event.clone().lt_eq(at)
        });
    }
    Ok(out)
}
