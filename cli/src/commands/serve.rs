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
    let pg = match args.pg_listen.or(config.pg.listen) {
        Some(addr) => {
            let door = strata_pgwire::Door::new(query.clone(), &config)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (PostgreSQL door)"))?;
            Some((door, listener))
        }
        None => None,
    };
    let pg_local = pg.as_ref().map(|(_, l)| l.local_addr()).transpose()?;
    // Flight last: a client that reaches it finds every door open.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(listen = %local, pg_listen = ?pg_local, dataset = %dataset.dir().display(), tables = dataset.tables().len(), "serving");
    if let Some(banner) = banner {
        let pg_addr = pg_local.map_or_else(|| "-".to_owned(), |a| a.to_string());
        println!(
            "{}",
            banner
                .replace("{addr}", &local.to_string())
                .replace("{pg_addr}", &pg_addr)
                .replace(
                    "{pg_host}",
                    &pg_local.map_or_else(String::new, |a| a.ip().to_string())
                )
                .replace("{pg_port}", &pg_local.map_or(0, |a| a.port()).to_string())
        );
    }
    // One shutdown signal for every door.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop.send(true);
    });
    let postgres = async {
        match pg {
            Some((door, listener)) => strata_pgwire::serve(door, listener, until_stopped()).await,
            None => Ok(()),
        }
    };
    let flight = strata_flight_server::serve(query.clone(), listener, &config.tls, until_stopped());
    let (flight, postgres) = tokio::join!(flight, postgres);
    flight.and(postgres)
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
