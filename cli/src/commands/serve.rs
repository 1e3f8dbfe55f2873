//! `strata serve`: open a dataset and serve it through every door until Ctrl-C or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use strata_engine::cache::CacheConfig;
use strata_engine::{Dataset, DatasetOptions};
use strata_query::config::ServerConfig;
use strata_query::{Authenticator, QueryService};
use tracing::info;

use crate::ServerArgs;

pub async fn serve(
    dataset_dir: &Path,
    args: &ServerArgs,
    config: &ServerConfig,
    banner: Option<String>,
) -> anyhow::Result<()> {
    let options = DatasetOptions {
        cache: CacheConfig {
            memory_bytes: args.cache_memory_mb << 20,
            disk_dir: args.cache_dir.clone(),
            disk_bytes: args.cache_disk_mb << 20,
        },
    };
    let dataset = Arc::new(Dataset::open(dataset_dir, &options).await?);
    let auth = authenticator(args)?;
    let query = Arc::new(QueryService::open(dataset.clone(), config, auth).await?);
    if let Some(addr) = config.telemetry.metrics_listen {
        strata_telemetry::serve_metrics(addr)?;
        strata_query::metrics::describe();
        query.sample_metrics_every_second();
        info!(metrics_listen = %addr, "Prometheus metrics");
    }
    let pg = match args.pg_listen.or(config.pg.listen) {
        Some(addr) => {
            let door = strata_pgwire::Door::new(query.clone(), config)?;
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
    info!(listen = %local, pg_listen = ?pg_local, dataset = %dataset.dir().display(), tables = dataset.providers().len(), "serving");
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
    // One shutdown for every door: stop accepting, let the running queries finish (or stop
    // them at the end of the grace), then put the audit log on disk.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (drain, drained) = tokio::sync::watch::channel(false);
    let (close, closing) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let query = query.clone();
        async move {
            shutdown_signal().await;
            let grace_ends = tokio::time::Instant::now() + query.shutdown_grace();
            info!("shutting down: no new connections or queries");
            let _ = stop.send(true);
            query.shut_down().await;
            let _ = drain.send(true);
            // A query gives its turn back when its last batch is encoded, not when the client
            // has read it: the rest may wait in the connection's buffers for a slow reader. The
            // connections keep what is left of the grace to deliver it (a few seconds at least);
            // a client that stopped reading would otherwise hold the server open for ever.
            let floor = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            tokio::time::sleep_until(grace_ends.max(floor)).await;
            let _ = close.send(true);
        }
    });
    let postgres = async {
        match pg {
            Some((door, listener)) => {
                strata_pgwire::serve(door, listener, until(&stopped), until(&drained)).await
            }
            None => Ok(()),
        }
    };
    let flight = strata_flight_server::serve(query.clone(), listener, &config.tls, until(&stopped));
    let doors = async {
        let (flight, postgres) = tokio::join!(flight, postgres);
        flight.and(postgres)
    };
    let served = tokio::select! {
        served = doors => served,
        _ = until(&closing) => {
            tracing::warn!("connections still open at the end of the grace are closed");
            Ok(())
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), query.flush_audit())
        .await
        .is_err()
    {
        tracing::error!("the audit log did not reach the disk within 10 s");
    }
    served
}

fn until(flag: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut flag = flag.clone();
    async move {
        let _ = flag.wait_for(|set| *set).await;
    }
}

/// Passports against `--jwks`; without it, only a loopback development server whose every caller
/// is the local operator.
fn authenticator(args: &ServerArgs) -> anyhow::Result<Authenticator> {
    if let Some(jwks) = &args.jwks {
        return Ok(Authenticator::jwks_file(jwks, args.allow_anonymous)?);
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
pub(crate) async fn shutdown_signal() {
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
