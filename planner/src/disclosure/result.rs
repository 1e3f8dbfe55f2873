//! A protected result between execution and release — the one interface between the lineage
//! rewrite and whoever releases results. The rewrite's output ends with the hidden
//! participant-set column [`CELL_SET_COLUMN`]; [`ProtectedResult::release`] decides each row
//! with the ledger, masks the withheld cells and drops that column; [`Summary`] is what
//! disclosure control did, as it rides in the released schema's metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, BinaryArray, BooleanArray};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

use super::DisclosureReport;
use super::cells::{Protection, REASONS};
use super::lineage::CELL_SET_COLUMN;
use super::release::{ReleaseLedger, Row, Rules};
use crate::PlannerError;
use crate::participants;

/// A whole protected result as executed: visible columns, then the hidden participant sets.
pub struct ProtectedResult {
    batch: RecordBatch,
    /// Visible columns that hold statistical cells.
    cells: Vec<usize>,
}

impl ProtectedResult {
    /// `batch` is the whole result of a plan the lineage rewrite protected (`report` says which
    /// of its columns are cells).
    pub fn new(batch: RecordBatch, report: &DisclosureReport) -> Result<Self, PlannerError> {
        let last = batch.num_columns().checked_sub(1);
        if last.map(|l| batch.schema().field(l).name() != CELL_SET_COLUMN) != Some(false) {
            return Err(PlannerError::Internal(
                "a protected result without its participant sets".into(),
            ));
        }
        let cells = report.output_cells();
        report.set_result_cells((batch.num_rows() * cells.len()) as u64);
        Ok(ProtectedResult { batch, cells })
    }

    fn sets(&self) -> BinaryArray {
        let last = self.batch.num_columns() - 1;
        self.batch.column(last).as_binary::<i32>().clone()
    }

    /// Applies the release ledger: rows whose participant set would let a small group be solved
    /// (with this result's other rows or with what the principal already received) get their
    /// cells withheld. Returns the visible columns only.
    pub fn release(
        self,
        protection: Protection,
        (ledger, rules): (&ReleaseLedger, Rules),
        principal: &str,
        report: &DisclosureReport,
    ) -> Result<RecordBatch, PlannerError> {
        let internal = |e: arrow::error::ArrowError| PlannerError::Internal(e.to_string());
        let batch = &self.batch;
        let last = batch.num_columns() - 1;
        let sets = self.sets();
        let rows: Vec<Row> = (0..batch.num_rows())
            .map(|i| {
                let offered = self.cells.iter().any(|&c| batch.column(c).is_valid(i));
                let set = if sets.is_null(i) {
                    None
                } else {
                    Some(
                        participants::deserialize(sets.value(i))
                            .map_err(PlannerError::from_datafusion)?,
                    )
                };
                Ok(Row { set, offered })
            })
            .collect::<Result<_, PlannerError>>()?;
        let started = Instant::now();
        let decisions = ledger
            .decide(principal, &rows, protection.threshold, rules)
            .map_err(|e| match e {
                super::release::LedgerError::Full(full) => {
                    PlannerError::ResourcesExhausted(full.to_string())
                }
                super::release::LedgerError::Journal(_) => PlannerError::Internal(e.to_string()),
            })?;
        tracing::debug!(
            rows = rows.len(),
            release_ms = started.elapsed().as_secs_f64() * 1000.0,
            "release decided"
        );
        let withhold: BooleanArray = decisions.iter().map(|d| Some(!d.released())).collect();
        let mut columns = Vec::with_capacity(last);
        for (i, column) in batch.columns()[..last].iter().enumerate() {
            if self.cells.contains(&i) {
                for (row, d) in decisions.iter().enumerate() {
                    if let Some(reason) = d.reason()
                        && column.is_valid(row)
                    {
                        report.add_suppressed(reason, 1);
                    }
                }
                columns.push(arrow::compute::nullif(column, &withhold).map_err(internal)?);
            } else {
                columns.push(column.clone());
            }
        }
        let schema = batch.schema();
        let fields: Vec<_> = schema.fields()[..last]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if self.cells.contains(&i) {
                    Arc::new(f.as_ref().clone().with_nullable(true))
                } else {
                    f.clone()
                }
            })
            .collect();
        let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        RecordBatch::try_new(out_schema, columns).map_err(internal)
    }
}

/// What disclosure control did to one result. Clients read it from the result schema's
/// metadata: `strata.suppressed_cells`, `strata.suppressed.<reason>`, `strata.threshold`,
/// `strata.rounding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub suppressed_cells: u64,
    /// Suppressed cells per reason of [`REASONS`], in that order.
    pub by_reason: [u64; REASONS.len()],
    pub threshold: u64,
    /// 1 when counts are exact (row-level principals).
    pub rounding: u64,
}

impl Summary {
    pub fn of(report: &DisclosureReport, protection: &Protection) -> Self {
        Summary {
            suppressed_cells: report.suppressed_cells(),
            by_reason: REASONS.map(|r| report.suppressed.of(r)),
            threshold: protection.threshold,
            rounding: protection.rounding.unwrap_or(1),
        }
    }

    pub fn write_metadata(&self, metadata: &mut HashMap<String, String>) {
        metadata.insert(
            "strata.suppressed_cells".into(),
            self.suppressed_cells.to_string(),
        );
        for (reason, n) in REASONS.iter().zip(self.by_reason) {
            metadata.insert(format!("strata.suppressed.{reason}"), n.to_string());
        }
        metadata.insert("strata.threshold".into(), self.threshold.to_string());
        metadata.insert("strata.rounding".into(), self.rounding.to_string());
    }
}
