//! Disclosure control: no aggregate cell with 1..=T participants leaves the server. The
//! optimized plan of every query is rewritten (see `lineage.rs`) before physical planning, by a
//! DataFusion `QueryPlanner` installed in the principal's session — the extension point every
//! execution path goes through.

pub mod branches;
pub mod cells;
pub mod lineage;

pub mod index;
pub mod nest;
pub mod release;
pub mod result;
pub mod sets;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use serde::Deserialize;
use strata_engine::Catalog;

pub use cells::{Dominance, Level, Protection, REASONS, SuppressionCounter};

/// The program's threshold: participant counts 1..=20 are never released.
pub const MIN_THRESHOLD: u64 = 20;

/// `[disclosure]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureSettings {
    /// May only be raised above 20.
    pub threshold: u64,
    /// Aggregates-only principals get counts rounded up to a multiple of this.
    pub rounding: u64,
    /// Keep row-level principals' released sets across queries too (by default only
    /// aggregates-only principals have a cross-query ledger: a principal who can read the
    /// rows gains nothing by differencing two results).
    pub row_level_ledger: bool,
    /// `[disclosure.dominance]`.
    pub dominance: Dominance,
    /// Megabytes of released participant sets kept per principal; past it the principal's
    /// protected queries are refused (forgetting releases would reopen differencing).
    pub ledger_budget_mb: u64,
}

impl Default for DisclosureSettings {
    fn default() -> Self {
        DisclosureSettings {
            threshold: MIN_THRESHOLD,
            rounding: 20,
            row_level_ledger: false,
            dominance: Dominance::default(),
            ledger_budget_mb: release::DEFAULT_BUDGET_BYTES >> 20,
        }
    }
}

impl DisclosureSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.threshold < MIN_THRESHOLD {
            return Err(format!(
                "disclosure.threshold may only be raised: {} is below {MIN_THRESHOLD}",
                self.threshold
            ));
        }
        if self.rounding < 1 {
            return Err("disclosure.rounding must be at least 1".into());
        }
        if self.ledger_budget_mb < 1 {
            return Err("disclosure.ledger_budget_mb must be at least 1".into());
        }
        self.dominance.validate()
    }
}

/// Person key column of each participant table.
pub fn person_keys(catalog: &Catalog) -> HashMap<String, String> {
    catalog
        .tables
        .iter()
        .filter_map(|(n, t)| t.person_key.clone().map(|k| (n.clone(), k)))
        .collect()
}

/// Whether the plan (subqueries included) scans a participant table.
pub fn reads_participants(plan: &LogicalPlan, person_keys: &HashMap<String, String>) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|n| {
        let participants = match n {
            LogicalPlan::TableScan(s) => person_keys.contains_key(s.table_name.table()),
            // A cohort's rows are participants whatever its plan reads.
            _ => crate::cohort::boundary::CohortBoundary::of(n).is_some(),
        };
        if participants {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether the plan has an aggregate or window over participant rows: the plans disclosure
/// control protects.
pub fn aggregates_participants(plan: &LogicalPlan, person_keys: &HashMap<String, String>) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|n| {
        // A cohort's own ranking and counting is not a cell: only what is computed over it.
        if crate::cohort::boundary::CohortBoundary::of(n).is_some() {
            return Ok(TreeNodeRecursion::Jump);
        }
        if matches!(n, LogicalPlan::Aggregate(_) | LogicalPlan::Window(_))
            && reads_participants(n, person_keys)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// What one query's protection did, read when its stream ends.
#[derive(Debug, Default)]
pub struct DisclosureReport {
    pub suppressed: Arc<SuppressionCounter>,
    /// Cells of the plan that went through protection (0: nothing to protect).
    protected_cells: AtomicU64,
    /// Output columns holding protected values (the result then ends with the hidden
    /// participant-set column).
    output_cells: std::sync::Mutex<Vec<usize>>,
    /// For each output cell, which of the result's participant-set columns it is decided on.
    cell_sets: std::sync::Mutex<Vec<usize>>,
    result_cells: AtomicU64,
}

impl DisclosureReport {
    pub fn suppressed_cells(&self) -> u64 {
        self.suppressed.get()
    }

    pub fn protected_cells(&self) -> u64 {
        self.protected_cells.load(Ordering::Relaxed)
    }

    pub fn output_cells(&self) -> Vec<usize> {
        self.output_cells
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn cell_sets(&self) -> Vec<usize> {
        self.cell_sets.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Protected cells in the result (released and suppressed).
    pub fn set_result_cells(&self, n: u64) {
        self.result_cells.store(n, Ordering::Relaxed);
    }

    pub fn result_cells(&self) -> u64 {
        self.result_cells.load(Ordering::Relaxed)
    }

    /// Counts cells withheld after the plan ran (by the release ledger), by reason.
    pub fn add_suppressed(&self, reason: &str, n: u64) {
        self.suppressed.add(reason, n);
    }
}

/// Why a plan was refused by disclosure control.
pub use crate::error::NotProtectable;

#[derive(Debug)]
pub struct DisclosurePlanner {
    person_keys: Arc<HashMap<String, String>>,
    protection: Protection,
    report: Arc<DisclosureReport>,
}

impl DisclosurePlanner {
    pub fn new(
        person_keys: Arc<HashMap<String, String>>,
        protection: Protection,
        report: Arc<DisclosureReport>,
    ) -> Self {
        DisclosurePlanner {
            person_keys,
            protection,
            report,
        }
    }
}

#[async_trait]
impl QueryPlanner for DisclosurePlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let policy = tracing::info_span!(
            "policy",
            rule = "disclosure",
            protected_aggregates = tracing::field::Empty
        );
        let entered = policy.enter();
        let mut rewriter = lineage::Rewriter::new(
            &self.person_keys,
            self.protection,
            self.report.suppressed.clone(),
        );
        let protected = rewriter
            .rewrite(logical_plan)
            .map_err(|u| DataFusionError::External(Box::new(NotProtectable(u.0))))?;
        policy.record("protected_aggregates", rewriter.protected_cells);
        drop(entered);
        self.report
            .protected_cells
            .fetch_add(rewriter.protected_cells as u64, Ordering::Relaxed);
        if let Ok(mut cells) = self.report.output_cells.lock() {
            *cells = rewriter.output_cells.clone();
        }
        if let Ok(mut sets) = self.report.cell_sets.lock() {
            *sets = rewriter.cell_sets.clone();
        }
        crate::cohort::boundary::decided_physical_plan(protected, session).await
    }
}
