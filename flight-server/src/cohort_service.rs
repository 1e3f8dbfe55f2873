//! The gRPC CohortService (`proto/strata/v1/cohort.proto`): cohort definitions planned by the
//! planner in the caller's session and executed like any query — audited, tier-checked, every
//! count protected by disclosure control.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use futures::StreamExt;
use strata_proto::strata::v1::cohort_service_server::CohortService;
use strata_proto::strata::v1::{
    BreakdownRequest, BreakdownResult, BreakdownRow, Cohort, CohortCount, CohortRequest,
    CreateCohortRequest, GetCohortRequest, ListCohortsRequest, ListCohortsResponse,
};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::audit::{AuditRecord, now_rfc3339, sha256_hex};
use crate::auth::principal;
use crate::error::ServerError;
use crate::executor::{CohortQuery, Executor};

pub struct Cohorts {
    executor: Arc<Executor>,
}

impl Cohorts {
    pub fn new(executor: Arc<Executor>) -> Self {
        Cohorts { executor }
    }

    /// Plans, audits (durably, before anything runs) and executes; returns the result batch
    /// and its report metadata.
    async fn run(
        &self,
        definition: &str,
        query: CohortQuery<'_>,
        who: &strata_planner::principal::Principal,
        mut record: AuditRecord,
    ) -> Result<(arrow::record_batch::RecordBatch, i64, i64, i64), Status> {
        record.statement_sha256 = Some(sha256_hex(definition));
        record.statement = Some(definition.to_string());
        let prepared = match self.executor.plan_cohort(definition, query, who).await {
            Ok(p) => p,
            Err(e) => {
                let status = Status::from(ServerError::from(e));
                record.outcome = crate::service::outcome_of(&status).into();
                record.error = Some(status.message().to_string());
                let _ = self.executor.audit().append(&record).await;
                return Err(status);
            }
        };
        record.tables = prepared.tables.clone();
        record.plan_sha256 = Some(prepared.plan_sha256.clone());
        record.phase = "start".into();
        record.outcome = "started".into();
        record.time = now_rfc3339();
        self.executor.audit().append(&record).await.map_err(|_| {
            Status::unavailable("the audit log is unavailable; no results are released")
        })?;
        let mut stream = self
            .executor
            .execute(&prepared, who, record)
            .await
            .map_err(ServerError::from)?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(b) = stream.next().await {
            batches.push(b.map_err(ServerError::from)?);
        }
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| Status::internal(e.to_string()))?;
        let meta = |k: &str| {
            schema
                .metadata()
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok((
            batch,
            meta("strata.suppressed_cells"),
            meta("strata.threshold"),
            meta("strata.rounding").max(1),
        ))
    }
}

fn cohort_message(name: &str, saved: &crate::cohorts::SavedCohort, count: Option<i64>) -> Cohort {
    Cohort {
        name: name.to_string(),
        definition_json: saved.definition.clone(),
        table: format!("cohort_{name}"),
        created_at: saved.created_at.clone(),
        count,
        suppressed: count.is_none(),
    }
}

