//! Executing a planned statement: the physical plan over the shards, then — for protected
//! results — the whole result computed, released through the ledger and masked before the first
//! batch leaves, with the suppression report in the schema.

use std::sync::Arc;
use std::time::Instant;

use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use strata_passport::Principal;
use strata_planner::PlannerError;
use strata_planner::disclosure::{
    DisclosureReport, Level, Protection,
    release::{ReleaseLedger, Rules},
    result::{ProtectedResult, Summary},
};

use crate::audit::AuditRecord;
use crate::error::QueryError;
use crate::prepared::Prepared;
use crate::service::QueryService;
use crate::session::Session;
use crate::stream::{QueryReport, QueryStream, batch_bytes};
use tracing::Instrument;

impl QueryService {
    /// Executes a prepared statement; batches stream lazily, and the query's log line and
    /// audit end record are written when the stream ends (or is dropped by a client that went
    /// away). Row-level results past the egress cap end the stream with an error.
    pub(crate) async fn execute(
        &self,
        prepared: &Prepared,
        principal: &Principal,
        audit: AuditRecord,
    ) -> Result<QueryStream, QueryError> {
        let started = Instant::now();
        // Before planning: physical planning reads footers, and a protected result is read
        // whole before its stream exists.
        let cache_before = self.dataset.cache_snapshot();
        let session: Session = match prepared.session.take() {
            Some(session) => session,
            None => self.session(principal, prepared.dialect).await?,
        };
        let (ctx, recorder, report, protection) = (
            session.ctx.clone(),
            session.recorder.clone(),
            session.report.clone(),
            session.protection,
        );
        let plan = match &prepared.parameters {
            Some(p) => strata_planner::bind(&prepared.query, p.clone())?,
            None => {
                if !prepared
                    .query
                    .plan
                    .get_parameter_types()
                    .map_err(PlannerError::from_datafusion)?
                    .is_empty()
                {
                    return Err(QueryError::Invalid(
                        "the statement has parameters but none were bound".into(),
                    ));
                }
                prepared.query.plan.clone()
            }
        };
        let row_level = !is_aggregate_output(&plan);
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(PlannerError::from_datafusion)?;
        let physical = df
            .create_physical_plan()
            .await
            .map_err(PlannerError::from_datafusion)?;
        // The plan as it runs, policy rewrites included (EXPLAIN shows the caller's plan).
        tracing::debug!(
            plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(false),
            "physical plan"
        );
        let mut stream = execute_stream(physical.clone(), ctx.task_ctx())
            .map_err(PlannerError::from_datafusion)?;
        let mut summary = None;
        if let Some(p) = protection
            && report.protected_cells() > 0
        {
            // The suppression report travels in the schema, which goes out first: protected
            // (aggregate) results are computed whole before the first batch leaves.
            // Row-level principals' results are checked alone (a principal who can read the rows
            // gains nothing by differencing two results), unless the operator asks otherwise.
            let (ledger, rules) = match p.level {
                Level::RowLevel if !self.disclosure.row_level_ledger => {
                    (Arc::new(ReleaseLedger::default()), Rules::Cells)
                }
                _ => (self.ledger.clone(), Rules::Groups),
            };
            let (protected, released_summary) = released(
                stream,
                p,
                &report,
                self.egress.max_bytes,
                (&ledger, rules),
                &principal.key(),
            )
            .instrument(tracing::info_span!(
                "protect",
                cells = report.protected_cells()
            ))
            .await?;
            stream = protected;
            summary = Some(released_summary);
        }
        Ok(QueryStream {
            inner: stream,
            row_level,
            summary,
            egress: self.egress.clone(),
            alerts: self.egress_alerts.clone(),
            done: false,
            report: Some(QueryReport {
                statement: prepared.query.sql.clone(),
                principal: principal.key(),
                started,
                physical,
                recorder,
                cache_before,
                dataset: self.dataset.clone(),
                rows: 0,
                bytes: 0,
                egress_alert: false,
                error: None,
                disclosure: report,
                audit,
                audit_log: self.audit.clone(),
            }),
            admission: None,
            end: None,
            span: tracing::Span::none(),
        })
    }
}

/// Runs the stream to its end, releases the whole result through the ledger, and returns its
/// batches again under a schema whose metadata carries the suppression [`Summary`].
async fn released(
    mut stream: SendableRecordBatchStream,
    protection: Protection,
    report: &DisclosureReport,
    max_bytes: u64,
    ledger: (&ReleaseLedger, Rules),
    principal: &str,
) -> Result<(SendableRecordBatchStream, Summary), QueryError> {
    use futures::StreamExt;
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(PlannerError::from_datafusion)?;
        bytes += batch_bytes(&batch);
        if bytes > max_bytes {
            return Err(QueryError::ResourcesExhausted(format!(
                "the protected result passed {max_bytes} bytes; aggregate to fewer groups"
            )));
        }
        batches.push(batch);
    }
    if !report.output_cells().is_empty() {
        let whole = arrow::compute::concat_batches(&stream.schema(), &batches)?;
        let result = ProtectedResult::new(whole, report)?;
        batches = vec![result.release(protection, ledger, principal, report)?];
    }
    let summary = Summary::of(report, &protection);
    let base = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| stream.schema());
    let mut metadata = base.metadata().clone();
    summary.write_metadata(&mut metadata);
    let schema = Arc::new(base.as_ref().clone().with_metadata(metadata));
    let batches: Vec<_> = batches
        .into_iter()
        .map(|b| {
            b.with_schema(schema.clone())
                .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))
        })
        .collect();
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(batches),
    );
    Ok((Box::pin(stream), summary))
}

/// Whether the plan's output rows are aggregates (every output passes through an aggregate)
/// rather than rows of a table.
fn is_aggregate_output(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_) => plan.inputs().iter().all(|i| is_aggregate_output(i)),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => true,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => true,
        _ => false,
    }
}
