use std::path::PathBuf;

use serde::Deserialize;

/// `[cluster]`: the workers this server coordinates (none: it executes alone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Worker addresses, `host:port` (`strata serve --workers` adds to them).
    pub workers: Vec<String>,
    /// The shared secret workers require of the coordinator. Default:
    /// `<state_dir>/cluster.key`, made by the coordinator when missing.
    pub secret_file: Option<PathBuf>,
    /// Parquet bytes per scan partition before a scan is spread over more worker tasks:
    /// a scan of B bytes runs as ceil(B / this / target_partitions) tasks (at most one per
    /// worker), so small scans stay on one worker.
    pub scan_bytes_per_partition: u64,
    /// Seconds to wait for a worker's connection before the query fails.
    pub connect_timeout_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            workers: Vec::new(),
            secret_file: None,
            scan_bytes_per_partition: 16 << 20,
            connect_timeout_secs: 5,
        }
    }
}
