//! Which plans go to the workers. A distributed plan is shipped only when every fragment a
//! worker would run encodes with the functions and nodes a worker holds; the check encodes the
//! fragments as they will travel, so what passes it is what the workers receive.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion_distributed::NetworkBoundaryExt;
use datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use strata_planner::shipped::Functions;

const RECOMPUTE: ReplaceChildrenOptions =
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);

/// datafusion-distributed's own nodes, which its codec carries.
const DISTRIBUTED_NODES: &[&str] = &[
    "DistributedLeafExec",
    "NetworkShuffleExec",
    "NetworkCoalesceExec",
    "NetworkBroadcastExec",
    "BroadcastExec",
    "ChildrenIsolatorUnionExec",
    "SamplerExec",
];

/// The function names every worker holds: DataFusion's defaults and Strata's shipped ones.
#[derive(Debug)]
pub(crate) struct WorkerFunctions(HashSet<String>);

impl WorkerFunctions {
    pub(crate) fn new() -> Self {
        let state = SessionStateBuilder::new().with_default_features().build();
        let mut names: HashSet<String> = state.scalar_functions().keys().cloned().collect();
        names.extend(state.aggregate_functions().keys().cloned());
        names.extend(state.window_functions().keys().cloned());
        names.extend(Functions::all_names());
        WorkerFunctions(names)
    }

    fn holds(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// Why the single-node `plan` must not even be handed to the distributed planner.
///
/// A spool computes a cohort's intermediate once and hands it to each of its uses in the plan
/// through memory the uses share: they must run in one process, and rewriting one use (as the
/// distributed planner does) would rewire the others.
///
/// A scalar subquery's result is computed once and read by expressions elsewhere in the plan
/// (`ScalarSubqueryExec`): shipping the readers without it cannot work.
pub(crate) fn unshippable_shape(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let mut why = None;
    let found = plan.exists(|node| {
        why = match node.name() {
            "SpoolExec" => Some("the plan shares a spooled intermediate between its parts"),
            "ScalarSubqueryExec" => Some("the plan computes a scalar subquery for other parts"),
            _ => None,
        };
        Ok(why.is_some())
    });
    match found {
        Ok(true) => why.map(str::to_string),
        Ok(false) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// One task for a point lookup: a scan Strata found selective (`ShardedTable::scan` turns late
/// materialization on for those only) whose filter picks values (`key = v`, an IN list, or such
/// equalities joined by OR). datafusion-distributed sizes a scan's tasks by its files' bytes, but
/// such a scan reads a few pages of them: spread over workers it would cost round trips (about
/// 90 ms for a point lookup at 1M persons, against 5 ms on one node) and save nothing. A selective
/// range (up to a fifth of the key's span) keeps the bytes-based count: at scale it is still a
/// lot of rows. A stage with a bigger scan still gets its tasks (the largest wish wins).
pub(crate) fn selective_scan_tasks(
    ev: datafusion_distributed::DesiredTaskCountEvent<'_>,
) -> Option<Result<datafusion_distributed::DesiredTaskCountEventResponse>> {
    use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_expr::utils::split_conjunction;
    let scan: &DataSourceExec = ev.plan.downcast_ref()?;
    let files: &FileScanConfig = scan.data_source().downcast_ref()?;
    let parquet: &ParquetSource = files.file_source().downcast_ref()?;
    let lookup = parquet.table_parquet_options().global.pushdown_filters
        && parquet
            .filter()
            .is_some_and(|p| split_conjunction(&p).into_iter().any(picks_values));
    lookup.then(|| Ok(datafusion_distributed::DesiredTaskCountEventResponse::desired(1)))
}

/// `column = literal`, `column IN (literals)`, or such equalities joined by OR.
fn picks_values(e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> bool {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal};
    let column =
        |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| e.downcast_ref::<Column>().is_some();
    let literal = |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null())
    };
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        return match b.op() {
            Operator::Or => picks_values(b.left()) && picks_values(b.right()),
            Operator::Eq => {
                (column(b.left()) && literal(b.right())) || (literal(b.left()) && column(b.right()))
            }
            _ => false,
        };
    }
    e.downcast_ref::<InListExpr>()
        .is_some_and(|l| !l.negated() && column(l.expr()) && l.list().iter().all(literal))
}

/// Why `plan` (distributed) must not be shipped, if it must not.
pub(crate) fn refusal(
    plan: &Arc<dyn ExecutionPlan>,
    functions: &Arc<WorkerFunctions>,
) -> Option<String> {
    let codec = CheckCodec {
        functions: functions.clone(),
    };
    let mut refusal = None;
    let _ = plan.apply(|node| {
        if !node.as_ref().is_network_boundary() {
            return Ok(TreeNodeRecursion::Continue);
        }
        for fragment in node.children() {
            if let Err(e) = physical_plan_to_bytes_with_extension_codec(fragment.clone(), &codec) {
                refusal = Some(e.strip_backtrace());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Jump)
    });
    refusal
}

/// Nodes at the top of the plan that evaluate a function no worker holds (the result's cell
/// masks) read one partition, so that they run in the coordinator's stage: below them the
/// partitions are merged (in order where they are sorted).
pub(crate) fn keep_top_on_coordinator(
    plan: Arc<dyn ExecutionPlan>,
    functions: &WorkerFunctions,
) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.children().len() != 1 {
        return Ok(plan);
    }
    let child = plan.children()[0].clone();
    if evaluates_foreign(&plan, functions)? && child.output_partitioning().partition_count() > 1 {
        let merged: Arc<dyn ExecutionPlan> = match child.output_ordering() {
            Some(ordering) => Arc::new(SortPreservingMergeExec::new(ordering.clone(), child)),
            None => Arc::new(CoalescePartitionsExec::new(child)),
        };
        return plan.replace_children(vec![merged], RECOMPUTE);
    }
    let child = keep_top_on_coordinator(child, functions)?;
    plan.replace_children(vec![child], RECOMPUTE)
}

fn evaluates_foreign(node: &Arc<dyn ExecutionPlan>, functions: &WorkerFunctions) -> Result<bool> {
    let mut foreign = false;
    node.apply_expressions(&mut |expr| {
        expr.apply(|e| {
            if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                && !functions.holds(f.name())
            {
                foreign = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    })?;
    Ok(foreign)
}

/// Encodes as the workers' codec would, refusing what a worker could not decode or run.
#[derive(Debug)]
struct CheckCodec {
    functions: Arc<WorkerFunctions>,
}

impl CheckCodec {
    fn held(&self, kind: &str, name: &str) -> Result<()> {
        if self.functions.holds(name) {
            Ok(())
        } else {
            plan_err!("the {kind} {name} runs on the coordinator only")
        }
    }
}

impl PhysicalExtensionCodec for CheckCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        internal_err!("the shipping check only encodes")
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if DISTRIBUTED_NODES.contains(&node.name()) {
            return Ok(());
        }
        crate::codec::encode(node, buf, proto_converter, self)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, _buf: &mut Vec<u8>) -> Result<()> {
        self.held("function", node.name())
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, _buf: &mut Vec<u8>) -> Result<()> {
        self.held("aggregate function", node.name())
    }

    fn try_encode_udwf(&self, node: &WindowUDF, _buf: &mut Vec<u8>) -> Result<()> {
        self.held("window function", node.name())
    }
}
