//! Writing datasets in the layout contract: rows routed to shards (by person) or contigs, Parquet
//! files tuned for pruning (sorted input, small pages, page index, bloom filters on the keys),
//! everything staged in a temporary folder and renamed into place only when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::catalog::{Catalog, LOCAL_STORE, Partitioning, TableEntry, Tier};
use crate::error::{EngineError, Result};
use crate::fsutil::StagingDir;
use crate::layout::{PERSON_KEY, contig_dir, part_file, shard_dir, shard_of};
use crate::tables;
pub use crate::tables::Layout;

/// Rows per row group: small enough that a point lookup reads little, large enough to scan fast.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page, so the page index can skip inside a row group.
pub const PAGE_ROWS: usize = 8 * 1024;

/// What a table is, for the writer and the catalog.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub domain: String,
    pub tier: Tier,
    pub person_key: Option<String>,
    pub layout: Layout,
    pub column_tiers: BTreeMap<String, Tier>,
    /// Columns that get a bloom filter (point lookups by key).
    pub bloom_columns: Vec<String>,
}

impl TableSpec {
    /// A table's placement by the Tables contract (group, tier, layout, person key, controlled
    /// columns); a table outside it is registered, and person-keyed when it has a `person_id`.
    pub fn standard(name: &str, schema: &SchemaRef) -> Self {
        let has_person = schema.column_with_name(PERSON_KEY).is_some();
        let (domain, tier) = tables::placement(name);
        let (layout, person_key) = match tables::table(name) {
            Some(def) => (def.layout, def.person_key),
            None if has_person => (Layout::Person, Some(PERSON_KEY)),
            None => (Layout::Single, None),
        };
        let mut bloom_columns = Vec::new();
        for c in [PERSON_KEY, "vid"] {
            if schema.column_with_name(c).is_some() {
                bloom_columns.push(c.to_string());
            }
        }
        TableSpec {
            name: name.to_string(),
            domain: domain.to_string(),
            tier,
            person_key: person_key.map(str::to_string),
            layout,
            column_tiers: tables::column_tiers(name),
            bloom_columns,
        }
    }
}

/// A dataset being written. Nothing is visible at `out` until [`DatasetWriter::finish`].
pub struct DatasetWriter {
    staging: StagingDir,
    catalog: Catalog,
    shards: u32,
    /// For adding tables to an existing dataset: tables staged here replace the dataset's own.
    existing: Option<PathBuf>,
}

impl DatasetWriter {
    /// Starts a new dataset at `out`, which must not exist yet (or be an empty folder).
    pub fn create(out: &Path, name: &str, source: &str, shards: u32) -> Result<Self> {
        if shards == 0 || shards > 4096 {
            return Err(EngineError::InvalidInput(format!(
                "--shards must be between 1 and 4096, got {shards}"
            )));
        }
        if out.exists() {
            let empty = out.is_dir()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !empty {
                return Err(EngineError::InvalidInput(format!(
                    "{} already exists; choose a new --out folder",
                    out.display()
                )));
            }
            std::fs::remove_dir(out).map_err(|e| EngineError::io(out, e))?;
        }
        Ok(DatasetWriter {
            staging: StagingDir::new(out)?,
            catalog: Catalog::new(name, source),
            shards,
            existing: None,
        })
    }

