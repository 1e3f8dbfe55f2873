//! A protected result between execution and release — the one interface between the lineage
//! rewrite and whoever releases results. The rewrite's output ends with the hidden
//! participant-set columns [`CELL_SET_COLUMN`]`_<j>`; [`ProtectedResult::release`] decides each
//! row's cells of one set with the ledger, masks the withheld cells and drops those columns; [`Summary`] is what
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
    /// Visible columns that hold statistical cells, each with the participant-set column
    /// (`__strata_cell_set_<j>`, counted from the first of them) it is decided on.
    cells: Vec<(usize, usize)>,
    /// How many visible columns the result has.
    visible: usize,
}

impl ProtectedResult {
    /// `batch` is the whole result of a plan the lineage rewrite protected (`report` says which
    /// of its columns are cells and which participant sets they are decided on).
    pub fn new(batch: RecordBatch, report: &DisclosureReport) -> Result<Self, PlannerError> {
        let schema = batch.schema();
        let cells: Vec<(usize, usize)> = report
            .output_cells()
            .into_iter()
            .zip(report.cell_sets())
            .collect();
        // Exactly the set columns the rewrite added, by name, last.
        let n_sets = cells.iter().map(|&(_, j)| j + 1).max().unwrap_or(0);
        let visible = batch.num_columns().checked_sub(n_sets);
        let named = visible.is_some_and(|v| {
            (0..n_sets).all(|j| *schema.field(v + j).name() == format!("{CELL_SET_COLUMN}_{j}"))
        });
        if n_sets == 0 || !named {
            return Err(PlannerError::Internal(
                "a protected result without its participant sets".into(),
            ));
        }
        report.set_result_cells((batch.num_rows() * cells.len()) as u64);
        Ok(ProtectedResult {
            batch,
            cells,
            visible: visible.unwrap_or_default(),
        })
    }

    fn set_column(&self, j: usize) -> BinaryArray {
        self.batch
            .column(self.visible + j)
            .as_binary::<i32>()
            .clone()
    }

    /// Applies the release ledger: each row's cells of one participant set are a unit, withheld
    /// when that set would let a small group be solved (with this result's other units or with
    /// what the principal already received). Returns the visible columns only.
    pub fn release(
        self,
        protection: Protection,
        (ledger, rules): (&ReleaseLedger, Rules),
        principal: &str,
        report: &DisclosureReport,
    ) -> Result<RecordBatch, PlannerError> {
        let internal = |e: arrow::error::ArrowError| PlannerError::Internal(e.to_string());
        let batch = &self.batch;
        let n_sets = batch.num_columns() - self.visible;
        // Units in row order, then set order: (row, set column).
        let mut units: Vec<(usize, usize)> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let sets: Vec<BinaryArray> = (0..n_sets).map(|j| self.set_column(j)).collect();
        for i in 0..batch.num_rows() {
            for (j, set_column) in sets.iter().enumerate() {
                let mine: Vec<usize> = self
                    .cells
                    .iter()
                    .filter(|&&(_, s)| s == j)
                    .map(|&(c, _)| c)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let offered = mine.iter().any(|&c| batch.column(c).is_valid(i));
                let set = if set_column.is_null(i) {
                    None
                } else {
                    Some(
                        participants::deserialize(set_column.value(i))
                            .map_err(PlannerError::from_datafusion)?,
                    )
                };
                units.push((i, j));
                rows.push(Row { set, offered });
            }
        }
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
            units = rows.len(),
            release_ms = started.elapsed().as_secs_f64() * 1000.0,
            "release decided"
        );
        // Per set column, the rows whose unit is withheld, and why.
        let mut withheld: Vec<Vec<Option<&'static str>>> =
            vec![vec![None; batch.num_rows()]; n_sets];
        for (&(i, j), d) in units.iter().zip(&decisions) {
            if !d.released() {
                withheld[j][i] = Some(d.reason().unwrap_or("differencing"));
            }
        }
        let mut columns = Vec::with_capacity(self.visible);
        for (c, column) in batch.columns()[..self.visible].iter().enumerate() {
            let Some(&(_, j)) = self.cells.iter().find(|&&(cell, _)| cell == c) else {
                columns.push(column.clone());
                continue;
            };
            for (row, why) in withheld[j].iter().enumerate() {
                if let Some(reason) = why
                    && column.is_valid(row)
                {
                    report.add_suppressed(reason, 1);
                }
            }
            let mask: BooleanArray = withheld[j].iter().map(|w| Some(w.is_some())).collect();
            columns.push(arrow::compute::nullif(column, &mask).map_err(internal)?);
        }
        let schema = batch.schema();
        let fields: Vec<_> = schema.fields()[..self.visible]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if self.cells.iter().any(|&(c, _)| c == i) {
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
