//! An opened dataset: its catalog, the object stores its shards live on (remote ones behind the
//! cache tiers), one `ShardedTable` per table of files and one `RemoteTable` per table of a
//! remote Flight SQL source, and fresh query sessions over them.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore};
use tracing::info;
use url::Url;

use crate::cache::{CacheConfig, CacheSnapshot, CacheTiers, CachedStore};
use crate::catalog::{Catalog, LOCAL_STORE, Partitioning, StoreConfig, TableEntry};
use crate::error::{EngineError, Result};
use crate::layout::{contig_dir, shard_dir};
use crate::table::{ScanRecorder, Shard, ShardedTable};
use strata_federation::{FlightSqlSource, RemoteTable, SourceConfig};

pub const CATALOG_NAME: &str = "strata";
pub const SCHEMA_NAME: &str = "public";

#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    pub cache: CacheConfig,
}

pub struct Dataset {
    dir: PathBuf,
    catalog: Catalog,
    tables: BTreeMap<String, Arc<ShardedTable>>,
    /// Every table a query may name (files and remote sources alike), made once.
    providers: BTreeMap<String, Arc<dyn TableProvider>>,
    runtime: Arc<RuntimeEnv>,
    cache: Arc<CacheTiers>,
    fingerprint: String,
}

/// A store as DataFusion sees it: the URL it is registered under and the root path of the
/// dataset (or of the store's prefix) inside it.
struct ResolvedStore {
    url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
}

impl Dataset {
    pub async fn open(dir: &Path, options: &DatasetOptions) -> Result<Self> {
        let catalog = Catalog::load(dir)?;
        let dir = std::fs::canonicalize(dir).map_err(|e| EngineError::io(dir, e))?;
        let cache = CacheTiers::new(&options.cache)
            .map_err(|e| EngineError::InvalidInput(format!("cache folder: {e}")))?;
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        let mut stores = BTreeMap::new();
        let mut sources = BTreeMap::new();
        stores.insert(LOCAL_STORE.to_string(), local_store(&dir)?);
        for (name, config) in &catalog.stores {
            if config.is_flight_sql() {
                sources.insert(name.clone(), Arc::new(remote_source(name, config, &dir)?));
                continue;
            }
            let resolved = resolve_store(name, config, &dir, &cache)?;
            stores.insert(name.clone(), resolved);
        }
        for s in stores.values() {
            runtime.register_object_store(s.url.as_ref(), s.store.clone());
        }
        let state = SessionContext::new_with_config_rt(session_config(), runtime.clone()).state();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let mut tables = BTreeMap::new();
        let mut remote = BTreeMap::new();
        for (name, entry) in &catalog.tables {
            if let Some(source) = sources.get(&entry.store) {
                let remote_name = entry.path.as_deref().unwrap_or(name);
                let table = RemoteTable::open(source.clone(), remote_name)
                    .await
                    .map_err(|error| EngineError::Remote {
                        table: name.clone(),
                        error,
                    })?;
                if let Some(key) = &entry.person_key
                    && table.schema().column_with_name(key).is_none()
                {
                    return Err(EngineError::InvalidInput(format!(
                        "table {name}: the remote table {remote_name} has no column {key} \
                         (its person_key)"
                    )));
                }
                info!(table = %name, source = %entry.store, "remote table");
                remote.insert(name.clone(), Arc::new(table));
                continue;
            }
            let shards = list_shards(name, entry, &stores).await?;
            let Some(first) = shards
                .iter()
                .flat_map(|s| s.files.first().map(|f| (s, &f.object_meta)))
                .next()
            else {
                tracing::warn!(table = %name, "table has no files; left out");
                continue;
            };
            // Before any footer is read: see `check_footer`.
            check_footer(store_at(&stores, &first.0.store), first.1)
                .await
                .map_err(|e| EngineError::InvalidInput(format!("table {name}: {e}")))?;
            let schema = format
                .infer_schema(
                    &state as &dyn Session,
                    store_at(&stores, &first.0.store),
                    std::slice::from_ref(first.1),
                )
                .await
                .map_err(|e| {
                    EngineError::InvalidInput(format!(
                        "table {name}: cannot read {}: {}",
                        first.1.location,
                        crate::error::first_line(&e.to_string())
                    ))
                })?;
            let shards = with_statistics(&state, &format, &stores, shards, &schema)
                .await
                .map_err(|e| {
                    EngineError::InvalidInput(format!(
                        "table {name}: cannot read Parquet statistics: {}",
                        crate::error::first_line(&e.to_string())
                    ))
                })?;
            let table = ShardedTable::new(name.clone(), schema, entry.clone(), shards);
            tables.insert(name.clone(), Arc::new(table));
        }
        info!(dataset = %dir.display(), tables = tables.len() + remote.len(), "dataset opened");
        let fingerprint = fingerprint(&catalog, &tables, &remote);
        let providers = providers(&tables, &remote);
        Ok(Dataset {
            fingerprint,
            providers,
            dir,
            catalog,
            tables,
            runtime,
            cache,
        })
    }