    /// Opens an existing dataset to add or replace tables; the new tables are staged in a
    /// hidden folder inside it and swapped in, with the catalog, by [`DatasetWriter::finish`].
    pub fn amend(dataset: &Path) -> Result<Self> {
        let catalog = Catalog::load(dataset)?;
        let shards = catalog
            .tables
            .values()
            .find_map(|t| match t.partitioning {
                Partitioning::Person { shards } => Some(shards),
                _ => None,
            })
            .unwrap_or(4);
        let staging = StagingDir::new(&dataset.join(".amend"))?;
        Ok(DatasetWriter {
            staging,
            catalog,
            shards,
            existing: Some(dataset.to_path_buf()),
        })
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Starts writing one table; rows go in with [`TableWriter::write`].
    pub fn table(&self, spec: TableSpec, schema: SchemaRef) -> Result<TableWriter> {
        if let Some(key) = &spec.person_key {
            match schema.field_with_name(key).map(|f| f.data_type().clone()) {
                Ok(DataType::Int64 | DataType::Int32) => {}
                Ok(other) => {
                    return Err(EngineError::InvalidInput(format!(
                        "table {}: person key {key} must be an integer column, found {other}",
                        spec.name
                    )));
                }
                Err(_) if spec.layout == Layout::Person => {
                    return Err(EngineError::InvalidInput(format!(
                        "table {}: no person key column {key}",
                        spec.name
                    )));
                }
                Err(_) => {}
            }
        }
        if spec.layout == Layout::Contig && schema.column_with_name("contig").is_none() {
            return Err(EngineError::InvalidInput(format!(
                "table {}: contig layout needs a contig column",
                spec.name
            )));
        }
        let dir = self.staging.path().join(&spec.name);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        Ok(TableWriter {
            props: writer_properties(&spec, &schema),
            spec,
            schema,
            dir,
            shards: self.shards,
            writers: BTreeMap::new(),
            rows: 0,
        })
    }

    /// Records a finished table in the catalog.
    pub fn add_table(&mut self, done: FinishedTable) {
        self.catalog.tables.insert(done.name.clone(), done.entry);
    }

    /// Writes the catalog and renames everything into place.
    pub fn finish(self) -> Result<()> {
        match self.existing {
            None => {
                self.catalog.save(self.staging.path())?;
                self.staging.commit()
            }
            Some(dataset) => {
                for table in self.catalog.tables.keys() {
                    let staged = self.staging.path().join(table);
                    if !staged.exists() {
                        continue;
                    }
                    let target = dataset.join(table);
                    let old = dataset.join(format!(".{table}.old"));
                    if target.exists() {
                        std::fs::rename(&target, &old).map_err(|e| EngineError::io(&target, e))?;
                    }
                    std::fs::rename(&staged, &target).map_err(|e| EngineError::io(&target, e))?;
                    let _ = std::fs::remove_dir_all(&old);
                }
                self.catalog.save(&dataset)?;
                Ok(())
            }
        }
    }
}

/// One table being written: rows are routed to their shard's (or contig's) Parquet file.
/// Callers that want pruning-friendly files feed rows sorted by person (or by position).
pub struct TableWriter {
    spec: TableSpec,
    schema: SchemaRef,
    dir: PathBuf,
    shards: u32,
    props: WriterProperties,
    writers: BTreeMap<String, ArrowWriter<File>>,
    rows: u64,
}

pub struct FinishedTable {
    pub name: String,
    pub entry: TableEntry,
}

impl TableWriter {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if batch.schema() == self.schema {
            batch.clone()
        } else {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| {
                EngineError::InvalidInput(format!(
                    "table {}: batch does not match the table schema: {}",
                    self.spec.name,
                    crate::error::first_line(&e.to_string())
                ))
            })?
        };
        self.rows += batch.num_rows() as u64;
        match self.spec.layout {
            Layout::Single => self.write_to(String::new(), &batch),
            Layout::Person => {
                let key = self.spec.person_key.as_deref().unwrap_or(PERSON_KEY);
                let column = batch.column_by_name(key).expect("checked at open");
                let shards = self.shards;
                let routes = route(column, |pid| shard_of(pid, shards).to_string())?;
                self.write_routed(&batch, routes)
            }
            Layout::Contig => {
                let column = batch.column_by_name("contig").expect("checked at open");
                let strings = arrow::compute::cast(column, &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let mut routes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
                for i in 0..strings.len() {
                    if strings.is_null(i) {
                        return Err(EngineError::InvalidInput(format!(
                            "table {}: contig must not be null",
                            self.spec.name
                        )));
                    }
                    routes
                        .entry(strings.value(i).to_string())
                        .or_default()
                        .push(i as u32);
                }
                self.write_routed(&batch, routes)
            }
        }
    }

