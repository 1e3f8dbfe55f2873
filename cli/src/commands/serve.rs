//! `strata serve`: open a dataset and serve it through every door until Ctrl-C or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use strata_engine::cache::CacheConfig;
use strata_engine::{Dataset, DatasetOptions};
use strata_passport::PassportVerifier;
use strata_query::config::ServerConfig;
use strata_query::{Authenticator, QueryService};
use tracing::info;

use crate::ServerArgs;

pub async fn serve(
    dataset_dir: &Path,
    args: &ServerArgs,
    banner: Option<String>,
) -> anyhow::Result<()> {
    let options = DatasetOptions {
        cache: CacheConfig {
            memory_bytes: args.cache_memory_mb << 20,
            disk_dir: args.cache_dir.clone(),
            disk_bytes: args.cache_disk_mb << 20,
        },
    };
    let config = ServerConfig::load(args.config.as_deref())?;
    let dataset = Arc::new(Dataset::open(dataset_dir, &options).await?);
    let auth = authenticator(args)?;
    let query = Arc::new(QueryService::open(dataset.clone(), &config, auth).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(listen = %local, dataset = %dataset.dir().display(), tables = dataset.tables().len(), "serving");
    if let Some(banner) = banner {
        println!("{}", banner.replace("{addr}", &local.to_string()));
    }
    strata_flight_server::serve(query, listener, async {
        shutdown_signal().await;
        info!("shutting down");
    })
    .await
}

/// Passports against `--jwks`; without it, only a loopback development server whose every caller
/// is the local operator.
fn authenticator(args: &ServerArgs) -> anyhow::Result<Authenticator> {
    if let Some(jwks) = &args.jwks {
        let verifier = PassportVerifier::from_jwks_file(jwks, args.allow_anonymous)?;
        return Ok(Authenticator::passports(verifier));
    }
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {} without --jwks: only loopback may run without passports",
            args.listen
        );
    }
    tracing::warn!(
        "no --jwks: passports are not checked; every caller on loopback is the local operator"
    );
    Ok(Authenticator::OpenLoopback)
}

/// Ctrl-C or SIGTERM (what service managers send): stop accepting, finish in-flight calls.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
