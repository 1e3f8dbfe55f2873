//! The boundary around a compiled cohort. Inside it, a cohort plan ranks, counts and groups
//! each participant's events (first occurrence, "at least 2 on different days", era collapse…);
//! outside it, the cohort is a relation of rows that each belong to one participant, like a
//! participant table. Disclosure control protects what callers compute over the cohort and
//! treats the boundary as a scan keyed by `person_id`: every row inside is derived from one
//! participant's own records (no cohort construct correlates participants with each other), so
//! the row's participant is its `person_id`.
//!
//! It is a DataFusion extension node, so SQL text cannot produce one: only the cohort compilers
//! do. Physical planning passes the input through unchanged.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// The participant column of every cohort relation.
pub const PERSON: &str = "person_id";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct CohortBoundary {
    input: LogicalPlan,
}

impl CohortBoundary {
    /// Wraps a cohort plan whose output has a `person_id` column.
    pub fn wrap(input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(CohortBoundary { input }),
        })
    }

    /// The boundary, if `plan` is one.
    pub fn of(plan: &LogicalPlan) -> Option<&CohortBoundary> {
        match plan {
            LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<CohortBoundary>(),
            _ => None,
        }
    }

    pub fn input(&self) -> &LogicalPlan {
        &self.input
    }
}

impl UserDefinedLogicalNodeCore for CohortBoundary {
    fn name(&self) -> &str {
        "CohortBoundary"
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
        write!(f, "Cohort")
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(CohortBoundary {
            input: inputs.swap_remove(0),
        })
    }
}

/// Plans a boundary as its input.
#[derive(Debug, Default)]
pub struct BoundaryPlanner;

#[async_trait]
impl ExtensionPlanner for BoundaryPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        Ok(node
            .as_any()
            .is::<CohortBoundary>()
            .then(|| physical_inputs[0].clone()))
    }
}

/// The physical planner every Strata session uses: DataFusion's, knowing cohort boundaries.
pub fn physical_planner() -> DefaultPhysicalPlanner {
    DefaultPhysicalPlanner::with_extension_planners(vec![
        Arc::new(BoundaryPlanner),
        Arc::new(super::spool::SpoolPlanner {
            physical: physical_planner,
        }),
    ])
}

/// The physical plan of `plan`, whose policy is decided (every query planner ends here): its
/// distinct counts counted in bitmaps, to the same values, then DataFusion's planner knowing
/// cohort boundaries.
pub async fn decided_physical_plan(
    plan: LogicalPlan,
    session: &dyn Session,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let plan = crate::distinct_counts::in_bitmaps(plan)?;
    physical_planner()
        .create_physical_plan(&plan, session)
        .await
}

/// The query planner of sessions without disclosure control (the local operator).
#[derive(Debug, Default)]
pub struct PlainQueryPlanner;

#[async_trait]
impl QueryPlanner for PlainQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        decided_physical_plan(logical_plan.clone(), session_state).await
    }
}