    fn write_routed(
        &mut self,
        batch: &RecordBatch,
        routes: BTreeMap<String, Vec<u32>>,
    ) -> Result<()> {
        if routes.len() == 1 {
            let key = routes.into_keys().next().expect("one route");
            return self.write_to(key, batch);
        }
        for (key, rows) in routes {
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            self.write_to(key, &part)?;
        }
        Ok(())
    }

    fn write_to(&mut self, key: String, batch: &RecordBatch) -> Result<()> {
        if !self.writers.contains_key(&key) {
            let dir = match (self.spec.layout, key.as_str()) {
                (Layout::Single, _) => self.dir.clone(),
                (Layout::Person, k) => self.dir.join(shard_dir(k.parse().expect("shard number"))),
                (Layout::Contig, c) => self.dir.join(contig_dir(c)),
            };
            std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
            let path = dir.join(part_file(0));
            let file = File::create(&path).map_err(|e| EngineError::io(&path, e))?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))?;
            self.writers.insert(key.clone(), writer);
        }
        self.writers.get_mut(&key).expect("inserted").write(batch)?;
        Ok(())
    }

    /// Closes every file (fsynced) and describes the table for the catalog. Person-keyed
    /// tables get every shard folder, empty ones included, so the layout is complete.
    pub fn finish(mut self) -> Result<FinishedTable> {
        if self.spec.layout == Layout::Person {
            for k in 0..self.shards {
                let key = k.to_string();
                if !self.writers.contains_key(&key) {
                    let empty = RecordBatch::new_empty(self.schema.clone());
                    self.write_to(key, &empty)?;
                }
            }
        }
        if self.spec.layout == Layout::Single && self.writers.is_empty() {
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.write_to(String::new(), &empty)?;
        }
        let contigs: Vec<String> = self.writers.keys().cloned().collect();
        for (_, writer) in std::mem::take(&mut self.writers) {
            let file = writer.into_inner()?;
            file.sync_all().map_err(|e| EngineError::io(&self.dir, e))?;
        }
        let partitioning = match self.spec.layout {
            Layout::Person => Partitioning::Person {
                shards: self.shards,
            },
            Layout::Contig => Partitioning::Contig { contigs },
            Layout::Single => Partitioning::Single,
        };
        Ok(FinishedTable {
            name: self.spec.name.clone(),
            entry: TableEntry {
                domain: self.spec.domain,
                tier: self.spec.tier,
                person_key: self.spec.person_key,
                partitioning,
                store: LOCAL_STORE.to_string(),
                path: None,
                shard_locations: BTreeMap::new(),
                column_tiers: self.spec.column_tiers,
                rows: self.rows,
            },
        })
    }
}

fn route(column: &ArrayRef, key: impl Fn(i64) -> String) -> Result<BTreeMap<String, Vec<u32>>> {
    let values: Vec<Option<i64>> = match column.data_type() {
        DataType::Int64 => column.as_primitive::<Int64Type>().iter().collect(),
        DataType::Int32 => column
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        other => {
            return Err(EngineError::InvalidInput(format!(
                "person key must be an integer, found {other}"
            )));
        }
    };
    let mut routes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (i, v) in values.into_iter().enumerate() {
        // Rows without a participant still need a home; shard 0 keeps them.
        let k = v.map(&key).unwrap_or_else(|| "0".to_string());
        routes.entry(k).or_default().push(i as u32);
    }
    Ok(routes)
}

fn writer_properties(spec: &TableSpec, schema: &SchemaRef) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by("strata".to_string());
    for c in &spec.bloom_columns {
        if schema.column_with_name(c).is_some() {
            let path = parquet::schema::types::ColumnPath::from(c.as_str());
            b = b
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.01)
                .set_column_bloom_filter_max_ndv(path, ROW_GROUP_ROWS as u64);
        }
    }
    b.build()
}

/// Shared empty-schema helper for callers that build schemas field by field.
pub fn schema_of(fields: Vec<arrow::datatypes::Field>) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(fields))
}
