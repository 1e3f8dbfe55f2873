//! The server's Prometheus metrics (through the `metrics` facade; without an installed recorder,
//! as when `[telemetry] metrics_listen` is unset, every call here does nothing).
//!
//! Requests, outcomes, latencies, rows and bytes out and suppressed cells are counted from the
//! audit records themselves: every request leaves exactly one final record, so the metrics and
//! the audit log cannot disagree. What no record holds (bytes scanned, the cache, the audit
//! writer's backlog, running queries) is read where it is kept.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::audit::AuditRecord;
use crate::service::QueryService;

/// HELP texts, once, before the first scrape.
pub fn describe() {
    describe_counter!(
        "strata_requests_total",
        "Requests answered, by door, action and outcome (one per final audit record)."
    );
    describe_counter!(
        "strata_queries_total",
        "Queries that executed, by door and outcome (ok, error, cancelled)."
    );
    describe_histogram!(
        "strata_query_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a query's start to its last batch, by door."
    );
    describe_counter!("strata_rows_out_total", "Rows sent to clients, by door.");
    describe_counter!(
        "strata_bytes_out_total",
        metrics::Unit::Bytes,
        "Result bytes sent to clients (Arrow buffers), by door."
    );
    describe_counter!(
        "strata_bytes_scanned_total",
        metrics::Unit::Bytes,
        "Bytes read from Parquet files by queries."
    );
    describe_counter!(
        "strata_suppressed_cells_total",
        "Result cells disclosure control suppressed, by reason."
    );
    describe_counter!(
        "strata_protected_cells_total",
        "Result cells disclosure control checked."
    );
    describe_counter!(
        "strata_egress_alerts_total",
        "Row-level results that passed the egress alert thresholds."
    );
    describe_counter!(
        "strata_cache_hits_total",
        "Reads of Parquet data served by a cache tier (memory, disk)."
    );
    describe_counter!(
        "strata_cache_misses_total",
        "Reads of Parquet data a cache tier did not hold (memory, disk)."
    );
    describe_counter!(
        "strata_object_store_gets_total",
        "GET requests sent to the object store."
    );
    describe_counter!(
        "strata_object_store_bytes_total",
        metrics::Unit::Bytes,
        "Bytes fetched from the object store."
    );
    describe_gauge!(
        "strata_audit_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest audit record not yet on disk (0 when none waits)."
    );
    describe_gauge!(
        "strata_audit_pending_records",
        "Audit records handed to the writer and not yet on disk."
    );
    describe_counter!(
        "strata_audit_write_errors_total",
        "Failed writes of the audit log (its records are refused or lost)."
    );
    describe_gauge!(
        "strata_queries_running",
        "Queries holding a turn (executing or streaming)."
    );
}

/// Counts a request's final audit record (start records are counted by their end).
pub(crate) fn record(record: &AuditRecord) {
    if record.phase == "start" {
        return;
    }
    let door = record.door.clone();
    counter!(
        "strata_requests_total",
        "door" => door.clone(),
        "action" => record.action.clone(),
        "outcome" => record.outcome.clone()
    )
    .increment(1);
    if record.phase != "end" {
        return;
    }
    counter!("strata_queries_total", "door" => door.clone(), "outcome" => record.outcome.clone())
        .increment(1);
    if let Some(ms) = record.duration_ms {
        histogram!("strata_query_duration_seconds", "door" => door.clone()).record(ms / 1000.0);
    }
    counter!("strata_rows_out_total", "door" => door.clone()).increment(record.rows.unwrap_or(0));
    counter!("strata_bytes_out_total", "door" => door).increment(record.bytes.unwrap_or(0));
    counter!("strata_protected_cells_total").increment(record.protected_cells.unwrap_or(0));
    for (reason, cells) in &record.suppressed_by_reason {
        counter!("strata_suppressed_cells_total", "reason" => reason.clone()).increment(*cells);
    }
    if record.egress_alert {
        counter!("strata_egress_alerts_total").increment(1);
    }
}

pub(crate) fn scanned(bytes: usize) {
    counter!("strata_bytes_scanned_total").increment(bytes as u64);
}

pub(crate) fn audit_write_failed() {
    counter!("strata_audit_write_errors_total").increment(1);
}

impl QueryService {
    /// Reads, once a second, what is kept as running totals elsewhere. One task sets them, so
    /// the counters only move forward.
    pub fn sample_metrics_every_second(self: &std::sync::Arc<Self>) {
        let service = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(service) = service.upgrade() else {
                    return;
                };
                service.sample_metrics();
            }
        });
    }

    fn sample_metrics(&self) {
        let cache = self.dataset.cache_snapshot();
        counter!("strata_cache_hits_total", "tier" => "memory").absolute(cache.memory_hits);
        counter!("strata_cache_misses_total", "tier" => "memory").absolute(cache.memory_misses);
        counter!("strata_cache_hits_total", "tier" => "disk").absolute(cache.disk_hits);
        counter!("strata_cache_misses_total", "tier" => "disk").absolute(cache.disk_misses);
        counter!("strata_object_store_gets_total").absolute(cache.store_gets);
        counter!("strata_object_store_bytes_total").absolute(cache.store_bytes);
        let (pending, oldest) = self.audit.backlog();
        gauge!("strata_audit_pending_records").set(pending as f64);
        gauge!("strata_audit_lag_seconds").set(oldest.as_secs_f64());
        gauge!("strata_queries_running").set(self.limits.running() as f64);
    }
}
