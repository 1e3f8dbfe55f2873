//! Result batches of one query on their way out: counted, held to the egress limits, and
//! reported when the stream ends — one log line with what was scanned, and the audit end record.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::Stream;
use strata_engine::Dataset;
use strata_engine::cache::CacheSnapshot;
use strata_engine::table::ScanRecorder;
use strata_planner::PlannerError;
use strata_planner::disclosure::{self, DisclosureReport, result::Summary};

use crate::audit::{AuditLog, AuditRecord, now_rfc3339};
use crate::config::EgressSettings;
use crate::error::QueryError;
use crate::limits::{End, Held};

/// Result batches of one query; counts rows and bytes, enforces the egress limits, and reports
/// on completion.
pub struct QueryStream {
    pub(crate) inner: SendableRecordBatchStream,
    /// Row-level results (not aggregates) are what the egress alert and cap watch.
    pub(crate) row_level: bool,
    /// What disclosure control did (protected results only).
    pub(crate) summary: Option<Summary>,
    pub(crate) egress: EgressSettings,
    pub(crate) alerts: Arc<AtomicU64>,
    pub(crate) done: bool,
    pub(crate) report: Option<QueryReport>,
    /// The query's turns, given back when the stream ends or goes (or at its deadline).
    pub(crate) admission: Option<Held>,
    /// When the query's time is up, or the server stops: the stream ends with that error.
    pub(crate) end: Option<End>,
    /// The `stream` span: open from the first batch asked for until the last one leaves.
    pub(crate) span: tracing::Span,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    /// What disclosure control did to this result; `None` when nothing in it was protected.
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    fn finish(&mut self, error: Option<&QueryError>) {
        self.done = true;
        // Nothing more is computed: the execution and its turn go now, not when the client
        // lets go of the stream (an open PostgreSQL cursor read to its end, say).
        let schema = self.inner.schema();
        self.inner = Box::pin(datafusion::physical_plan::EmptyRecordBatchStream::new(
            schema,
        ));
        self.admission = None;
        if let Some(mut r) = self.report.take() {
            self.span.record("rows", r.rows);
            self.span.record("bytes", r.bytes);
            r.error = error.map(|e| (e.outcome(), e.to_string()));
            let _stream = self.span.enter();
            r.log();
        }
        self.span = tracing::Span::none();
    }

    /// Counts a batch; an error once the row-level cap would be passed.
    fn admit(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        let Some(r) = self.report.as_mut() else {
            return Ok(());
        };
        let rows = r.rows + batch.num_rows() as u64;
        let bytes = r.bytes + batch_bytes(batch);
        if self.row_level {
            if rows > self.egress.max_rows || bytes > self.egress.max_bytes {
                return Err(QueryError::ResourcesExhausted(format!(
                    "the result passed the row-level egress cap ({} rows, {} bytes); \
                     aggregate or narrow the query",
                    self.egress.max_rows, self.egress.max_bytes
                )));
            }
            if !r.egress_alert && (rows > self.egress.alert_rows || bytes > self.egress.alert_bytes)
            {
                r.egress_alert = true;
                let total = self.alerts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    principal = %r.principal,
                    request_id = %r.audit.request_id,
                    rows,
                    bytes,
                    alert_rows = self.egress.alert_rows,
                    alert_bytes = self.egress.alert_bytes,
                    egress_alerts_total = total,
                    "egress alert: large row-level result"
                );
            }
        }
        r.rows = rows;
        r.bytes = bytes;
        Ok(())
    }
}

pub(crate) fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let span = self.span.clone();
        let _stream = span.enter();
        if let Some(end) = self.end.as_mut()
            && let Poll::Ready(e) = end.as_mut().poll(cx)
        {
            self.finish(Some(&e));
            return Poll::Ready(Some(Err(e)));
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(batch))) => match self.admit(&batch) {
                Ok(()) => Poll::Ready(Some(Ok(batch))),
                Err(e) => {
                    self.finish(Some(&e));
                    Poll::Ready(Some(Err(e)))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                let err = QueryError::from(PlannerError::from_datafusion(e));
                self.finish(Some(&err));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                self.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if self.report.is_some() {
            self.finish(Some(&QueryError::Cancelled));
        }
    }
}