    /// The catalog and every file a scan may read (store, path, size): two processes serving
    /// the same dataset have the same fingerprint, so a cluster worker can refuse plans made
    /// over other files than its own.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The object stores (cache tiers included) and spill folder every session of the dataset
    /// runs on; a cluster worker executes shipped fragments on the same.
    pub fn runtime(&self) -> &Arc<RuntimeEnv> {
        &self.runtime
    }

    /// The tables of files (the dataset's own, on its stores).
    pub fn tables(&self) -> &BTreeMap<String, Arc<ShardedTable>> {
        &self.tables
    }

    /// Every table a query may name, by name: files and remote sources alike.
    pub fn providers(&self) -> &BTreeMap<String, Arc<dyn TableProvider>> {
        &self.providers
    }

    pub fn cache_snapshot(&self) -> CacheSnapshot {
        self.cache.stats().snapshot()
    }

    /// A new query session with every table registered and a fresh scan recorder.
    pub fn session(&self) -> Result<(SessionContext, Arc<ScanRecorder>)> {
        self.session_with(|_, t| Some(t), None, Ok)
    }

    /// A new query session holding only the tables `visible` admits: a table a principal may
    /// not read is not in its session at all, so no SQL path can name it.
    /// A session holding, for each table, the provider `provider` picks (none: the table is
    /// left out of the session). With `memory`, the session's operators share a pool of that
    /// many bytes: past it, those that can spill to disk do, and the others fail with
    /// `ResourcesExhausted`. `finish` completes the session's state last (its query planner:
    /// the principal's policy, a cluster's distribution).
    pub fn session_with(
        &self,
        provider: impl Fn(&str, Arc<dyn TableProvider>) -> Option<Arc<dyn TableProvider>>,
        memory: Option<usize>,
        finish: impl FnOnce(SessionStateBuilder) -> datafusion::error::Result<SessionStateBuilder>,
    ) -> Result<(SessionContext, Arc<ScanRecorder>)> {
        let recorder = Arc::new(ScanRecorder::default());
        let mut config = session_config().with_extension(recorder.clone());
        let mut runtime = self.runtime.clone();
        if let Some(bytes) = memory {
            // A sort that spills merges its runs in memory it reserved up front (10 MiB by
            // default): in a small pool those reservations alone would fail the sort.
            // Every partition's sort reserves its own: a quarter of the pool in all.
            let partitions = config.target_partitions().max(1);
            let execution = &mut config.options_mut().execution;
            execution.sort_spill_reservation_bytes = execution
                .sort_spill_reservation_bytes
                .min(bytes / (4 * partitions));
            // The object stores, caches and spill folder stay the dataset's.
            let mut own = runtime.as_ref().clone();
            own.memory_pool = Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(bytes),
                NonZeroUsize::new(3).expect("nonzero"),
            ));
            runtime = Arc::new(own);
        }
        let builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_statistics_registry(crate::estimates::registry())
            .with_physical_optimizer_rule(Arc::new(crate::yields::YieldAfterJoins));
        let state = finish(builder)?.build();
        let ctx = SessionContext::new_with_state(state);
        for (name, table) in &self.providers {
            if let Some(p) = provider(name, table.clone()) {
                ctx.register_table(name.as_str(), p)?;
            }
        }
        Ok((ctx, recorder))
    }
}

