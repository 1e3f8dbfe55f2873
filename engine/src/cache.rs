//! Cache tiers in front of an object store: byte ranges (Parquet footers, page indexes and column
//! chunks alike) in memory, spilling to a bounded local-disk tier, with hit/miss counters per tier.
//!
//! Datasets are immutable once written (writers stage and rename), so a range of an object never
//! changes under a key of (path, size, range); the object size is part of the key so a replaced
//! file of another size never serves stale bytes.

use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use moka::future::Cache;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Sizes of the cache tiers.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub memory_bytes: u64,
    /// Local folder for the disk tier; `None` turns the disk tier off.
    pub disk_dir: Option<PathBuf>,
    pub disk_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 512 << 20,
            disk_dir: None,
            disk_bytes: 8 << 30,
        }
    }
}

/// Counters of every cache tier and of the store behind them, shared by all cached stores.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub memory_hits: AtomicU64,
    pub memory_misses: AtomicU64,
    pub disk_hits: AtomicU64,
    pub disk_misses: AtomicU64,
    pub store_gets: AtomicU64,
    pub store_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSnapshot {
    pub memory_hits: u64,
    pub memory_misses: u64,
    pub disk_hits: u64,
    pub disk_misses: u64,
    pub store_gets: u64,
    pub store_bytes: u64,
}

impl CacheStats {
    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            memory_misses: self.memory_misses.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            disk_misses: self.disk_misses.load(Ordering::Relaxed),
            store_gets: self.store_gets.load(Ordering::Relaxed),
            store_bytes: self.store_bytes.load(Ordering::Relaxed),
        }
    }
}

impl CacheSnapshot {
    pub fn since(&self, earlier: &CacheSnapshot) -> CacheSnapshot {
        CacheSnapshot {
            memory_hits: self.memory_hits - earlier.memory_hits,
            memory_misses: self.memory_misses - earlier.memory_misses,
            disk_hits: self.disk_hits - earlier.disk_hits,
            disk_misses: self.disk_misses - earlier.disk_misses,
            store_gets: self.store_gets - earlier.store_gets,
            store_bytes: self.store_bytes - earlier.store_bytes,
        }
    }
}

type Key = (Path, u64, u64);

/// The tiers themselves, shared by every store that is cached (one budget for the process).
pub struct CacheTiers {
    memory: Cache<Key, Bytes>,
    disk: Option<DiskTier>,
    stats: Arc<CacheStats>,
}

impl CacheTiers {
    pub fn new(config: &CacheConfig) -> std::io::Result<Arc<Self>> {
        let memory = Cache::builder()
            .weigher(|_k: &Key, v: &Bytes| v.len().min(u32::MAX as usize) as u32)
            .max_capacity(config.memory_bytes)
            .build();
        let disk = match &config.disk_dir {
            Some(dir) => Some(DiskTier::open(dir, config.disk_bytes)?),
            None => None,
        };
        Ok(Arc::new(CacheTiers {
            memory,
            disk,
            stats: Arc::new(CacheStats::default()),
        }))
    }

    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }
}

/// An `ObjectStore` that serves bounded range reads from the cache tiers and forwards the rest.
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    tiers: Arc<CacheTiers>,
    /// Distinguishes stores in cache keys and disk file names (bucket + prefix).
    namespace: String,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, tiers: Arc<CacheTiers>, namespace: String) -> Self {
        CachedStore {
            inner,
            tiers,
            namespace,
        }
    }

    async fn cached_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        let key: Key = (
            Path::from(format!("{}/{}", self.namespace, location)),
            range.start,
            range.end,
        );
        let stats = &self.tiers.stats;
        if let Some(bytes) = self.tiers.memory.get(&key).await {
            stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        stats.memory_misses.fetch_add(1, Ordering::Relaxed);
        if let Some(disk) = &self.tiers.disk {
            if let Some(bytes) = disk.get(&key).await {
                stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                self.tiers.memory.insert(key, bytes.clone()).await;
                return Ok(bytes);
            }
            stats.disk_misses.fetch_add(1, Ordering::Relaxed);
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let bytes = self
            .inner
            .get_opts(location, options)
            .await?
            .bytes()
            .await?;
        stats.store_gets.fetch_add(1, Ordering::Relaxed);
        stats
            .store_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if let Some(disk) = &self.tiers.disk {
            disk.put(&key, &bytes).await;
        }
        self.tiers.memory.insert(key, bytes.clone()).await;
        Ok(bytes)
    }

    fn count_passthrough(&self) {
        self.tiers.stats.store_gets.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cached({})", self.inner)
    }
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.namespace)
    }
}

