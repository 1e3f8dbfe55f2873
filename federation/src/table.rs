//! A remote source's table as a DataFusion table: the scan asks the remote for only the
//! columns and (safe) filters the query needs, and streams its answer.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::error::Result;
use crate::pushdown;
use crate::source::FlightSqlSource;

/// A table of a remote Flight SQL source, known locally by the catalog's name for it.
#[derive(Debug)]
pub struct RemoteTable {
    source: Arc<FlightSqlSource>,
    /// The remote's name for the table (`table` or `schema.table`).
    remote_name: String,
    schema: SchemaRef,
}

impl RemoteTable {
    /// Asks the remote for the table's columns: a source that does not answer, or refuses, is
    /// an error for the operator now rather than for every query later.
    pub async fn open(source: Arc<FlightSqlSource>, remote_name: &str) -> Result<Self> {
        let schema = source.schema_of(remote_name).await?;
        Ok(RemoteTable {
            source,
            remote_name: remote_name.to_string(),
            schema,
        })
    }

    pub fn source(&self) -> &Arc<FlightSqlSource> {
        &self.source
    }

    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }
}

#[async_trait]
impl TableProvider for RemoteTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact even when pushed: DataFusion filters the arriving rows again (see `pushdown`).
        Ok(filters
            .iter()
            .map(|f| {
                if pushdown::pushable(f, &self.schema) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let output = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        // No columns (COUNT(*)): the rows still have to come, so the narrowest column does.
        let fetched = if output.fields().is_empty() && !self.schema.fields().is_empty() {
            Arc::new(self.schema.project(&[narrowest(&self.schema)])?)
        } else {
            output.clone()
        };
        let columns: Vec<&str> = fetched.fields().iter().map(|f| f.name().as_str()).collect();
        let pushed: Vec<&Expr> = filters
            .iter()
            .filter(|f| pushdown::pushable(f, &self.schema))
            .collect();
        let sql = pushdown::statement(&self.remote_name, &columns, &pushed, limit)?;
        Ok(Arc::new(RemoteScanExec::new(
            self.source.clone(),
            sql,
            fetched,
            output,
        )))
    }
}

/// Runs one statement on a remote source; one partition, in the remote's order.
#[derive(Debug)]
pub struct RemoteScanExec {
    source: Arc<FlightSqlSource>,
    sql: String,
    fetched: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl RemoteScanExec {
    fn new(
        source: Arc<FlightSqlSource>,
        sql: String,
        fetched: SchemaRef,
        output: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        RemoteScanExec {
            source,
            sql,
            fetched,
            properties,
        }
    }

    /// The statement the remote is sent.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

impl DisplayAs for RemoteScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RemoteScanExec: source={}, sql={}",
            self.source.name(),
            self.sql
        )
    }
}

impl ExecutionPlan for RemoteScanExec {
    fn name(&self) -> &str {
        "RemoteScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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
        match children.is_empty() {
            true => Ok(self),
            false => datafusion::common::internal_err!("RemoteScanExec has no children"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return datafusion::common::internal_err!("RemoteScanExec has one partition");
        }
        let output = self.schema();
        let source = self.source.clone();
        let sql = self.sql.clone();
        let fetched = self.fetched.clone();
        let span = tracing::debug_span!("remote_scan", source = %source.name());
        let batches = futures::stream::once(async move {
            tracing::debug!(parent: &span, sql = %sql, "running on the remote source");
            source.run(sql, fetched).await
        })
        .try_flatten()
        .map_err(|e| DataFusionError::External(Box::new(e)));
        let shaped = {
            let output = output.clone();
            batches.map(move |batch| shape(batch?, &output))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(output, shaped)))
    }
}

/// The column with the fewest bytes per row (fixed-width first, the first of equals).
fn narrowest(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .enumerate()
        .min_by_key(|(i, f)| (f.data_type().primitive_width().unwrap_or(usize::MAX), *i))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// The fetched batch as the scan's output: the same, or only its row count (no columns asked).
fn shape(batch: RecordBatch, output: &SchemaRef) -> DfResult<RecordBatch> {
    if output.fields().is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        return Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &options,
        )?);
    }
    Ok(batch)
}
