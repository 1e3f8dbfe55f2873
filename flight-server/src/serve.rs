//! `strata serve` and `strata demo`: open a dataset and serve it until Ctrl-C.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use strata_engine::cache::CacheConfig;
use strata_engine::{Dataset, DatasetOptions};
use strata_testdata::generate::{GenerateOptions, generate};
use tonic::transport::server::TcpIncoming;
use tracing::info;

use crate::ServerArgs;
use crate::auth::{Auth, interceptor};
use crate::executor::Executor;
use crate::service::StrataFlightSql;
use strata_planner::passport::PassportVerifier;
use tonic::service::interceptor::InterceptedService;

/// gRPC messages from clients (parameters, handshakes) are small; results stream out in chunks.
const MAX_DECODING_MESSAGE: usize = 16 << 20;

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
    let dataset = Arc::new(Dataset::open(dataset_dir, &options).await?);
    let executor = Arc::new(Executor::new(dataset.clone()));
    let auth = match &args.jwks {
        Some(jwks) => Auth::Passports(PassportVerifier::from_jwks_file(
            jwks,
            args.allow_anonymous,
        )?),
        None => {
            if !args.listen.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to listen on {} without --jwks: only loopback may run without passports",
                    args.listen
                );
            }
            tracing::warn!(
                "no --jwks: passports are not checked; every caller on loopback is the local operator"
            );
            Auth::OpenLoopback
        }
    };
    let flight = FlightServiceServer::new(StrataFlightSql::new(executor))
        .max_decoding_message_size(MAX_DECODING_MESSAGE);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FlightServiceServer<StrataFlightSql>>()
        .await;
    let flight = InterceptedService::new(flight, interceptor(Arc::new(auth)));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(listen = %local, dataset = %dataset.dir().display(), tables = dataset.tables().len(), "serving");
    if let Some(banner) = banner {
        println!("{}", banner.replace("{addr}", &local.to_string()));
    }
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(flight)
        // Nagle with delayed ACKs stalls small gRPC frames ~40 ms per round trip.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                shutdown_signal().await;
                info!("shutting down");
            },
        )
        .await
        .context("server failed")?;
    Ok(())
}

pub async fn demo(persons: u64, args: &ServerArgs) -> anyhow::Result<()> {
    let dataset = std::env::current_dir()?.join(".strata").join("demo");
    if !dataset.join(strata_engine::catalog::CATALOG_FILE).exists() {
        eprintln!(
            "creating a synthetic dataset of {persons} participants in {}",
            dataset.display()
        );
        let opts = GenerateOptions {
            out: dataset.clone(),
            persons,
            shards: 4,
            seed: 42,
            progress: true,
        };
        tokio::task::spawn_blocking(move || generate(&opts)).await??;
    }
    serve(&dataset, args, Some(DEMO_BANNER.to_string())).await
}

const DEMO_BANNER: &str = r#"
Strata demo: a synthetic research-program dataset is served on grpc://{addr}

Python (pip install adbc-driver-flightsql pyarrow pandas):

    import adbc_driver_flightsql.dbapi as flight_sql
    conn = flight_sql.connect("grpc://{addr}")
    cur = conn.cursor()
    cur.execute("""
        SELECT c.concept_name, COUNT(DISTINCT co.person_id) AS persons
        FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_concept_id
        GROUP BY c.concept_name ORDER BY persons DESC LIMIT 10""")
    print(cur.fetch_df())

R (install.packages(c("adbcdrivermanager", "adbcflightsql"))):

    library(adbcdrivermanager)
    db <- adbc_database_init(adbcflightsql::adbcflightsql(), uri = "grpc://{addr}")
    con <- adbc_connection_init(db)
    con |> read_adbc("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1") |> as.data.frame()

Tables: person, observation_period, visit_occurrence, condition_occurrence, drug_exposure,
procedure_occurrence, measurement, observation, death, ds_survey, Fitbit tables, variant, genotype,
and the vocabulary (concept, concept_ancestor, concept_relationship).
Press Ctrl-C to stop.
"#;

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
