//! `strata worker`: a cluster worker over a dataset, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use strata_cluster::{ClusterSecret, WorkerNetwork, WorkerPolicy, serve_worker};
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
    let tls = strata_flight_server::server_tls(&config.tls)?;
    if !listen.ip().is_loopback() && tls.is_none() && !allow_plaintext_network {
        anyhow::bail!(
            "refusing to listen on {listen}: the cluster secret and plan fragments travel \
             unencrypted; give the worker a certificate ([tls] cert and key in its --config) or, \
             on a private cluster network, pass --allow-plaintext-network"
        );
    }
    check_cluster_tls(config)?;
    let peers = config.cluster.client_tls()?;
    let dataset = Arc::new(Dataset::open(dataset_dir, &DatasetOptions::default()).await?);
    let secret_path = secret_file.unwrap_or_else(|| config.cluster_secret_path(dataset.dir()));
    let secret = ClusterSecret::load(&secret_path)?;
    let encrypted = tls.is_some();
    let network = WorkerNetwork::new(secret, tls, peers, &config.cluster);
    let policy = strata_query::registered_policy_of(&dataset, config, false).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && !encrypted {
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
        network,
        Some(WorkerPolicy(policy)),
        super::serve::shutdown_signal(),
    )
    .await?;
    info!("worker stopped");
    Ok(())
}

/// A worker is called by its coordinator and by the other workers (which read each other's
/// outputs), and calls them: the same config speaks TLS both ways or neither, and a worker that
/// asks callers for a certificate has one to present.
fn check_cluster_tls(config: &ServerConfig) -> anyhow::Result<()> {
    match (config.tls.cert.is_some(), config.cluster.ca_file.is_some()) {
        (true, false) => anyhow::bail!(
            "[tls] makes this worker speak TLS: set [cluster] ca_file too (the CA of the \
             workers' certificates), for the outputs it reads from the other workers"
        ),
        (false, true) => anyhow::bail!(
            "[cluster] ca_file says the workers speak TLS, and this worker has no certificate: \
             set [tls] cert and key in its --config"
        ),
        _ => {}
    }
    if config.tls.client_ca.is_some() && config.cluster.client_cert.is_none() {
        anyhow::bail!(
            "[tls] client_ca makes the workers require a client certificate: set [cluster] \
             client_cert and client_key too, for the outputs this worker reads from the others"
        );
    }
    Ok(())
}
