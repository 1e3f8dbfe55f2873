//! Yield points after joins, so that a query can be stopped (its time limit, its client gone)
//! while a join turns out rows from memory. DataFusion's own rule (`EnsureCooperative`) puts
//! them above scans and exchanges; a join that emits many batches per input batch — a nested
//! loop or cross join, a hash join with a large fan-out — never reaches one, and an operator
//! above it that drains its input (a sort, an aggregate) holds the thread for as long as the
//! join runs.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PiecewiseMergeJoinExec, SortMergeJoinExec,
    SymmetricHashJoinExec,
};

/// Wraps every join's output in a [`CooperativeExec`]: each batch it emits spends a unit of
/// the task's budget, and a spent budget makes the task yield.
#[derive(Debug, Default)]
pub struct YieldAfterJoins;

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let join = node.is::<NestedLoopJoinExec>()
                || node.is::<CrossJoinExec>()
                || node.is::<HashJoinExec>()
                || node.is::<SortMergeJoinExec>()
                || node.is::<PiecewiseMergeJoinExec>()
                || node.is::<SymmetricHashJoinExec>();
            Ok(if join {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "yield_after_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
