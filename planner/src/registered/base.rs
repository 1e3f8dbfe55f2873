//! The real table under a registered view, and the one place its hidden rows are dropped.
//!
//! The view's row filter (participants aged 89+ left out, duplicate race answers) must run
//! before any expression of the caller sees a row: a caller's expression evaluated on a hidden
//! row can fail (or take longer) only because that row exists. As a logical `Filter` it would be
//! merged with the caller's predicates, pushed into the Parquet reader and reordered by cost, so
//! it lives here instead, inside the scan, behind an execution node that accepts no pushed-down
//! filter ([`KeepExec`]). Only filters that cannot fail on any value (a column compared with
//! literals) go below it, so that the Parquet statistics still prune.

use std::fmt;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

/// The real table, as read from inside a registered view. It is never registered under a name
/// a caller can write, so a plan reaches it only through the view that wraps it.
#[derive(Debug)]
pub struct RegisteredBase {
    pub(super) inner: Arc<dyn TableProvider>,
    /// Which rows the registered tier may see, over the table's unqualified columns.
    pub(super) keep: Expr,
}

#[async_trait]
impl TableProvider for RegisteredBase {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: the filter also stays above the view's rows, where it decides.
        Ok(filters
            .iter()
            .map(|f| {
                if cannot_fail(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The columns asked for, then those the row filter needs. No limit below the filter:
        // it would count hidden rows.
        let schema = self.inner.schema();
        let mut columns: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..schema.fields().len()).collect());
        let asked = columns.len();
        for c in self.keep.column_refs() {
            let i = schema.index_of(&c.name)?;
            if !columns.contains(&i) {
                columns.push(i);
            }
        }
        let mut input = self
            .inner
            .scan(state, Some(&columns), filters, None)
            .await?;
        let read = DFSchema::try_from(input.schema())?;
        if let Some(pruning) = conjunction(filters.iter().cloned()) {
            // Below the barrier, where DataFusion hands it to the Parquet reader.
            let predicate = state.create_physical_expr(pruning, &read)?;
            input = Arc::new(FilterExec::try_new(predicate, input)?);
        }
        let keep = state.create_physical_expr(self.keep.clone(), &read)?;
        Ok(Arc::new(KeepExec::new(input, keep, (0..asked).collect())))
    }
}

/// A filter that cannot fail or behave differently on any row: comparisons, IN lists, ranges
/// and NULL tests of columns against literals, combined with AND/OR/NOT.
fn cannot_fail(e: &Expr) -> bool {
    let operand = |e: &Expr| match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Literal(..)),
        _ => false,
    };
    match e {
        Expr::BinaryExpr(b) => match b.op {
            Operator::And | Operator::Or => cannot_fail(&b.left) && cannot_fail(&b.right),
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom => operand(&b.left) && operand(&b.right),
            _ => false,
        },
        Expr::Not(e) => cannot_fail(e),
        Expr::IsNull(e) | Expr::IsNotNull(e) => operand(e),
        Expr::InList(l) => operand(&l.expr) && l.list.iter().all(operand),
        Expr::Between(b) => operand(&b.expr) && operand(&b.low) && operand(&b.high),
        _ => false,
    }
}

/// Keeps the rows a predicate accepts, then the first `columns` columns. It takes no filter
/// from above (DataFusion's default for an execution node), so no caller's expression is
/// evaluated before it.
#[derive(Debug)]
pub struct KeepExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    columns: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl KeepExec {
    /// Its input, predicate and kept columns, for a codec that ships it to a cluster worker.
    pub fn parts(&self) -> (&Arc<dyn ExecutionPlan>, &Arc<dyn PhysicalExpr>, &[usize]) {
        (&self.input, &self.predicate, &self.columns)
    }

    /// The node again from [`KeepExec::parts`], as a worker decodes it.
    pub fn from_parts(
        input: Arc<dyn ExecutionPlan>,
        predicate: Arc<dyn PhysicalExpr>,
        columns: Vec<usize>,
    ) -> DfResult<Self> {
        if let Some(c) = columns
            .iter()
            .find(|&&c| c >= input.schema().fields().len())
        {
            return datafusion::common::plan_err!("RegisteredRowsExec: no input column {c}");
        }
        Ok(KeepExec::new(input, predicate, columns))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        predicate: Arc<dyn PhysicalExpr>,
        columns: Vec<usize>,
    ) -> Self {
        let schema = Arc::new(
            input
                .schema()
                .project(&columns)
                .expect("columns of the input"),
        );
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        KeepExec {
            input,
            predicate,
            columns,
            properties,
        }
    }
}

impl DisplayAs for KeepExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("RegisteredRowsExec")
    }
}

impl ExecutionPlan for KeepExec {
    fn name(&self) -> &str {
        "RegisteredRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().expect("one child");
        Ok(Arc::new(KeepExec::new(
            input,
            self.predicate.clone(),
            self.columns.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let predicate = self.predicate.clone();
        let columns = self.columns.clone();
        let stream = self.input.execute(partition, context)?;
        let kept = stream.map(move |batch| {
            let batch = batch?;
            let keep = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let kept: RecordBatch = arrow::compute::filter_record_batch(&batch, keep.as_boolean())?;
            Ok(kept.project(&columns)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), kept)))
    }
}
