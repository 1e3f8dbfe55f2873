//! `strata worker`: a cluster worker over a dataset, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_cluster::{ClusterSecret, WorkerPolicy, serve_worker};
use strata_engine::{Dataset, DatasetOptions};
use strata_query::config::ServerConfig;
use tracing::info;

pub async fn run(
    dataset_dir: &Path,
    listen: SocketAddr,
    secret_file: Option<PathBuf>,
    allow_plaintext_network: bool,
    config: &ServerConfig,
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() && !allow_plaintext_network {
        anyhow::bail!(
            "refusing to listen on {listen}: the cluster secret and plan fragments travel \
             unencrypted; on a private cluster network pass --allow-plaintext-network"
        );
    }
    let dataset = Arc::new(Dataset::open(dataset_dir, &DatasetOptions::default()).await?);
    let secret_path = secret_file.unwrap_or_else(|| config.cluster_secret_path(dataset.dir()));
    let secret = ClusterSecret::load(&secret_path)?;
    let policy = strata_query::registered_policy_of(&dataset, config, false).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        // Allowed above by --allow-plaintext-network.
        tracing::warn!(
            listen = %local,
            "the cluster secret and plan fragments travel unencrypted: keep workers on a \
             private network"
        );
    }
    info!(listen = %local, dataset = %dataset.dir().display(), "worker serving its coordinator");
    println!("strata worker listening on {local}");
    serve_worker(
        dataset,
        listener,
        secret,
        Some(WorkerPolicy(policy)),
        Duration::from_secs(config.cluster.connect_timeout_secs.max(1)),
        super::serve::shutdown_signal(),
    )
    .await?;
    info!("worker stopped");
    Ok(())
}
