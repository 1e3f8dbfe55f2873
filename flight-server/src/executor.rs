//! The query executor the front doors call: plan (through the planner), execute over the
//! dataset, stream batches, and log one structured line per query with what it scanned.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use futures::Stream;
use strata_engine::Dataset;
use strata_engine::cache::CacheSnapshot;
use strata_engine::table::ScanRecorder;
use strata_planner::principal::Principal;
use strata_planner::tier_guard::{TierGuard, TierMap};
use strata_planner::{PlannedQuery, PlannerError};

pub struct Executor {
    dataset: Arc<Dataset>,
    tiers: Arc<TierMap>,
}

/// A statement planned once (at GetFlightInfo or prepare) and executed later (at DoGet).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub query: PlannedQuery,
    pub schema: SchemaRef,
    pub parameters: Option<ParamValues>,
    /// The principal that planned it; tickets and handles work for nobody else.
    pub owner: String,
}

impl Executor {
    pub fn new(dataset: Arc<Dataset>) -> Self {
        let tiers = TierMap::from_catalog(dataset.catalog())
            .require_controlled_for_participant_data(dataset.catalog());
        Executor {
            dataset,
            tiers: Arc::new(tiers),
        }
    }

    pub fn tiers(&self) -> &TierMap {
        &self.tiers
    }

    /// A session holding only the tables the principal may read, with the tier guard installed
    /// as an analyzer rule so every plan DataFusion runs in it is checked again.
    fn session(
        &self,
        principal: &Principal,
    ) -> Result<
        (
            datafusion::prelude::SessionContext,
            Arc<ScanRecorder>,
            Arc<TierGuard>,
        ),
        PlannerError,
    > {
        let tiers = self.tiers.clone();
        let (ctx, recorder) = self
            .dataset
            .session_with(|name, _| {
                tiers
                    .table_tier(name)
                    .is_some_and(|t| principal.may_read(t))
            })
            .map_err(internal)?;
        let guard = Arc::new(TierGuard::new(self.tiers.clone(), principal.tier));
        ctx.add_analyzer_rule(guard.clone());
        Ok((ctx, recorder, guard))
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    pub async fn plan(&self, sql: &str, principal: &Principal) -> Result<Prepared, PlannerError> {
        let (ctx, _, guard) = self.session(principal)?;
        let query = strata_planner::plan_sql_guarded(&ctx, sql, &guard).await?;
        let schema = Arc::new(query.plan.schema().as_arrow().clone());
        Ok(Prepared {
            query,
            schema,
            parameters: None,
            owner: principal.key(),
        })
    }

    /// Executes a prepared statement; batches stream lazily, and the query's log line is written
    /// when the stream ends (or is dropped by a client that went away).
    pub async fn execute(
        &self,
        prepared: &Prepared,
        principal: &Principal,
    ) -> Result<QueryStream, PlannerError> {
        let started = Instant::now();
        let (ctx, recorder, _) = self.session(principal)?;
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
                    return Err(PlannerError::InvalidQuery(
                        "the statement has parameters but none were bound".into(),
                    ));
                }
                prepared.query.plan.clone()
            }
        };
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(PlannerError::from_datafusion)?;
        let physical = df
            .create_physical_plan()
            .await
            .map_err(PlannerError::from_datafusion)?;
        let stream = execute_stream(physical.clone(), ctx.task_ctx())
            .map_err(PlannerError::from_datafusion)?;
        Ok(QueryStream {
            inner: stream,
            report: Some(QueryReport {
                statement: prepared.query.sql.clone(),
                principal: principal.key(),
                started,
                physical,
                recorder,
                cache_before: self.dataset.cache_snapshot(),
                dataset: self.dataset.clone(),
                rows: 0,
                error: None,
            }),
        })
    }
}

fn internal(e: strata_engine::EngineError) -> PlannerError {
    PlannerError::Internal(e.to_string())
}

/// Result batches of one query; counts rows and reports on completion.
pub struct QueryStream {
    inner: SendableRecordBatchStream,
    report: Option<QueryReport>,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, PlannerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(batch))) => {
                if let Some(r) = self.report.as_mut() {
                    r.rows += batch.num_rows() as u64;
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                let err = PlannerError::from_datafusion(e);
                if let Some(mut r) = self.report.take() {
                    r.error = Some(err.to_string());
                    r.log();
                }
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                if let Some(r) = self.report.take() {
                    r.log();
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if let Some(mut r) = self.report.take() {
            r.error = Some("cancelled by the client".into());
            r.log();
        }
    }
}

struct QueryReport {
    statement: String,
    principal: String,
    started: Instant,
    physical: Arc<dyn ExecutionPlan>,
    recorder: Arc<ScanRecorder>,
    cache_before: CacheSnapshot,
    dataset: Arc<Dataset>,
    rows: u64,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct ScanTotals {
    bytes_scanned: usize,
    row_groups_total: usize,
    row_groups_pruned: usize,
    page_rows_pruned: usize,
}

impl QueryReport {
    fn log(self) {
        let mut scan = ScanTotals::default();
        collect_scan_metrics(self.physical.as_ref(), &mut scan);
        let records = self.recorder.records();
        let cache = self.dataset.cache_snapshot().since(&self.cache_before);
        let tables: Vec<&str> = records.iter().map(|r| r.table.as_str()).collect();
        tracing::info!(
            statement = %self.statement,
            principal = %self.principal,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            rows = self.rows,
            tables = %tables.join(","),
            shards_scanned = records.iter().map(|r| r.shards_scanned).sum::<usize>(),
            shards_total = records.iter().map(|r| r.shards_total).sum::<usize>(),
            files_scanned = records.iter().map(|r| r.files).sum::<usize>(),
            bytes_scanned = scan.bytes_scanned,
            row_groups_total = scan.row_groups_total,
            row_groups_pruned = scan.row_groups_pruned,
            page_index_rows_pruned = scan.page_rows_pruned,
            cache_memory_hits = cache.memory_hits,
            cache_memory_misses = cache.memory_misses,
            cache_disk_hits = cache.disk_hits,
            cache_disk_misses = cache.disk_misses,
            object_store_gets = cache.store_gets,
            object_store_bytes = cache.store_bytes,
            outcome = if self.error.is_some() { "error" } else { "ok" },
            error = self.error.as_deref().unwrap_or(""),
            "query"
        );
    }
}

fn collect_scan_metrics(plan: &dyn ExecutionPlan, totals: &mut ScanTotals) {
    if let Some(metrics) = plan.metrics() {
        for m in metrics.iter() {
            match m.value() {
                MetricValue::Count { name, count } if name == "bytes_scanned" => {
                    totals.bytes_scanned += count.value()
                }
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } => match name.as_ref() {
                    "row_groups_pruned_statistics" => {
                        totals.row_groups_total +=
                            pruning_metrics.pruned() + pruning_metrics.matched();
                        totals.row_groups_pruned += pruning_metrics.pruned();
                    }
                    "row_groups_pruned_bloom_filter" => {
                        totals.row_groups_pruned += pruning_metrics.pruned()
                    }
                    "page_index_rows_pruned" => totals.page_rows_pruned += pruning_metrics.pruned(),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    for child in plan.children() {
        collect_scan_metrics(child.as_ref(), totals);
    }
}
