//! A cohort's event tables (primary, qualified) are read by every criteria group that relates
//! other events to them — a Circe definition with four inclusion rules reads its primary events
//! nine times. DataFusion plans each reference separately, so a `Spool` marks one relation that
//! all its references compute once per execution: the first reader runs it, the others replay
//! its batches.
//!
//! The spooled relation lives inside a cohort boundary, as the rest of the cohort plan; its
//! batches are held in memory while the query runs (bounded by the size of the event table).

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A relation that all its references in one plan compute once.
#[derive(Debug, Clone)]
pub struct Spool {
    id: u64,
    input: LogicalPlan,
}

impl PartialEq for Spool {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Spool {}

impl Hash for Spool {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialOrd for Spool {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.id.cmp(&other.id))
    }
}

impl Spool {
    /// `input`, computed once however often the returned plan is referenced.
    pub fn wrap(input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Spool {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                input,
            }),
        })
    }
}

impl UserDefinedLogicalNodeCore for Spool {
    fn name(&self) -> &str {
        "Spool"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Spool: id={}", self.id)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        // The optimizer rewrites each reference's input the same way (no predicate or column
        // pruning crosses this node), so they stay one relation.
        Ok(Spool {
            id: self.id,
            input: inputs.swap_remove(0),
        })
    }
}

/// The batches of one spooled relation, shared by its readers in one physical plan.
type Cell = tokio::sync::OnceCell<Arc<Vec<RecordBatch>>>;

/// Live cells by spool id: a reader planned while another reader of the same spool's physical
/// plan exists shares its cell; once the plans are dropped, so are the batches.
fn cell(id: u64) -> Arc<Cell> {
    static CELLS: Mutex<Option<HashMap<u64, Weak<Cell>>>> = Mutex::new(None);
    let mut cells = CELLS.lock().unwrap_or_else(|e| e.into_inner());
    let cells = cells.get_or_insert_with(HashMap::new);
    if let Some(c) = cells.get(&id).and_then(Weak::upgrade) {
        return c;
    }
    cells.retain(|_, w| w.strong_count() > 0);
    let c = Arc::new(Cell::new());
    cells.insert(id, Arc::downgrade(&c));
    c
}

#[derive(Debug)]
pub struct SpoolExec {
    id: u64,
    input: Arc<dyn ExecutionPlan>,
    cell: Arc<Cell>,
    properties: Arc<PlanProperties>,
}

impl SpoolExec {
    fn new(id: u64, input: Arc<dyn ExecutionPlan>, cell: Arc<Cell>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        SpoolExec {
            id,
            input,
            cell,
            properties,
        }
    }
}

impl DisplayAs for SpoolExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SpoolExec: id={}", self.id)
    }
}

impl ExecutionPlan for SpoolExec {
    fn name(&self) -> &str {
        "SpoolExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SpoolExec::new(
            self.id,
            children.swap_remove(0),
            self.cell.clone(),
        )))
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.clone();
        let cell = self.cell.clone();
        let schema = self.schema();
        let batches = async move {
            let batches = cell
                .get_or_try_init(|| async move {
                    datafusion::physical_plan::collect(input, context)
                        .await
                        .map(Arc::new)
                })
                .await?
                .clone();
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(
                (0..batches.len()).map(move |i| Ok(batches[i].clone())),
            ))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(batches).try_flatten_ok(),
        )))
    }
}

/// Plans a spool's readers with one shared cell.
#[derive(Debug, Default)]
pub struct SpoolPlanner;

#[async_trait]
impl ExtensionPlanner for SpoolPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(spool) = node.as_any().downcast_ref::<Spool>() else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SpoolExec::new(
            spool.id,
            physical_inputs[0].clone(),
            cell(spool.id),
        ))))
    }
}

trait TryFlattenOk: futures::Stream + Sized {
    fn try_flatten_ok<S>(self) -> futures::stream::BoxStream<'static, DfResult<RecordBatch>>
    where
        Self: futures::Stream<Item = DfResult<S>> + Send + 'static,
        S: futures::Stream<Item = DfResult<RecordBatch>> + Send + 'static,
    {
        self.flat_map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
    }
}

impl<T: futures::Stream + Sized> TryFlattenOk for T {}