fn is_plain_range(options: &GetOptions) -> Option<Range<u64>> {
    let plain = options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head;
    match (&options.range, plain) {
        (Some(GetRange::Bounded(r)), true) if r.end > r.start => Some(r.clone()),
        _ => None,
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(range) = is_plain_range(&options) else {
            self.count_passthrough();
            return self.inner.get_opts(location, options).await;
        };
        let bytes = self.cached_range(location, range.clone()).await?;
        // The caller knows the object (it asked for a bounded range of it); the meta returned
        // here carries what range readers use: location and a size covering the range.
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: range.start + bytes.len() as u64,
            e_tag: None,
            version: None,
        };
        let served = range.start..range.start + bytes.len() as u64;
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(bytes) }).boxed(),
            ),
            meta,
            range: served,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(self.cached_range(location, r.clone()).await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Bounded local-disk tier: one file per cached range, named by a hash of its key, evicted by
/// size (moka's weigher), found again after a restart by scanning the folder.
struct DiskTier {
    dir: PathBuf,
    index: moka::sync::Cache<u64, u64>,
}

impl DiskTier {
    fn open(dir: &FsPath, capacity: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let evict_dir = dir.to_path_buf();
        let index = moka::sync::Cache::builder()
            .weigher(|_k: &u64, size: &u64| (*size).min(u32::MAX as u64) as u32)
            .max_capacity(capacity)
            .eviction_listener(move |k: Arc<u64>, _v, cause| {
                if cause.was_evicted() {
                    let _ = std::fs::remove_file(evict_dir.join(format!("{:016x}.bin", *k)));
                }
            })
            .build();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(hex) = name.strip_suffix(".bin") else {
                continue;
            };
            let (Ok(hash), Ok(meta)) = (u64::from_str_radix(hex, 16), entry.metadata()) else {
                continue;
            };
            index.insert(hash, meta.len());
        }
        Ok(DiskTier {
            dir: dir.to_path_buf(),
            index,
        })
    }

    fn hash(key: &Key) -> u64 {
        let text = format!("{}\u{0}{}\u{0}{}", key.0, key.1, key.2);
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    fn file(&self, hash: u64) -> PathBuf {
        self.dir.join(format!("{hash:016x}.bin"))
    }

    async fn get(&self, key: &Key) -> Option<Bytes> {
        let hash = Self::hash(key);
        let size = self.index.get(&hash)?;
        let bytes = tokio::fs::read(self.file(hash)).await.ok()?;
        // A torn or foreign file is a miss, never wrong bytes.
        (bytes.len() as u64 == size && size == key.2 - key.1).then(|| Bytes::from(bytes))
    }

    async fn put(&self, key: &Key, bytes: &Bytes) {
        let hash = Self::hash(key);
        let path = self.file(hash);
        let tmp = path.with_extension("tmp");
        // Write-then-rename: a crash mid-write leaves a .tmp the scan ignores.
        if tokio::fs::write(&tmp, bytes).await.is_ok()
            && tokio::fs::rename(&tmp, &path).await.is_ok()
        {
            self.index.insert(hash, bytes.len() as u64);
            // moka evicts lazily; settle now so the folder never outgrows its bound.
            self.index.run_pending_tasks();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    async fn setup(disk: Option<PathBuf>) -> (Arc<dyn ObjectStore>, Arc<CacheTiers>) {
        let inner = Arc::new(InMemory::new());
        inner
            .put(
                &Path::from("a/b.parquet"),
                PutPayload::from(vec![7u8; 1000]),
            )
            .await
            .unwrap();
        let config = CacheConfig {
            memory_bytes: 1 << 20,
            disk_dir: disk,
            disk_bytes: 1 << 20,
        };
        let tiers = CacheTiers::new(&config).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(CachedStore::new(inner, tiers.clone(), "mem".into()));
        (store, tiers)
    }

    #[tokio::test]
    async fn second_read_of_a_range_is_a_memory_hit() {
        let (store, tiers) = setup(None).await;
        let p = Path::from("a/b.parquet");
        assert_eq!(store.get_range(&p, 10..20).await.unwrap().len(), 10);
        assert_eq!(
            store.get_range(&p, 10..20).await.unwrap(),
            Bytes::from(vec![7u8; 10])
        );
        let s = tiers.stats().snapshot();
        assert_eq!((s.memory_hits, s.memory_misses, s.store_gets), (1, 1, 1));
    }

    #[tokio::test]
    async fn disk_tier_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = Path::from("a/b.parquet");
        {
            let (store, _) = setup(Some(dir.path().to_path_buf())).await;
            store.get_range(&p, 0..100).await.unwrap();
        }
        let (store, tiers) = setup(Some(dir.path().to_path_buf())).await;
        assert_eq!(store.get_range(&p, 0..100).await.unwrap().len(), 100);
        let s = tiers.stats().snapshot();
        assert_eq!((s.disk_hits, s.store_gets), (1, 0));
    }
}
