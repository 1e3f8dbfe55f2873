//! A cohort's event tables (primary, qualified) are read by every criteria group that relates
//! other events to them — a Circe definition with four inclusion rules reads its primary events
//! nine times. DataFusion plans each reference separately, so a `Spool` marks one relation that
//! all its references compute once per execution: the first reader runs it, the others replay
//! its batches.
//!
//! Only one occurrence of a spool exposes its input to the analyzer, optimizer and the policy
//! walks (`dedupe`); the others are placeholders holding the same logical plan out of sight, so
//! the plan stays linear in the definition instead of nesting event tables inside event tables.
//! A placeholder reads what the exposed occurrence computes; if the optimizer removed the
//! exposed one (from a branch it proved empty), the first placeholder to run plans the hidden
//! input itself.
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
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A relation that all its references in one plan compute once.
#[derive(Debug, Clone)]
pub struct Spool {
    id: u64,
    input: LogicalPlan,
    /// Whether `input` is this node's input in the plan tree (one occurrence per spool).
    exposed: bool,
}

impl PartialEq for Spool {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.exposed) == (other.id, other.exposed)
    }
}

impl Eq for Spool {}

impl Hash for Spool {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.id, self.exposed).hash(state);
    }
}

impl PartialOrd for Spool {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some((self.id, self.exposed).cmp(&(other.id, other.exposed)))
    }
}