/// The tables of files as they are, a remote source's with its scans recorded.
fn providers(
    tables: &BTreeMap<String, Arc<ShardedTable>>,
    remote: &BTreeMap<String, Arc<RemoteTable>>,
) -> BTreeMap<String, Arc<dyn TableProvider>> {
    let files = tables
        .iter()
        .map(|(n, t)| (n.clone(), t.clone() as Arc<dyn TableProvider>));
    let remote = remote.iter().map(|(n, t)| {
        let recorded = crate::remote::RecordedRemote {
            name: n.clone(),
            table: t.clone(),
        };
        (n.clone(), Arc::new(recorded) as Arc<dyn TableProvider>)
    });
    files.chain(remote).collect()
}

fn fingerprint(
    catalog: &Catalog,
    tables: &BTreeMap<String, Arc<ShardedTable>>,
    remote: &BTreeMap<String, Arc<RemoteTable>>,
) -> String {
    let mut text = toml::to_string(catalog).unwrap_or_default();
    for (name, table) in remote {
        text.push_str(&format!(
            "\n{name}\t{}\t{}",
            table.source().url(),
            table.schema()
        ));
    }
    for (name, table) in tables {
        for shard in table.shards() {
            for file in &shard.files {
                let meta = &file.object_meta;
                text.push_str(&format!(
                    "\n{name}\t{}\t{}\t{}",
                    shard.store.as_str(),
                    meta.location,
                    meta.size
                ));
            }
        }
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_information_schema(true);
    let parquet = &mut config.options_mut().execution.parquet;
    // Late materialization is chosen per scan (`ShardedTable::scan`, from the filter's
    // selectivity): DataFusion pushes a join's dynamic filters into every scan that has it on,
    // where they cost more than they save on unselective scans.
    parquet.pushdown_filters = false;
    parquet.reorder_filters = false;
    parquet.enable_page_index = true;
    parquet.bloom_filter_on_read = true;
    // Plain Utf8 keeps results readable by every Flight SQL client, old ODBC bridges included.
    parquet.schema_force_view_types = false;
    // Join order from `estimates::registry` (filters the footers cannot bound).
    config.options_mut().optimizer.use_statistics_registry = true;
    config
}

fn local_store(dir: &Path) -> Result<ResolvedStore> {
    Ok(ResolvedStore {
        url: ObjectStoreUrl::local_filesystem(),
        store: Arc::new(LocalFileSystem::new()),
        root: ObjectPath::from_filesystem_path(dir)
            .map_err(|e| EngineError::InvalidInput(format!("{}: {e}", dir.display())))?,
    })
}

fn resolve_store(
    name: &str,
    config: &StoreConfig,
    dataset: &Path,
    cache: &Arc<CacheTiers>,
) -> Result<ResolvedStore> {
    let bad = |why: String| EngineError::Catalog(format!("store '{name}': {why}"));
    if !config.url.contains("://") {
        let dir = dataset.join(&config.url);
        let mut s = local_store(&dir)?;
        s.url = store_url(name)?;
        return Ok(s);
    }
    let url = Url::parse(&config.url).map_err(|e| bad(format!("bad url: {e}")))?;
    match url.scheme() {
        "file" => {
            let dir = url.to_file_path().map_err(|_| bad("bad file url".into()))?;
            let mut s = local_store(&dir)?;
            s.url = store_url(name)?;
            Ok(s)
        }
        "s3" => {
            let bucket = url
                .host_str()
                .ok_or_else(|| bad("s3 url has no bucket".into()))?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &config.region {
                builder = builder.with_region(region);
            }
            if config.allow_http {
                builder = builder.with_allow_http(true);
            }
            if let Some(secs) = config.retry_timeout_secs {
                builder = builder.with_retry(object_store::RetryConfig {
                    retry_timeout: std::time::Duration::from_secs(secs),
                    ..Default::default()
                });
            }
            let s3 = builder
                .build()
                .map_err(|e| bad(crate::error::first_line(&e.to_string())))?;
            let namespace = format!("{name}:{}", config.url);
            let cached = CachedStore::new(Arc::new(s3), cache.clone(), namespace);
            Ok(ResolvedStore {
                url: store_url(name)?,
                store: Arc::new(cached),
                root: ObjectPath::from(url.path().trim_matches('/')),
            })
        }
        other => Err(bad(format!(
            "unsupported scheme '{other}' (use file:// or s3://)"
        ))),
    }
}

/// A remote Flight SQL source: its token read from the environment now, so a missing one stops
/// the server at start rather than failing every query.
fn remote_source(name: &str, config: &StoreConfig, dataset: &Path) -> Result<FlightSqlSource> {
    let bad = |why: String| EngineError::Catalog(format!("store '{name}': {why}"));
    let token = match &config.token_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            bad(format!(
                "token_env names {var}, which is not set in the server's environment"
            ))
        })?),
        None => None,
    };
    FlightSqlSource::new(SourceConfig {
        name: name.to_string(),
        url: config.url.clone(),
        token,
        ca_file: config.ca_file.as_ref().map(|f| dataset.join(f)),
        connect_timeout: std::time::Duration::from_secs(config.connect_timeout_secs.unwrap_or(10)),
        request_timeout: std::time::Duration::from_secs(config.request_timeout_secs.unwrap_or(60)),
    })
    .map_err(|e| EngineError::Catalog(e.to_string()))
}

