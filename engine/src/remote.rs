//! A remote source's table as the dataset serves it: the federation crate's table, with its scans
//! recorded in the query's `ScanRecorder` like those of the dataset's own tables (the query log
//! lists every table a query read).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use strata_federation::RemoteTable;

use crate::table::ScanRecorder;

#[derive(Debug)]
pub(crate) struct RecordedRemote {
    pub(crate) name: String,
    pub(crate) table: Arc<RemoteTable>,
}

#[async_trait]
impl TableProvider for RecordedRemote {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        self.table.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(recorder) = state.config().get_extension::<ScanRecorder>() {
            // No shards and no files of the dataset's: the remote holds the table whole.
            recorder.record(&self.name, 0, 0, 0);
        }
        self.table.scan(state, projection, filters, limit).await
    }
}
