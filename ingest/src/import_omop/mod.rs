//! `strata import omop`: an OMOP CDM 5.3/5.4 export (Parquet or CSV) into a dataset.
//!
//! Sources are the files of one folder named after their tables, as DuckDB, Spark and the
//! OHDSI tools write them: `person.parquet`, `PERSON.csv`, `person.tsv`, or a folder `person/`
//! (also `person.parquet/`) of Parquet or CSV parts. Table names are lowercased (other
//! characters than letters, digits and `_` become `_`); hidden files and files of other kinds
//! are skipped; two sources for one table are an error.
//!
//! - Parquet keeps its types exactly (only column names are lowercased), so every column's
//!   values and checksum equal the source's.
//! - CSV is read as text (no type inference) and known CDM 5.4 columns are then typed by the
//!   CDM (see [`cdm`] and [`convert`]); unknown columns stay text, except `person_id` which is
//!   always the Int64 shard key. The delimiter is sniffed from the header (`,`, tab, `;`, `|`);
//!   tab-separated files with an unquoted header are read without quoting, as Athena writes its
//!   vocabulary files (concept names with bare `"` in them).
//! - Person-keyed tables are sorted by `person_id` (DataFusion's external sort, spilling to
//!   disk past [`SORT_MEMORY`]) and streamed into the dataset writer, so each shard's file is
//!   sorted and its row-group statistics prune; other tables stream as they are read.
//! - Everything is checked before a byte is written (folder, table names, headers, required
//!   columns, Parquet footers); a failure later (a bad value, a corrupt page) still leaves
//!   nothing behind, since the dataset is staged and renamed into place only when complete.

pub mod cdm;
pub mod convert;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, cast};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, ParquetReadOptions, SessionConfig, SessionContext, col,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::writer::{DatasetWriter, Layout, TableSpec};

use crate::error::{IngestError, Result};
use strata_engine::tables::ColumnType;

/// Memory the sort of one table may hold before it spills to disk.
pub const SORT_MEMORY: usize = 2 << 30;

#[derive(Debug, Clone)]
pub struct OmopImportOptions {
    pub from: PathBuf,
    pub out: PathBuf,
    pub shards: u32,
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Every imported table with its row count, by table name.
    pub tables: Vec<(String, u64)>,
}

pub async fn import_omop(opts: &OmopImportOptions) -> Result<ImportSummary> {
    let sources = discover(&opts.from)?;
    let name = opts
        .out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "omop".to_string());
    let source = format!("import omop --from {}", opts.from.display());
    let mut dataset = DatasetWriter::create(&opts.out, &name, &source, opts.shards)?;

    let ctx = session()?;
    let mut planned = Vec::with_capacity(sources.len());
    for source in &sources {
        planned.push(plan(&ctx, source).await?);
    }

    let bar = progress_bar(opts.progress, planned.len() as u64);
    let mut summary = ImportSummary::default();
    let written = async {
        for table in planned {
            bar.set_message(table.name.clone());
            summary
                .tables
                .push(write_table(&ctx, &mut dataset, table).await?);
            bar.inc(1);
        }
        Ok::<_, IngestError>(())
    }
    .await;
    // Cleared on failure too, so the error line stands alone.
    bar.finish_and_clear();
    written?;
    dataset.finish()?;
    Ok(summary)
}

fn progress_bar(show: bool, tables: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(tables);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} import omop [{bar:30}] {pos}/{len} tables  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn session() -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .with_repartition_file_scans(false);
    // Keep Parquet strings as Utf8 (not Utf8View): imported tables keep their source types.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(SORT_MEMORY, 1.0)
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

// ---------------------------------------------------------------------------------------------
// Finding the tables

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
}

#[derive(Debug, Clone)]
struct Source {
    table: String,
    /// The file, or the folder of parts.
    path: PathBuf,
    format: Format,
    /// The files read: the file itself, or the parts of a folder.
    files: Vec<PathBuf>,
}