pub(crate) struct QueryReport {
    pub(crate) statement: String,
    pub(crate) principal: String,
    pub(crate) started: Instant,
    pub(crate) physical: Arc<dyn ExecutionPlan>,
    pub(crate) recorder: Arc<ScanRecorder>,
    pub(crate) cache_before: CacheSnapshot,
    pub(crate) dataset: Arc<Dataset>,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) egress_alert: bool,
    /// How the query ended, when not well: its audit outcome and message.
    pub(crate) error: Option<(&'static str, String)>,
    pub(crate) disclosure: Arc<DisclosureReport>,
    /// The start record of this query; its end record copies it.
    pub(crate) audit: AuditRecord,
    pub(crate) audit_log: Arc<AuditLog>,
}

#[derive(Debug, Default)]
struct ScanTotals {
    bytes_scanned: usize,
    row_groups_total: usize,
    row_groups_pruned: usize,
    /// Files (or file ranges) skipped whole by their footer statistics before any row group.
    files_pruned: usize,
    page_rows_pruned: usize,
    /// Bytes operators wrote to disk past the query's memory limit.
    spilled_bytes: usize,
}

impl QueryReport {
    fn log(self) {
        let mut scan = ScanTotals::default();
        collect_scan_metrics(self.physical.as_ref(), &mut scan);
        let records = self.recorder.records();
        let cache = self.dataset.cache_snapshot().since(&self.cache_before);
        let tables: Vec<&str> = records.iter().map(|r| r.table.as_str()).collect();
        crate::metrics::scanned(scan.bytes_scanned);
        tracing::info!(
            statement = %self.statement,
            principal = %self.principal,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            rows = self.rows,
            bytes = self.bytes,
            egress_alert = self.egress_alert,
            tables = %tables.join(","),
            shards_scanned = records.iter().map(|r| r.shards_scanned).sum::<usize>(),
            shards_total = records.iter().map(|r| r.shards_total).sum::<usize>(),
            files_scanned = records.iter().map(|r| r.files).sum::<usize>(),
            bytes_scanned = scan.bytes_scanned,
            row_groups_total = scan.row_groups_total,
            row_groups_pruned = scan.row_groups_pruned,
            files_pruned = scan.files_pruned,
            page_index_rows_pruned = scan.page_rows_pruned,
            spilled_bytes = scan.spilled_bytes,
            cache_memory_hits = cache.memory_hits,
            cache_memory_misses = cache.memory_misses,
            cache_disk_hits = cache.disk_hits,
            cache_disk_misses = cache.disk_misses,
            object_store_gets = cache.store_gets,
            object_store_bytes = cache.store_bytes,
            outcome = self.error.as_ref().map_or("ok", |e| e.0),
            error = self.error.as_ref().map_or("", |e| e.1.as_str()),
            "query"
        );
        let mut end = self.audit;
        end.time = now_rfc3339();
        end.phase = "end".into();
        end.rows = Some(self.rows);
        end.bytes = Some(self.bytes);
        end.egress_alert = self.egress_alert;
        end.suppressed_cells = Some(self.disclosure.suppressed_cells());
        end.suppressed_by_reason = disclosure::REASONS
            .iter()
            .map(|r| (r.to_string(), self.disclosure.suppressed.of(r)))
            .collect();
        end.protected_cells = Some(self.disclosure.result_cells());
        end.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        end.outcome = self.error.as_ref().map_or("ok", |e| e.0).into();
        end.error = self.error.map(|e| e.1);
        self.audit_log.submit(&end);
    }
}

fn collect_scan_metrics(plan: &dyn ExecutionPlan, totals: &mut ScanTotals) {
    if let Some(metrics) = plan.metrics() {
        for m in metrics.iter() {
            match m.value() {
                MetricValue::Count { name, count } if name == "bytes_scanned" => {
                    totals.bytes_scanned += count.value()
                }
                MetricValue::SpilledBytes(count) => totals.spilled_bytes += count.value(),
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
                    "files_ranges_pruned_statistics" => {
                        totals.files_pruned += pruning_metrics.pruned()
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
