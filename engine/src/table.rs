//! One `TableProvider` per dataset table: picks the shards a query can match from its filters,
//! then hands only those shards' files to DataFusion's Parquet scan, which prunes row groups and
//! pages with statistics, the page index and bloom filters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use crate::catalog::{Partitioning, TableEntry};
use crate::pruning::{KeySet, contigs, person_shards};
use crate::selectivity::selective;

/// One shard of a table: its key (shard number or contig), the store it lives on and its files
/// (with the statistics read from their footers when the dataset was opened).
#[derive(Debug, Clone)]
pub struct Shard {
    pub key: String,
    pub store: ObjectStoreUrl,
    pub files: Vec<PartitionedFile>,
}

pub struct ShardedTable {
    name: String,
    schema: SchemaRef,
    entry: TableEntry,
    shards: Vec<Shard>,
}

impl fmt::Debug for ShardedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShardedTable({}, {} shards)",
            self.name,
            self.shards.len()
        )
    }
}

impl ShardedTable {
    pub fn new(name: String, schema: SchemaRef, entry: TableEntry, shards: Vec<Shard>) -> Self {
        ShardedTable {
            name,
            schema,
            entry,
            shards,
        }
    }

    pub fn entry(&self) -> &TableEntry {
        &self.entry
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The column rows are sorted by inside each file (the layout contract): the person key of
    /// person-sharded tables, the position of contig-sharded ones.
    pub fn sorted_by(&self) -> Option<&str> {
        match &self.entry.partitioning {
            Partitioning::Person { .. } => Some(
                self.entry
                    .person_key
                    .as_deref()
                    .unwrap_or(crate::layout::PERSON_KEY),
            ),
            Partitioning::Contig { .. } => Some("position"),
            Partitioning::Single => None,
        }
    }

    /// Shards that rows matching `filters` can live in.
    pub fn select_shards(&self, filters: &[Expr]) -> Vec<&Shard> {
        let keys: KeySet<String> = match &self.entry.partitioning {
            Partitioning::Person { shards } => {
                let key = self
                    .entry
                    .person_key
                    .as_deref()
                    .unwrap_or(crate::layout::PERSON_KEY);
                match person_shards(filters, key, *shards) {
                    KeySet::Any => KeySet::Any,
                    KeySet::Only(s) => KeySet::Only(s.into_iter().map(|k| k.to_string()).collect()),
                }
            }
            Partitioning::Contig { .. } => contigs(filters, "contig"),
            Partitioning::Single => KeySet::Any,
        };
        self.shards
            .iter()
            .filter(|s| match &keys {
                KeySet::Any => true,
                KeySet::Only(k) => k.contains(&s.key),
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for ShardedTable {
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
        // Inexact: shard pruning is coarse and the Parquet scan prunes by statistics; DataFusion
        // keeps the filter above the scan and pushes it into the Parquet reader itself.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let selected = self.select_shards(filters);
        let files: usize = selected.iter().map(|s| s.files.len()).sum();
        if let Some(recorder) = state.config().get_extension::<ScanRecorder>() {
            recorder.record(&self.name, selected.len(), self.shards.len(), files);
        }
        let mut by_store: BTreeMap<String, (ObjectStoreUrl, Vec<PartitionedFile>)> =
            BTreeMap::new();
        for shard in &selected {
            let entry = by_store
                .entry(shard.store.as_str().to_string())
                .or_insert_with(|| (shard.store.clone(), Vec::new()));
            entry.1.extend(shard.files.iter().cloned());
        }
        if by_store.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let partitions = state.config().target_partitions().max(1);
        let mut plans = Vec::with_capacity(by_store.len());
        for (_, (store, files)) in by_store {
            let statistics = Statistics::try_merge_iter(
                files.iter().filter_map(|f| f.statistics.as_deref()),
                &self.schema,
            )?;
            // Late materialization pays on selective filters only (see `selectivity`).
            let mut options = state.table_options().parquet.clone();
            if selective(filters, self.sorted_by(), &self.schema, &statistics) {
                options.global.pushdown_filters = true;
                options.global.reorder_filters = true;
            }
            let format = ParquetFormat::default().with_options(options);
            let groups = spread(files, partitions);
            let source = Arc::new(ParquetSource::new(self.schema.clone()));
            let config = FileScanConfigBuilder::new(store, source)
                .with_file_groups(groups)
                .with_statistics(planning_statistics(&statistics, &self.schema))
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            plans.push(format.create_physical_plan(state, config).await?);
        }
        if plans.len() == 1 {
            return Ok(plans.pop().expect("one plan"));
        }
        UnionExec::try_new(plans)
    }
}

/// What the optimizer is told of a scan: row count and size, marked inexact, and nothing of the
/// columns. That is enough to order joins; exact values would let DataFusion answer COUNT, MIN
/// and MAX from metadata and print them in a plan (EXPLAIN), outside disclosure control. (Each
/// file keeps its exact statistics for pruning, which never shows in a result.)
fn planning_statistics(statistics: &Statistics, schema: &SchemaRef) -> Statistics {
    Statistics {
        num_rows: statistics.num_rows.to_inexact(),
        total_byte_size: statistics.total_byte_size.to_inexact(),
        column_statistics: Statistics::unknown_column(schema),
    }
}

/// Files spread over `n` groups by size, largest first, so partitions get similar work.
fn spread(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    files.sort_by(|a, b| {
        b.object_meta
            .size
            .cmp(&a.object_meta.size)
            .then(a.object_meta.location.cmp(&b.object_meta.location))
    });
    let n = n.min(files.len()).max(1);
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for f in files {
        let g = groups
            .iter_mut()
            .min_by_key(|(size, _)| *size)
            .expect("n >= 1");
        g.0 += f.object_meta.size;
        g.1.push(f);
    }
    groups
        .into_iter()
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

/// What the scans of one query touched, collected through the session config so each query
/// reports its own shards and files.
#[derive(Debug, Default)]
pub struct ScanRecorder {
    scans: Mutex<Vec<ScanRecord>>,
}

#[derive(Debug, Clone)]
pub struct ScanRecord {
    pub table: String,
    pub shards_scanned: usize,
    pub shards_total: usize,
    pub files: usize,
}

impl ScanRecorder {
    pub(crate) fn record(
        &self,
        table: &str,
        shards_scanned: usize,
        shards_total: usize,
        files: usize,
    ) {
        self.scans.lock().expect("recorder lock").push(ScanRecord {
            table: table.to_string(),
            shards_scanned,
            shards_total,
            files,
        });
    }

    pub fn records(&self) -> Vec<ScanRecord> {
        self.scans.lock().expect("recorder lock").clone()
    }
}