fn input_err(msg: impl Into<String>) -> IngestError {
    IngestError::Input(msg.into())
}

/// An error about one source file, on one line.
fn file_err(path: &Path, err: impl Display) -> IngestError {
    let text = err.to_string();
    let mut line = strata_engine::error::first_line(&text);
    for prefix in [
        "External error: ",
        "Arrow error: ",
        "Parquet error: ",
        "Execution error: ",
        "Csv error: ",
        "Object Store error: ",
        "Error during planning: ",
    ] {
        while let Some(rest) = line.strip_prefix(prefix) {
            line = rest.to_string();
        }
    }
    input_err(format!("{}: {line}", path.display()))
}

fn table_name(stem: &str) -> String {
    stem.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn format_of(file_name: &str) -> Option<(Format, usize)> {
    let lower = file_name.to_lowercase();
    for (ext, format) in [
        (".parquet", Format::Parquet),
        (".csv", Format::Csv),
        (".tsv", Format::Csv),
    ] {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return Some((format, ext.len()));
        }
    }
    None
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Data files under a folder of parts (Spark's `part-*.parquet`, skipping `_SUCCESS`, `.crc`).
fn part_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| IngestError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_hidden(&name) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            part_files(&path, out)?;
        } else if format_of(&name).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

fn discover(from: &Path) -> Result<Vec<Source>> {
    if !from.exists() {
        return Err(input_err(format!(
            "--from {}: no such folder",
            from.display()
        )));
    }
    if !from.is_dir() {
        return Err(input_err(format!(
            "--from {}: not a folder (give the folder that holds the table files)",
            from.display()
        )));
    }
    let entries = std::fs::read_dir(from).map_err(|e| IngestError::io(from, e))?;
    let mut by_table: BTreeMap<String, Source> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(from, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_hidden(&name) {
            continue;
        }
        let path = entry.path();
        let source = if path.is_dir() {
            let mut files = Vec::new();
            part_files(&path, &mut files)?;
            files.sort();
            let formats: Vec<Format> = files
                .iter()
                .filter_map(|f| format_of(&f.file_name()?.to_string_lossy()).map(|x| x.0))
                .collect();
            let Some(&format) = formats.first() else {
                continue;
            };
            if formats.iter().any(|f| *f != format) {
                return Err(input_err(format!(
                    "{}: mixes Parquet and CSV parts; keep one format per table",
                    path.display()
                )));
            }
            let stem = match format_of(&name) {
                Some((_, ext)) => &name[..name.len() - ext],
                None => name.as_str(),
            };
            Source {
                table: table_name(stem),
                path: path.clone(),
                format,
                files,
            }
        } else {
            let lower = name.to_lowercase();
            if [
                ".csv.gz", ".csv.zip", ".csv.bz2", ".csv.zst", ".csv.xz", ".tsv.gz",
            ]
            .iter()
            .any(|ext| lower.ends_with(ext))
            {
                return Err(input_err(format!(
                    "{}: compressed CSV is not supported; decompress it first",
                    path.display()
                )));
            }
            let Some((format, ext)) = format_of(&name) else {
                continue;
            };
            let stem = &name[..name.len() - ext];
            Source {
                table: table_name(stem),
                path: path.clone(),
                format,
                files: vec![path.clone()],
            }
        };
        if source.table.is_empty() {
            continue;
        }
        if let Some(other) = by_table.get(&source.table) {
            return Err(input_err(format!(
                "two sources for table {}: {} and {}",
                source.table,
                other.path.display(),
                source.path.display()
            )));
        }
        by_table.insert(source.table.clone(), source);
    }
    if by_table.is_empty() {
        return Err(input_err(format!(
            "--from {}: no table files found (expected person.parquet, person.csv, … or folders of parts)",
            from.display()
        )));
    }
    Ok(by_table.into_values().collect())
}

// ---------------------------------------------------------------------------------------------
// Checking and planning each table before anything is written

enum Plan {
    /// Parquet, read with its own types; `df` already renames columns to lowercase.
    Parquet { df: DataFrame },
    /// CSV read as text, typed column by column into `schema`.
    Csv {
        df: DataFrame,
        types: Vec<ColumnType>,
    },
}

struct PlannedTable {
    name: String,
    path: PathBuf,
    schema: SchemaRef,
    plan: Plan,
}

/// Lowercased names, unique and non-empty, with the table's required columns present.
fn check_columns(table: &str, path: &Path, names: &[String]) -> Result<Vec<String>> {
    let mut lowered = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let l = name.trim().to_lowercase();
        if l.is_empty() {
            return Err(file_err(
                path,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        if lowered.contains(&l) {
            return Err(file_err(
                path,
                format!("duplicate column {l} in the header"),
            ));
        }
        lowered.push(l);
    }
    for required in cdm::required_columns(table) {
        if !lowered.iter().any(|c| c == required) {
            return Err(file_err(
                path,
                format!(
                    "table {table} needs a {required} column; the header has: {}",
                    abbreviate(&lowered)
                ),
            ));
        }
    }
    Ok(lowered)
}

fn abbreviate(cols: &[String]) -> String {
    const MAX: usize = 12;
    let mut s = cols
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if cols.len() > MAX {
        s.push_str(&format!(", … ({} columns)", cols.len()));
    }
    s
}

fn path_arg(path: &Path, dir: bool) -> Result<String> {
    let abs = std::path::absolute(path).map_err(|e| IngestError::io(path, e))?;
    let mut s = abs.to_string_lossy().to_string();
    if dir && !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

/// Checks a Parquet file's magic numbers, footer and metadata before DataFusion reads it, so a
/// truncated or corrupt file is refused up front with a plain message (and never reaches the
/// footer arithmetic of the reader with a nonsense length).
fn check_parquet(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
    if len < 12 {
        return Err(file_err(path, "not a Parquet file (too short)"));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 8];
    file.read_exact(&mut head)
        .map_err(|e| IngestError::io(path, e))?;
    file.seek(SeekFrom::End(-8))
        .map_err(|e| IngestError::io(path, e))?;
    file.read_exact(&mut tail)
        .map_err(|e| IngestError::io(path, e))?;
    if &head != b"PAR1" {
        return Err(file_err(path, "not a Parquet file (no PAR1 magic number)"));
    }
    match &tail[4..] {
        b"PAR1" => {}
        b"PARE" => return Err(file_err(path, "encrypted Parquet is not supported")),
        _ => {
            return Err(file_err(
                path,
                "truncated or corrupt Parquet file (no footer)",
            ));
        }
    }
    let metadata_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if metadata_len + 12 > len {
        return Err(file_err(
            path,
            "corrupt Parquet footer (metadata length past the file start)",
        ));
    }
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| file_err(path, format!("corrupt Parquet metadata: {e}")))?;
    Ok(())
}

async fn plan(ctx: &SessionContext, source: &Source) -> Result<PlannedTable> {
    let is_dir = source.path.is_dir();
    match source.format {
        Format::Parquet => {
            for file in &source.files {
                check_parquet(file)?;
            }
            let ext = if is_dir {
                ".parquet".to_string()
            } else {
                let name = source
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name[name.len() - ".parquet".len()..].to_string()
            };
            let df = ctx
                .read_parquet(
                    path_arg(&source.path, is_dir)?,
                    ParquetReadOptions::default().file_extension(&ext),
                )
                .await
                .map_err(|e| file_err(&source.path, e))?;
            let fields: Vec<Field> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
            let lowered = check_columns(&source.table, &source.path, &names)?;
            let mut exprs = Vec::with_capacity(fields.len());
            for (field, lower) in fields.iter().zip(&lowered) {
                let mut e = Expr::Column(Column::new_unqualified(field.name()));
                if lower == "person_id"
                    && !matches!(field.data_type(), DataType::Int32 | DataType::Int64)
                {
                    match field.data_type() {
                        DataType::Int8
                        | DataType::Int16
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                        | DataType::Decimal128(_, 0)
                        | DataType::Decimal256(_, 0) => e = cast(e, DataType::Int64),
                        other => {
                            return Err(file_err(
                                &source.path,
                                format!("person_id must be an integer column, found {other}"),
                            ));
                        }
                    }
                }
                exprs.push(e.alias(lower));
            }
            let df = df.select(exprs).map_err(|e| file_err(&source.path, e))?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            Ok(PlannedTable {
                name: source.table.clone(),
                path: source.path.clone(),
                schema,
                plan: Plan::Parquet { df },
            })
        }
        Format::Csv => {
            let mut header: Option<CsvHeader> = None;
            for file in &source.files {
                let h = read_csv_header(file)?;
                if let Some(first) = &header
                    && (first.names != h.names || first.delimiter != h.delimiter)
                {
                    return Err(file_err(
                        file,
                        "header differs from the other parts of the table",
                    ));
                }
                header.get_or_insert(h);
            }
            let header = header.ok_or_else(|| file_err(&source.path, "no CSV files"))?;
            let lowered = check_columns(&source.table, &source.path, &header.names)?;
            let text_schema = Schema::new(
                lowered
                    .iter()
                    .map(|n| Field::new(n, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            );
            let types: Vec<ColumnType> = lowered
                .iter()
                .map(|n| cdm::column_type(&source.table, n))
                .collect();
            let schema = Arc::new(Schema::new(
                lowered
                    .iter()
                    .zip(&types)
                    .map(|(n, t)| Field::new(n, t.data_type(), true))
                    .collect::<Vec<_>>(),
            ));
            let ext = if is_dir {
                let name = source.files[0]
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name[name.len() - 4..].to_string()
            } else {
                let name = source
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name[name.len() - 4..].to_string()
            };
            let options = CsvReadOptions::new()
                .has_header(true)
                .delimiter(header.delimiter)
                .quote(if header.quoting { b'"' } else { 0 })
                .newlines_in_values(header.quoting)
                .schema(&text_schema)
                .file_extension(&ext);
            let df = ctx
                .read_csv(path_arg(&source.path, is_dir)?, options)
                .await
                .map_err(|e| file_err(&source.path, e))?;
            Ok(PlannedTable {
                name: source.table.clone(),
                path: source.path.clone(),
                schema,
                plan: Plan::Csv { df, types },
            })
        }
    }
}

struct CsvHeader {
    names: Vec<String>,
    delimiter: u8,
    quoting: bool,
}

/// Reads and splits the header line of a CSV file, sniffing its delimiter.
fn read_csv_header(path: &Path) -> Result<CsvHeader> {
    let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut line = Vec::new();
    BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(|e| IngestError::io(path, e))?;
    let line =
        String::from_utf8(line).map_err(|_| file_err(path, "the header line is not UTF-8 text"))?;
    let line = line
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Err(file_err(path, "empty file: no header line"));
    }
    let count = |d: char| {
        let mut n = 0;
        let mut quoted = false;
        for c in line.chars() {
            if c == '"' {
                quoted = !quoted;
            } else if c == d && !quoted {
                n += 1;
            }
        }
        n
    };
    let delimiter = [',', '\t', ';', '|']
        .into_iter()
        .max_by_key(|d| (count(*d), *d == ','))
        .unwrap_or(',');
    let delimiter = if count(delimiter) == 0 {
        ','
    } else {
        delimiter
    };
    let quoting = delimiter != '\t' || line.starts_with('"');
    let names = split_header(line, delimiter, quoting);
    Ok(CsvHeader {
        names,
        delimiter: delimiter as u8,
        quoting,
    })
}

fn split_header(line: &str, delimiter: char, quoting: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoting && c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                cur.push('"');
                chars.next();
            } else {
                quoted = !quoted;
            }
        } else if c == delimiter && !quoted {
            names.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    names.push(cur);
    names
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Hands an already-running stream to DataFusion once, so CSV rows typed here can be sorted
/// by DataFusion's spilling sort.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot").finish_non_exhaustive()
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().ok().and_then(|mut s| s.take()) {
            Some(stream) => stream,
            None => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async {
                    Err(DataFusionError::Internal(
                        "import stream consumed twice".into(),
                    ))
                }),
            )),
        }
    }
}