/// Stores are registered under `strata-<name>://` so two stores on one bucket stay apart.
fn store_url(name: &str) -> Result<ObjectStoreUrl> {
    let host: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    Ok(ObjectStoreUrl::parse(format!("strata://{host}"))?)
}

async fn list_shards(
    name: &str,
    entry: &TableEntry,
    stores: &BTreeMap<String, ResolvedStore>,
) -> Result<Vec<Shard>> {
    let table_path = entry.path.clone().unwrap_or_else(|| name.to_string());
    let keys: Vec<(String, Option<String>)> = match &entry.partitioning {
        Partitioning::Person { shards } => (0..*shards)
            .map(|k| (k.to_string(), Some(shard_dir(k))))
            .collect(),
        Partitioning::Contig { contigs } => contigs
            .iter()
            .map(|c| (c.clone(), Some(contig_dir(c))))
            .collect(),
        Partitioning::Single => vec![(String::new(), None)],
    };
    let mut shards = Vec::with_capacity(keys.len());
    for (key, dir) in keys {
        let (store_name, path) = match entry.shard_locations.get(&key) {
            Some(loc) => {
                let (s, p) = loc.split_once(':').expect("validated in catalog");
                (s.to_string(), p.trim_matches('/').to_string())
            }
            None => (
                entry.store.clone(),
                match dir {
                    Some(d) => format!("{table_path}/{d}"),
                    None => table_path.clone(),
                },
            ),
        };
        let store = stores.get(&store_name).expect("validated in catalog");
        let prefix = join(&store.root, &path);
        let mut files: Vec<ObjectMeta> = store
            .store
            .list(Some(&prefix))
            .try_filter(|m| futures::future::ready(m.location.as_ref().ends_with(".parquet")))
            .try_collect()
            .await
            .map_err(|e| {
                EngineError::ObjectStore(format!(
                    "table {name} shard {key}: {}",
                    crate::error::first_line(&e.to_string())
                ))
            })?;
        if entry.partitioning == Partitioning::Single {
            // Only the table folder's own files, not those of a nested folder.
            files.retain(|m| m.location.parts().count() == prefix.parts().count() + 1);
        }
        files.sort_by(|a, b| a.location.cmp(&b.location));
        if files.is_empty() && !matches!(entry.partitioning, Partitioning::Single) {
            return Err(EngineError::InvalidInput(format!(
                "table {name}: shard {key} has no files at {store_name}:{prefix}"
            )));
        }
        shards.push(Shard {
            key,
            store: store.url.clone(),
            files: files
                .into_iter()
                .map(PartitionedFile::new_from_meta)
                .collect(),
        });
    }
    Ok(shards)
}