impl Spool {
    /// `input`, computed once however often the returned plan is referenced.
    pub fn wrap(input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Spool {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                input,
                exposed: true,
            }),
        })
    }

    /// A placeholder's hidden input (the exposed occurrence's input is in the plan tree).
    pub fn hidden_input(plan: &LogicalPlan) -> Option<&LogicalPlan> {
        let LogicalPlan::Extension(e) = plan else {
            return None;
        };
        let spool = e.node.as_any().downcast_ref::<Spool>()?;
        (!spool.exposed).then_some(&spool.input)
    }

    /// Keeps the first occurrence of each spool in `plan` exposed and turns the others into
    /// placeholders.
    pub fn dedupe(plan: LogicalPlan) -> DfResult<LogicalPlan> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        let mut seen = std::collections::HashSet::new();
        plan.transform_down(|node| {
            let LogicalPlan::Extension(e) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(spool) = e.node.as_any().downcast_ref::<Spool>() else {
                return Ok(Transformed::no(node));
            };
            if !spool.exposed || seen.insert(spool.id) {
                return Ok(Transformed::no(node));
            }
            let placeholder = LogicalPlan::Extension(Extension {
                node: Arc::new(Spool {
                    exposed: false,
                    ..spool.clone()
                }),
            });
            Ok(Transformed::new(placeholder, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }
}

impl UserDefinedLogicalNodeCore for Spool {
    fn name(&self) -> &str {
        "Spool"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        if self.exposed {
            vec![&self.input]
        } else {
            vec![]
        }
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // No id: the audit log hashes the plan text, and equal statements should hash equally.
        f.write_str(if self.exposed {
            "Spool"
        } else {
            "Spool (reader)"
        })
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        // No predicate or column pruning crosses this node: the exposed input optimized and a
        // placeholder's hidden one are the same relation.
        Ok(Spool {
            id: self.id,
            input: if self.exposed {
                inputs.swap_remove(0)
            } else {
                self.input.clone()
            },
            exposed: self.exposed,
        })
    }
}

type Batches = Result<Arc<Vec<RecordBatch>>, Arc<datafusion::error::DataFusionError>>;

/// One spooled relation in one query's physical plan: its physical input (from the exposed
/// occurrence, or planned by a placeholder) and the one computation of its batches. The
/// computation runs as a task of its own, so a reader that stops early (a join that finds its
/// other side empty) does not cancel it for the others, and its outcome — an error too — is
/// final: a partly executed plan is never run twice.
#[derive(Default)]
struct Shared {
    input: Mutex<Option<Arc<dyn ExecutionPlan>>>,
    batches: Mutex<Option<futures::future::Shared<futures::future::BoxFuture<'static, Batches>>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn set_input(&self, input: Arc<dyn ExecutionPlan>) {
        *self.input.lock().unwrap_or_else(|e| e.into_inner()) = Some(input);
    }

    fn input(&self) -> Option<Arc<dyn ExecutionPlan>> {
        self.input.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Live shared state by session and spool id: the occurrences of one spool planned for one
/// query (each request has a session of its own) share it — never two queries, even when they
/// run the same cached plan; once the plan is dropped, so are the batches.
fn shared(session: &str, id: u64) -> Arc<Shared> {
    type Registry = HashMap<(String, u64), Weak<Shared>>;
    static SHARED: Mutex<Option<Registry>> = Mutex::new(None);
    let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let all = all.get_or_insert_with(HashMap::new);
    let key = (session.to_string(), id);
    if let Some(c) = all.get(&key).and_then(Weak::upgrade) {
        return c;
    }
    all.retain(|_, w| w.strong_count() > 0);
    let c = Arc::new(Shared::default());
    all.insert(key, Arc::downgrade(&c));
    c
}

#[derive(Debug)]
pub struct SpoolExec {
    id: u64,
    /// The exposed occurrence's input (a placeholder has none of its own).
    input: Option<Arc<dyn ExecutionPlan>>,
    /// A placeholder's session and hidden input, planned only if no exposed occurrence was.
    fallback: Option<Fallback>,
    shared: Arc<Shared>,
    properties: Arc<PlanProperties>,
}

#[derive(Clone)]
struct Fallback {
    state: Arc<datafusion::execution::context::SessionState>,
    plan: LogicalPlan,
    physical: fn() -> DefaultPhysicalPlanner,
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fallback")
    }
}

impl Fallback {
    /// The hidden input with the session's type coercion and optimizer rules — not its
    /// analyzer rules: the policy checks ran on the whole plan, and the spooled relation alone
    /// is not a result.
    async fn plan(&self) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = self.state.as_ref();
        let analyzed = datafusion::optimizer::Analyzer::new().execute_and_check(
            self.plan.clone(),
            state.config_options(),
            |_, _| {},
        )?;
        let optimized = state.optimizer().optimize(analyzed, state, |_, _| {})?;
        (self.physical)()
            .create_physical_plan(&optimized, state)
            .await
    }
}

impl SpoolExec {
    fn new(
        id: u64,
        schema: arrow::datatypes::SchemaRef,
        input: Option<Arc<dyn ExecutionPlan>>,
        shared: Arc<Shared>,
    ) -> Self {
        if let Some(i) = &input {
            shared.set_input(i.clone());
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        SpoolExec {
            id,
            input,
            fallback: None,
            shared,
            properties,
        }
    }
}

impl DisplayAs for SpoolExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SpoolExec")
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
        self.input.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut exec = SpoolExec::new(
            self.id,
            self.schema(),
            children.into_iter().next(),
            self.shared.clone(),
        );
        exec.fallback = self.fallback.clone();
        Ok(Arc::new(exec))
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let shared = self.shared.clone();
        // Read at execution: by then every occurrence has been planned.
        let planned = shared.input();
        let fallback = self.fallback.clone();
        let id = self.id;
        let schema = self.schema();
        let computation = {
            let mut slot = shared.batches.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert_with(|| {
                use futures::FutureExt;
                // Aborted when the last holder of the computation goes (the query ended, timed
                // out or its client went away), not left running to its end.
                let task = datafusion::common::runtime::SpawnedTask::spawn(async move {
                    let input = match (planned, fallback) {
                        (Some(input), _) => input,
                        (None, Some(f)) => f.plan().await.map_err(Arc::new)?,
                        (None, None) => {
                            return Err(Arc::new(datafusion::error::DataFusionError::Internal(
                                format!("spool {id} has no input plan"),
                            )));
                        }
                    };
                    datafusion::physical_plan::collect(input, context)
                        .await
                        .map(Arc::new)
                        .map_err(Arc::new)
                });
                async move {
                    task.join().await.unwrap_or_else(|e| {
                        Err(Arc::new(datafusion::error::DataFusionError::External(
                            Box::new(e),
                        )))
                    })
                }
                .boxed()
                .shared()
            })
            .clone()
        };
        let batches = async move {
            let batches = computation
                .await
                .map_err(datafusion::error::DataFusionError::Shared)?;
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

/// Plans a spool's occurrences with one shared state. A placeholder whose exposed occurrence
/// the optimizer removed plans the hidden input itself, with `physical` — the session's full
/// physical planner, handed in by whoever assembles it (so that this module does not depend on
/// the planners of the other extension nodes).
#[derive(Debug)]
pub struct SpoolPlanner {
    pub physical: fn() -> DefaultPhysicalPlanner,
}

#[async_trait]
impl ExtensionPlanner for SpoolPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(spool) = node.as_any().downcast_ref::<Spool>() else {
            return Ok(None);
        };
        let shared = shared(session_state.session_id(), spool.id);
        let schema = Arc::new(spool.input.schema().as_arrow().clone());
        if spool.exposed {
            return Ok(Some(Arc::new(SpoolExec::new(
                spool.id,
                schema,
                Some(physical_inputs[0].clone()),
                shared,
            ))));
        }
        let state = session_state
            .as_any()
            .downcast_ref::<datafusion::execution::context::SessionState>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "spool planned outside a session".into(),
                )
            })?;
        let mut exec = SpoolExec::new(spool.id, schema, None, shared);
        exec.fallback = Some(Fallback {
            state: Arc::new(state.clone()),
            plan: spool.input.clone(),
            physical: self.physical,
        });
        return Ok(Some(Arc::new(exec)));
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