/// Types the text columns of a CSV stream; the first bad value is described in `bad`.
fn typed_csv_stream(
    raw: SendableRecordBatchStream,
    schema: SchemaRef,
    types: Vec<ColumnType>,
    bad: Arc<Mutex<Option<String>>>,
) -> SendableRecordBatchStream {
    let mut rows_before = 0usize;
    let out_schema = schema.clone();
    let stream = raw.map(move |batch| {
        let batch = batch?;
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (i, ty) in types.iter().enumerate() {
            let text = batch.column(i).as_string::<i32>();
            match convert::convert(text, *ty) {
                Ok(array) => columns.push(array),
                Err(e) => {
                    let msg = format!(
                        "column {}, data row {}: expected {}",
                        schema.field(i).name(),
                        rows_before + e.row + 1,
                        e.expected
                    );
                    if let Ok(mut slot) = bad.lock() {
                        slot.get_or_insert(msg.clone());
                    }
                    return Err(DataFusionError::Execution(msg));
                }
            }
        }
        rows_before += batch.num_rows();
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    });
    Box::pin(RecordBatchStreamAdapter::new(out_schema, stream))
}

fn by_person(df: DataFrame) -> std::result::Result<DataFrame, DataFusionError> {
    df.sort(vec![col("person_id").sort(true, false)])
}

