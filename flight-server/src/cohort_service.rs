//! The gRPC CohortService (`proto/strata/v1/cohort.proto`): each call decoded, one call to the
//! query service (which plans, audits and protects as for SQL), the answer encoded.

use std::sync::Arc;

use strata_proto::strata::v1::cohort_service_server::CohortService;
use strata_proto::strata::v1::{
    BreakdownRequest, BreakdownResult, BreakdownRow, Cohort, CohortCount, CohortRequest,
    CreateCohortRequest, GetCohortRequest, ListCohortsRequest, ListCohortsResponse,
};
use strata_query::cohorts::SavedCohort;
use strata_query::{QueryService, Summary};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::error::status;

pub struct Cohorts {
    query: Arc<QueryService>,
}

impl Cohorts {
    pub fn new(query: Arc<QueryService>) -> Self {
        Cohorts { query }
    }
}

fn call<T>(request: &Request<T>) -> strata_query::Call {
    crate::call::call("cohort", request)
}

fn cohort_message(name: &str, saved: &SavedCohort, count: Option<i64>) -> Cohort {
    Cohort {
        name: name.to_string(),
        definition_json: saved.definition.clone(),
        table: format!("cohort_{name}"),
        created_at: saved.created_at.clone(),
        count,
        suppressed: count.is_none(),
    }
}

/// (suppressed cells, threshold, rounding) as the messages carry them.
fn release_fields(summary: Option<&Summary>) -> (i64, i64, i64) {
    summary.map_or((0, 0, 1), |s| {
        (
            s.suppressed_cells as i64,
            s.threshold as i64,
            s.rounding.max(1) as i64,
        )
    })
}

#[tonic::async_trait]
impl CohortService for Cohorts {
    async fn count_participants(
        &self,
        request: Request<CohortRequest>,
    ) -> Result<Response<CohortCount>, Status> {
        let call = call(&request);
        let definition = request.into_inner().definition_json;
        let counted = self
            .query
            .cohort_count(&call, &definition)
            .instrument(info_span!("count_participants"))
            .await
            .map_err(status)?;
        let (_, threshold, rounding) = release_fields(counted.summary.as_ref());
        Ok(Response::new(CohortCount {
            count: counted.count,
            suppressed: counted.count.is_none(),
            threshold,
            rounding,
        }))
    }

    async fn create_cohort(
        &self,
        request: Request<CreateCohortRequest>,
    ) -> Result<Response<Cohort>, Status> {
        let call = call(&request);
        let CreateCohortRequest {
            name,
            definition_json,
        } = request.into_inner();
        let (saved, counted) = self
            .query
            .create_cohort(&call, &name, &definition_json)
            .await
            .map_err(status)?;
        Ok(Response::new(cohort_message(&name, &saved, counted.count)))
    }

    async fn list_cohorts(
        &self,
        request: Request<ListCohortsRequest>,
    ) -> Result<Response<ListCohortsResponse>, Status> {
        let cohorts = self
            .query
            .list_cohorts(&call(&request))
            .await
            .map_err(status)?
            .iter()
            .map(|(name, saved)| cohort_message(name, saved, None))
            .collect();
        Ok(Response::new(ListCohortsResponse { cohorts }))
    }

    async fn get_cohort(
        &self,
        request: Request<GetCohortRequest>,
    ) -> Result<Response<Cohort>, Status> {
        let call = call(&request);
        let name = request.into_inner().name;
        let (saved, counted) = self.query.get_cohort(&call, &name).await.map_err(status)?;
        Ok(Response::new(cohort_message(&name, &saved, counted.count)))
    }

    async fn breakdown(
        &self,
        request: Request<BreakdownRequest>,
    ) -> Result<Response<BreakdownResult>, Status> {
        let call = call(&request);
        let BreakdownRequest {
            definition_json,
            attribute,
        } = request.into_inner();
        let broken_down = self
            .query
            .cohort_breakdown(&call, &definition_json, &attribute)
            .instrument(info_span!("breakdown"))
            .await
            .map_err(status)?;
        let (suppressed_cells, threshold, rounding) = release_fields(broken_down.summary.as_ref());
        let rows = broken_down
            .rows
            .into_iter()
            .map(|(value, count)| BreakdownRow { value, count })
            .collect();
        Ok(Response::new(BreakdownResult {
            rows,
            suppressed_cells,
            threshold,
            rounding,
        }))
    }
}