/// The object store registered under `url` (every shard's store is, when the dataset opens).
fn store_at<'a>(
    stores: &'a BTreeMap<String, ResolvedStore>,
    url: &ObjectStoreUrl,
) -> &'a Arc<dyn ObjectStore> {
    &stores
        .values()
        .find(|s| &s.url == url)
        .expect("store registered")
        .store
}

/// Each file's statistics (row count, sizes, column min/max and null counts) read from its
/// footer once at open, as a `ListingTable` would per query: files are pruned by them, and the
/// scan tells the optimizer its row count (`ShardedTable::scan`). The footers land in the
/// runtime's metadata cache on the way, so the first query reads none.
async fn with_statistics(
    state: &datafusion::execution::SessionState,
    format: &ParquetFormat,
    stores: &BTreeMap<String, ResolvedStore>,
    shards: Vec<Shard>,
    schema: &SchemaRef,
) -> datafusion::error::Result<Vec<Shard>> {
    let mut out = Vec::with_capacity(shards.len());
    for mut shard in shards {
        let store = store_at(stores, &shard.store);
        for file in &mut shard.files {
            check_footer(store, &file.object_meta)
                .await
                .map_err(datafusion::error::DataFusionError::Execution)?;
            // The file is named: an operator repairs a dataset one file at a time.
            let statistics = format
                .infer_stats(state, store, schema.clone(), &file.object_meta)
                .await
                .map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "{}: {}",
                        file.object_meta.location,
                        crate::error::first_line(&e.to_string())
                    ))
                })?;
            *file = file.clone().with_statistics(Arc::new(statistics));
        }
        out.push(shard);
    }
    Ok(out)
}

/// The footer's length must fit in the file before parquet reads it: parquet 59.3.2 subtracts
/// a length that points before the file's start without a check (push_decoder.rs:391), a panic
/// in debug builds and an out-of-range read in release ones.
async fn check_footer(store: &Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<(), String> {
    use object_store::ObjectStoreExt;
    let refuse = |why: String| format!("{}: {why}", meta.location);
    // The leading magic, the footer's length and the trailing magic.
    if meta.size < 12 {
        return Err(refuse(format!(
            "not a Parquet file ({} bytes, too short)",
            meta.size
        )));
    }
    let tail = store
        .get_range(&meta.location, meta.size - 8..meta.size)
        .await
        .map_err(|e| refuse(crate::error::first_line(&e.to_string())))?;
    if &tail[4..] != b"PAR1" {
        return Err(refuse("not a Parquet file (no PAR1 at its end)".into()));
    }
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer + 12 > meta.size {
        return Err(refuse(format!(
            "corrupt Parquet footer (its length, {footer} bytes, exceeds the file's {})",
            meta.size
        )));
    }
    Ok(())
}

fn join(root: &ObjectPath, rel: &str) -> ObjectPath {
    let mut parts: Vec<String> = root.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_string));
    ObjectPath::from_iter(parts)
}