fn counts(batch: &arrow::record_batch::RecordBatch, column: usize) -> Vec<Option<i64>> {
    let c = arrow::compute::cast(batch.column(column), &DataType::Int64).expect("counts cast");
    let c = c.as_primitive::<Int64Type>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

#[tonic::async_trait]
impl CohortService for Cohorts {
    async fn count_participants(
        &self,
        request: Request<CohortRequest>,
    ) -> Result<Response<CohortCount>, Status> {
        let span = info_span!("count_participants");
        async {
            let who = principal(&request)?;
            let record = crate::service::audit_record(&request, "cohort_count");
            let def = request.into_inner().definition_json;
            let (batch, _, threshold, rounding) =
                self.run(&def, CohortQuery::Count, &who, record).await?;
            let count = counts(&batch, 0).into_iter().next().flatten();
            Ok(Response::new(CohortCount {
                count,
                suppressed: count.is_none(),
                threshold,
                rounding,
            }))
        }
        .instrument(span)
        .await
    }

    async fn create_cohort(
        &self,
        request: Request<CreateCohortRequest>,
    ) -> Result<Response<Cohort>, Status> {
        let who = principal(&request)?;
        let record = crate::service::audit_record(&request, "cohort_create");
        let CreateCohortRequest {
            name,
            definition_json,
        } = request.into_inner();
        if !crate::cohorts::valid_name(&name) {
            return Err(Status::invalid_argument(
                "a cohort name is 1 to 48 lower-case letters, digits or underscores",
            ));
        }
        // Planned and counted first: a definition that does not evaluate is not saved.
        let (batch, _, _, _) = self
            .run(&definition_json, CohortQuery::Count, &who, record)
            .await?;
        let count = counts(&batch, 0).into_iter().next().flatten();
        let saved = crate::cohorts::SavedCohort {
            definition: definition_json,
            created_at: now_rfc3339(),
        };
        self.executor
            .cohorts()
            .save(&who.key(), &name, saved.clone())
            .map_err(|e| Status::internal(format!("cannot save the cohort: {e}")))?;
        Ok(Response::new(cohort_message(&name, &saved, count)))
    }

    async fn list_cohorts(
        &self,
        request: Request<ListCohortsRequest>,
    ) -> Result<Response<ListCohortsResponse>, Status> {
        let who = principal(&request)?;
        let mut record = crate::service::audit_record(&request, "cohort_list");
        let cohorts: Vec<Cohort> = self
            .executor
            .cohorts()
            .of(&who.key())
            .iter()
            .map(|(name, saved)| cohort_message(name, saved, None))
            .collect();
        record.outcome = "ok".into();
        record.rows = Some(cohorts.len() as u64);
        self.executor.audit().submit(&record);
        Ok(Response::new(ListCohortsResponse { cohorts }))
    }

    async fn get_cohort(
        &self,
        request: Request<GetCohortRequest>,
    ) -> Result<Response<Cohort>, Status> {
        let who = principal(&request)?;
        let record = crate::service::audit_record(&request, "cohort_get");
        let name = request.into_inner().name;
        let saved = self
            .executor
            .cohorts()
            .of(&who.key())
            .remove(&name)
            .ok_or_else(|| Status::not_found(format!("no cohort named {name:?}")))?;
        let (batch, _, _, _) = self
            .run(&saved.definition, CohortQuery::Count, &who, record)
            .await?;
        let count = counts(&batch, 0).into_iter().next().flatten();
        Ok(Response::new(cohort_message(&name, &saved, count)))
    }

    async fn breakdown(
        &self,
        request: Request<BreakdownRequest>,
    ) -> Result<Response<BreakdownResult>, Status> {
        let span = info_span!("breakdown");
        async {
            let who = principal(&request)?;
            let record = crate::service::audit_record(&request, "cohort_breakdown");
            let BreakdownRequest {
                definition_json,
                attribute,
            } = request.into_inner();
            let (batch, suppressed, threshold, rounding) = self
                .run(
                    &definition_json,
                    CohortQuery::Breakdown(&attribute),
                    &who,
                    record,
                )
                .await?;
            let values = arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| Status::internal(e.to_string()))?;
            let values = values.as_string::<i32>();
            let mut rows: Vec<BreakdownRow> = counts(&batch, 1)
                .into_iter()
                .enumerate()
                .map(|(i, count)| BreakdownRow {
                    value: if values.is_valid(i) {
                        values.value(i).to_string()
                    } else {
                        String::new()
                    },
                    count,
                })
                .collect();
            rows.sort_by(|a, b| a.value.cmp(&b.value));
            Ok(Response::new(BreakdownResult {
                rows,
                suppressed_cells: suppressed,
                threshold,
                rounding,
            }))
        }
        .instrument(span)
        .await
    }
}
