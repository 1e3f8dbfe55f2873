//! Cohorts asked for by definition (CohortService, the `cohort()` table function's named
//! cohorts): compiled in the caller's session — registered views, tier guard and egress checks
//! apply as to SQL — and executed like any query, every count protected.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use strata_passport::Principal;
use strata_planner::disclosure::result::Summary;
use strata_planner::{PlannedQuery, PlannerError};

use crate::audit::now_rfc3339;
use crate::call::Call;
use crate::cohorts::{SavedCohort, valid_name};
use crate::error::QueryError;
use crate::prepared::Prepared;
use crate::service::QueryService;

/// A protected participant count.
#[derive(Debug, Clone)]
pub struct CohortCount {
    /// `None`: suppressed.
    pub count: Option<i64>,
    pub summary: Option<Summary>,
}

/// Protected participant counts by a person attribute, sorted by value.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub rows: Vec<(String, Option<i64>)>,
    pub summary: Option<Summary>,
}

impl QueryService {
    pub async fn cohort_count(
        &self,
        call: &Call,
        definition: &str,
    ) -> Result<CohortCount, QueryError> {
        self.count(call, "cohort_count", definition).await
    }

    pub async fn cohort_breakdown(
        &self,
        call: &Call,
        definition: &str,
        attribute: &str,
    ) -> Result<Breakdown, QueryError> {
        let query = CohortQuery::Breakdown(attribute);
        let (batch, summary) = self
            .run_cohort(call, "cohort_breakdown", definition, query)
            .await?;
        let values = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let mut rows: Vec<(String, Option<i64>)> = counts(&batch, 1)?
            .into_iter()
            .enumerate()
            .map(|(i, count)| {
                let value = if values.is_valid(i) {
                    values.value(i).to_string()
                } else {
                    String::new()
                };
                (value, count)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Breakdown { rows, summary })
    }

    /// Saves a named cohort of the caller, after planning and counting it: a definition that
    /// does not evaluate is not saved.
    pub async fn create_cohort(
        &self,
        call: &Call,
        name: &str,
        definition: &str,
    ) -> Result<(SavedCohort, CohortCount), QueryError> {
        if !valid_name(name) {
            return self
                .answer(
                    call,
                    "cohort_create",
                    Err(QueryError::Invalid(
                        "a cohort name is 1 to 48 lower-case letters, digits or underscores".into(),
                    )),
                )
                .await;
        }
        let count = self.count(call, "cohort_create", definition).await?;
        let saved = SavedCohort {
            definition: definition.to_string(),
            created_at: now_rfc3339(),
        };
        self.cohorts
            .save(&call.principal()?.key(), name, saved.clone())
            .map_err(|e| QueryError::Internal(format!("cannot save the cohort: {e}")))?;
        Ok((saved, count))
    }

    /// The caller's named cohorts.
    pub async fn list_cohorts(
        &self,
        call: &Call,
    ) -> Result<BTreeMap<String, SavedCohort>, QueryError> {
        let cohorts = self.cohorts.of(&call.principal()?.key());
        let mut record = call.record("cohort_list");
        record.rows = Some(cohorts.len() as u64);
        self.audited(record, Ok(cohorts)).await
    }

    /// One named cohort of the caller, counted now.
    pub async fn get_cohort(
        &self,
        call: &Call,
        name: &str,
    ) -> Result<(SavedCohort, CohortCount), QueryError> {
        let saved = self.cohorts.of(&call.principal()?.key()).remove(name);
        let Some(saved) = saved else {
            let missing = Err(QueryError::NotFound(format!("no cohort named {name:?}")));
            return self.answer(call, "cohort_get", missing).await;
        };
        let count = self.count(call, "cohort_get", &saved.definition).await?;
        Ok((saved, count))
    }

    async fn count(
        &self,
        call: &Call,
        action: &str,
        definition: &str,
    ) -> Result<CohortCount, QueryError> {
        let (batch, summary) = self
            .run_cohort(call, action, definition, CohortQuery::Count)
            .await?;
        let count = counts(&batch, 0)?.into_iter().next().flatten();
        Ok(CohortCount { count, summary })
    }

    /// Plans (refusals audited durably), writes the start record, executes to the end.
    async fn run_cohort(
        &self,
        call: &Call,
        action: &str,
        definition: &str,
        query: CohortQuery<'_>,
    ) -> Result<(RecordBatch, Option<Summary>), QueryError> {
        let planned = async { self.plan_cohort(definition, query, call.principal()?).await }.await;
        let prepared = match planned {
            Ok(p) => p,
            Err(e) => {
                let mut record = call.record(action);
                record.set_statement(definition);
                return self.audited(record, Err(e)).await;
            }
        };
        let mut stream = self.start(call, action, &prepared).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(b) = stream.next().await {
            batches.push(b?);
        }
        let summary = stream.summary().cloned();
        Ok((arrow::compute::concat_batches(&schema, &batches)?, summary))
    }
}

fn counts(batch: &RecordBatch, column: usize) -> Result<Vec<Option<i64>>, QueryError> {
    let c = arrow::compute::cast(batch.column(column), &DataType::Int64)?;
    let c = c.as_primitive::<Int64Type>();
    Ok((0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect())
}

/// What a cohort request computes over the cohort's participants.
enum CohortQuery<'a> {
    Count,
    /// Participant counts by a person attribute.
    Breakdown(&'a str),
}

impl QueryService {
    /// Plans a cohort definition in the principal's session (registered views, tier guard,
    /// egress checks apply as to SQL), ready for `execute`, where disclosure control protects
    /// the counts.
    async fn plan_cohort(
        &self,
        definition: &str,
        query: CohortQuery<'_>,
        principal: &Principal,
    ) -> Result<Prepared, QueryError> {
        use datafusion::functions_aggregate::expr_fn::count_distinct;
        use datafusion::logical_expr::col;
        let def: serde_json::Value = serde_json::from_str(definition)
            .map_err(|e| QueryError::Invalid(format!("the cohort definition is not JSON: {e}")))?;
        let session = self
            .session(principal, crate::call::Dialect::Generic)
            .await?;
        let persons = session.compile_cohort(&def).await?;
        let df = match query {
            CohortQuery::Count => persons
                .aggregate(
                    vec![],
                    vec![count_distinct(col("person_id")).alias("participants")],
                )
                .map_err(PlannerError::from_datafusion)?,
            CohortQuery::Breakdown(attribute) => {
                let key = breakdown_key(attribute)?;
                let people = session
                    .ctx
                    .table("person")
                    .await
                    .map_err(PlannerError::from_datafusion)?
                    .select(vec![col("person.person_id"), key.alias("value")])
                    .map_err(PlannerError::from_datafusion)?
                    .alias("people")
                    .map_err(PlannerError::from_datafusion)?;
                persons
                    .alias("cohort")
                    .and_then(|c| {
                        c.join_on(
                            people,
                            datafusion::common::JoinType::Inner,
                            [col("cohort.person_id").eq(col("people.person_id"))],
                        )
                    })
                    .and_then(|j| {
                        j.aggregate(
                            vec![col("value")],
                            vec![count_distinct(col("cohort.person_id")).alias("participants")],
                        )
                    })
                    .map_err(PlannerError::from_datafusion)?
            }
        };
        let plan = df.into_unoptimized_plan();
        session
            .guard
            .check(&plan)
            .map_err(|d| PlannerError::NotPermitted(d.0))?;
        let query = PlannedQuery {
            sql: definition.to_string(),
            plan,
        };
        Ok(Prepared::new(
            query,
            &session.guard,
            principal,
            crate::call::Dialect::Generic,
        ))
    }
}

fn breakdown_key(attribute: &str) -> Result<datafusion::logical_expr::Expr, QueryError> {
    use datafusion::logical_expr::{cast, col, lit, when};
    let text = |e| cast(e, arrow::datatypes::DataType::Utf8);
    Ok(match attribute {
        "sex" | "gender" => text(col("gender_concept_id")),
        "race" => text(col("race_concept_id")),
        "ethnicity" => text(col("ethnicity_concept_id")),
        "age_group" => {
            let year = chrono::Datelike::year(&chrono::Utc::now()) as i64;
            let age = lit(year) - cast(col("year_of_birth"), arrow::datatypes::DataType::Int64);
            when(age.clone().lt(lit(18)), lit("0-17"))
                .when(age.clone().lt(lit(30)), lit("18-29"))
                .when(age.clone().lt(lit(45)), lit("30-44"))
                .when(age.clone().lt(lit(65)), lit("45-64"))
                .when(age.lt(lit(80)), lit("65-79"))
                .otherwise(lit("80+"))
                .map_err(PlannerError::from_datafusion)?
        }
        other
            if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !other.is_empty() =>
        {
            text(col(other))
        }
        other => {
            return Err(QueryError::Invalid(format!(
                "cannot break down by {other:?}: use sex, gender, race, ethnicity, age_group or a person column"
            )));
        }
    })
}