async fn write_table(
    ctx: &SessionContext,
    dataset: &mut DatasetWriter,
    table: PlannedTable,
) -> Result<(String, u64)> {
    let PlannedTable {
        name,
        path,
        schema,
        plan,
    } = table;
    let spec = TableSpec::standard(&name, &schema);
    let sorted = spec.layout == Layout::Person;
    let bad = Arc::new(Mutex::new(None::<String>));
    let err = |e: DataFusionError| -> IngestError {
        match bad.lock().ok().and_then(|s| s.clone()) {
            Some(msg) => file_err(&path, msg),
            None => file_err(&path, e),
        }
    };
    let mut stream = match plan {
        Plan::Parquet { df } => {
            let df = if sorted {
                by_person(df).map_err(err)?
            } else {
                df
            };
            df.execute_stream().await.map_err(err)?
        }
        Plan::Csv { df, types } => {
            let raw = df.execute_stream().await.map_err(err)?;
            let typed = typed_csv_stream(raw, schema.clone(), types, bad.clone());
            if sorted {
                let one = OneShot {
                    schema: schema.clone(),
                    stream: Mutex::new(Some(typed)),
                };
                let table =
                    StreamingTable::try_new(schema.clone(), vec![Arc::new(one)]).map_err(err)?;
                let df = ctx.read_table(Arc::new(table)).map_err(err)?;
                by_person(df)
                    .map_err(err)?
                    .execute_stream()
                    .await
                    .map_err(err)?
            } else {
                typed
            }
        }
    };
    let mut writer = dataset
        .table(spec, schema)
        .map_err(|e| file_err(&path, e))?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(err)?;
        writer.write(&batch).map_err(|e| file_err(&path, e))?;
    }
    let done = writer.finish()?;
    let rows = done.entry.rows;
    dataset.add_table(done);
    Ok((name, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use arrow::datatypes::{Date32Type, Int32Type, Int64Type};

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn opts(from: &Path, out: &Path) -> OmopImportOptions {
        OmopImportOptions {
            from: from.to_path_buf(),
            out: out.to_path_buf(),
            shards: 2,
            progress: false,
        }
    }

    fn read_all(dir: &Path) -> Vec<RecordBatch> {
        let mut files = Vec::new();
        part_files(dir, &mut files).unwrap();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let file = std::fs::File::open(f).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            out.extend(reader.map(|b| b.unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn csv_is_typed_by_the_cdm() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        write(
            &src,
            "PERSON.csv",
            "\u{feff}PERSON_ID,gender_concept_id,year_of_birth,birth_datetime,person_source_value,shoe_size\n\
             3,8532,1980,1980-05-01 10:00:00,007,42\n1,8507,1950,,\"a, b\",\n2,8507,NA,1960-01-01,x,\n",
        );
        write(
            &src,
            "concept.tsv",
            "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n\
             192671\tGI \"bleed\"\tCondition\tSNOMED\tClinical Finding\tS\t0123\t19700101\t20991231\t\n",
        );
        write(&src, "README.md", "not a table");
        let out = tmp.path().join("ds");
        let summary = import_omop(&opts(&src, &out)).await.unwrap();
        assert_eq!(
            summary.tables,
            vec![("concept".to_string(), 1), ("person".to_string(), 3)]
        );

        let person = read_all(&out.join("person"));
        let schema = person[0].schema();
        assert_eq!(schema.field(0).name(), "person_id");
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Int32);
        assert_eq!(schema.field(2).data_type(), &DataType::Int32);
        assert!(matches!(
            schema.field(3).data_type(),
            DataType::Timestamp(_, None)
        ));
        assert_eq!(schema.field(4).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(5).data_type(), &DataType::Utf8);
        let mut ids = Vec::new();
        for b in &person {
            ids.extend(b.column(0).as_primitive::<Int64Type>().iter().flatten());
            let years = b.column(2).as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                let id = b.column(0).as_primitive::<Int64Type>().value(i);
                assert_eq!(years.is_null(i), id == 2);
                if id == 1 {
                    assert_eq!(b.column(4).as_string::<i32>().value(i), "a, b");
                }
                if id == 3 {
                    assert_eq!(b.column(4).as_string::<i32>().value(i), "007");
                }
            }
        }
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        // Each shard file is sorted by person.
        for k in 0..2 {
            let batches = read_all(&out.join(format!("person/shard={k}")));
            let v: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_primitive::<Int64Type>()
                        .iter()
                        .flatten()
                        .collect::<Vec<_>>()
                })
                .collect();
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
        }

        let concept = read_all(&out.join("concept"));
        let c = &concept[0];
        assert_eq!(c.column(0).as_primitive::<Int32Type>().value(0), 192671);
        assert_eq!(c.column(1).as_string::<i32>().value(0), "GI \"bleed\"");
        assert_eq!(c.column(6).as_string::<i32>().value(0), "0123");
        assert_eq!(c.column(7).as_primitive::<Date32Type>().value(0), 0);
        assert!(out.join("catalog.toml").exists());
        assert!(out.join("concept/part-0.parquet").exists());
    }

    async fn import_err(files: &[(&str, &[u8])]) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for (name, bytes) in files {
            std::fs::write(src.join(name), bytes).unwrap();
        }
        let out = tmp.path().join("ds");
        let err = import_omop(&opts(&src, &out))
            .await
            .unwrap_err()
            .to_string();
        assert!(!out.exists(), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("src")], "{err}");
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[tokio::test]
    async fn header_errors_name_the_file() {
        let e = import_err(&[(
            "person.csv",
            b"gender_concept_id,year_of_birth\n8507,1950\n",
        )])
        .await;
        assert!(e.contains("person.csv") && e.contains("person_id"), "{e}");
        let e = import_err(&[("person.csv", b"person_id,Person_ID\n1,1\n")]).await;
        assert!(
            e.contains("person.csv") && e.contains("duplicate column person_id"),
            "{e}"
        );
        let e = import_err(&[("death.csv", b"")]).await;
        assert!(e.contains("death.csv") && e.contains("empty"), "{e}");
        let e = import_err(&[
            ("location.csv", b"location_id,city\n1,Paris\n"),
            ("person.csv", b"person_id,year_of_birth\n1,19x0\n"),
        ])
        .await;
        assert!(
            e.contains("person.csv") && e.contains("year_of_birth") && e.contains("row 1"),
            "{e}"
        );
        let e = import_err(&[("person.csv", b"person_id,year_of_birth\n1,1950,7\n")]).await;
        assert!(e.contains("person.csv"), "{e}");
    }

    #[tokio::test]
    async fn corrupt_parquet_names_the_file() {
        let e = import_err(&[("person.parquet", b"PAR1 this is not parquet at all PAR1")]).await;
        assert!(e.contains("person.parquet") && e.contains("corrupt"), "{e}");
        let e = import_err(&[("person.parquet", b"PAR1 this is not parquet at all")]).await;
        assert!(
            e.contains("person.parquet") && e.contains("truncated"),
            "{e}"
        );
        let e = import_err(&[("person.parquet", b"PAR1\x05\0\0\0garbage\x05\0\0\0PAR1")]).await;
        assert!(
            e.contains("person.parquet") && e.contains("metadata"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn folder_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ds");
        let e = import_omop(&opts(&tmp.path().join("nope"), &out))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("no such folder"), "{e}");
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = import_omop(&opts(&empty, &out))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no table files"), "{e}");
        assert!(!out.exists());
    }

    fn write_parquet(path: &Path, batch: &RecordBatch) {
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    #[tokio::test]
    async fn spark_folders_and_uppercase_parquet() {
        use arrow::array::{Int32Array, Int64Array, StringArray};
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let parts = src.join("PERSON");
        std::fs::create_dir_all(&parts).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("PERSON_ID", DataType::Int64, true),
            Field::new("Year_Of_Birth", DataType::Int32, true),
        ]));
        for (i, ids) in [[5i64, 1], [3, 2]].iter().enumerate() {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.to_vec())),
                    Arc::new(Int32Array::from(vec![1950, 1960])),
                ],
            )
            .unwrap();
            write_parquet(
                &parts.join(format!("part-0000{i}-abc.snappy.parquet")),
                &batch,
            );
        }
        std::fs::write(parts.join("_SUCCESS"), b"").unwrap();
        std::fs::write(parts.join(".part-00000-abc.snappy.parquet.crc"), b"crc").unwrap();
        let custom = Arc::new(Schema::new(vec![Field::new("Note", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(custom, vec![Arc::new(StringArray::from(vec!["kept"]))]).unwrap();
        write_parquet(&src.join("Site-Notes.parquet"), &batch);

        let out = tmp.path().join("ds");
        let summary = import_omop(&opts(&src, &out)).await.unwrap();
        assert_eq!(
            summary.tables,
            vec![("person".to_string(), 4), ("site_notes".to_string(), 1)]
        );
        let person = read_all(&out.join("person"));
        let schema = person[0].schema();
        assert_eq!(schema.field(0).name(), "person_id");
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).name(), "year_of_birth");
        assert_eq!(schema.field(1).data_type(), &DataType::Int32);
        let catalog = strata_engine::Catalog::load(&out).unwrap();
        assert_eq!(
            catalog.tables["site_notes"].tier,
            strata_engine::Tier::Registered
        );
        assert_eq!(catalog.tables["site_notes"].domain, "other");
    }

    #[test]
    fn import_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let o = opts(Path::new("a"), Path::new("b"));
        assert_send(&import_omop(&o));
    }

    #[test]
    fn header_sniffing() {
        assert_eq!(
            split_header("a,\"b,c\",d", ',', true),
            vec!["a", "b,c", "d"]
        );
        assert_eq!(
            split_header("a\t\"b\tc", '\t', false),
            vec!["a", "\"b", "c"]
        );
        assert_eq!(table_name("Person Data"), "person_data");
        assert_eq!(format_of("PERSON.CSV").map(|f| f.0), Some(Format::Csv));
        assert_eq!(
            format_of("person.snappy.parquet").map(|f| f.0),
            Some(Format::Parquet)
        );
        assert_eq!(format_of(".csv"), None);
    }
}
