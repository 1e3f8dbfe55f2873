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
use crate::cohort_service::Cohorts;
use crate::config::ServerConfig;
use crate::executor::Executor;
use crate::service::StrataFlightSql;
use strata_engine::Tier;
use strata_planner::passport::PassportVerifier;
use strata_planner::passport::dev::DevIssuer;
use strata_proto::strata::v1::cohort_service_server::CohortServiceServer;
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
    let config = ServerConfig::load(args.config.as_deref())?;
    let dataset = Arc::new(Dataset::open(dataset_dir, &options).await?);
    let executor = Arc::new(Executor::open(dataset.clone(), &config).await?);
    info!(audit_log = %executor.audit().path().display(), "audit log");
    let auth = match &args.jwks {
        Some(jwks) => Auth::Passports(
            PassportVerifier::from_jwks_file(jwks, args.allow_anonymous)?,
            crate::auth::passport_cache(),
        ),
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
    let flight = FlightServiceServer::new(StrataFlightSql::new(executor.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FlightServiceServer<StrataFlightSql>>()
        .await;
    let auth = Arc::new(auth);
    let flight =
        InterceptedService::new(flight, interceptor(auth.clone(), executor.audit().clone()));
    let cohorts = InterceptedService::new(
        CohortServiceServer::new(Cohorts::new(executor.clone())),
        interceptor(auth, executor.audit().clone()),
    );
    health_reporter
        .set_serving::<CohortServiceServer<Cohorts>>()
        .await;
    // Reflection lets generic clients (grpcurl, grpcio-reflection) discover the services.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("cannot build the reflection service")?;
    // v1alpha too: many clients (grpcio-reflection, older grpcurl) still speak only that.
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("cannot build the reflection service")?;

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
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flight)
        .add_service(cohorts)
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
    let home = std::env::current_dir()?.join(".strata");
    let dataset = home.join("demo");
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
    let keys_dir = home.join("keys");
    let issuer = crate::keys::ensure_keys(&keys_dir)?;
    let mut args = args.clone();
    if args.jwks.is_none() {
        args.jwks = Some(keys_dir.join("jwks.json"));
    }
    let tokens = demo_tokens(&issuer, &home.join("tokens"))?;
    let banner = DEMO_BANNER
        .replace("{tokens}", &tokens)
        .replace("{tokens_dir}", &home.join("tokens").display().to_string());
    serve(&dataset, &args, Some(banner)).await
}

/// Dev passports for each tier and egress mode, valid for a day, written to `dir/<name>.jwt`
/// and listed for the banner.
fn demo_tokens(issuer: &DevIssuer, dir: &Path) -> anyhow::Result<String> {
    use strata_planner::passport::dev::{TokenSpec, mint_passport};
    use strata_planner::principal::Egress;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = strata_planner::passport::now_unix();
    let kinds = [
        ("public", Tier::Public, None, "aggregates only"),
        (
            "registered",
            Tier::Registered,
            None,
            "shifted dates, generalized demographics",
        ),
        ("controlled", Tier::Controlled, None, "real dates, genomics"),
        (
            "controlled-aggregates",
            Tier::Controlled,
            Some(Egress::Aggregates),
            "a dashboard service account",
        ),
    ];
    let mut listing = String::new();
    for (name, tier, egress, what) in kinds {
        let mut spec = TokenSpec::new(tier, &format!("demo-{name}"), now);
        spec.egress = egress;
        spec.ttl_secs = 24 * 3600;
        let token = mint_passport(issuer, &spec);
        let path = dir.join(format!("{name}.jwt"));
        std::fs::write(&path, &token)
            .with_context(|| format!("cannot write {}", path.display()))?;
        listing.push_str(&format!("  {name:<22} ({what}): {}\n", path.display()));
    }
    Ok(listing)
}

const DEMO_BANNER: &str = r#"
Strata demo: a synthetic research-program dataset is served on grpc://{addr}

Every call needs a data passport. Dev passports (valid 24 h, re-made at each start):
{tokens}
Python (pip install adbc-driver-flightsql pyarrow pandas):

    import adbc_driver_flightsql.dbapi as flight_sql
    token = open("{tokens_dir}/registered.jwt").read()
    conn = flight_sql.connect("grpc://{addr}", db_kwargs={
        "adbc.flight.sql.authorization_header": "Bearer " + token})
    cur = conn.cursor()
    cur.execute("""
        SELECT c.concept_name, COUNT(DISTINCT co.person_id) AS persons
        FROM condition_occurrence co JOIN concept c ON c.concept_id = co.condition_concept_id
        GROUP BY c.concept_name ORDER BY persons DESC LIMIT 10""")
    print(cur.fetch_df())

R (install.packages(c("adbcdrivermanager", "adbcflightsql"))):

    library(adbcdrivermanager)
    token <- readLines("{tokens_dir}/registered.jwt", warn = FALSE)
    db <- adbc_database_init(adbcflightsql::adbcflightsql(), uri = "grpc://{addr}",
                             adbc.flight.sql.authorization_header = paste("Bearer", token))
    con <- adbc_connection_init(db)
    con |> read_adbc("SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1") |> as.data.frame()

Tables: person, observation_period, visit_occurrence, condition_occurrence, drug_exposure,
procedure_occurrence, measurement, observation, death, ds_survey, Fitbit tables (registered
tier), variant and genotype (controlled tier), and the vocabulary (concept, concept_ancestor,
concept_relationship: public). The audit log is in .strata/demo/.strata-server/audit.jsonl
(`strata audit --dataset .strata/demo`).
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
