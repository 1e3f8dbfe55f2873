//! Strata's gRPC door: Arrow Flight SQL and the CohortService, with health and reflection.
//! Every call is decoded into a query-service call, answered by `strata_query`, and encoded;
//! errors become gRPC statuses in one place (`error.rs`). No policy lives here.

mod auth;
mod call;
mod cohort_service;
mod error;
mod linger;
mod sql;
mod xdbc;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use futures::TryStreamExt;
use strata_proto::strata::v1::cohort_service_server::CohortServiceServer;
use strata_query::QueryService;
use strata_query::config::TlsSettings;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use cohort_service::Cohorts;
pub use sql::StrataFlightSql;

/// gRPC messages from clients (parameters, handshakes) are small; results stream out in chunks.
const MAX_DECODING_MESSAGE: usize = 16 << 20;

/// Serves Flight SQL and the CohortService on `listener` until `shutdown` completes, over TLS
/// when `[tls]` names a certificate.
pub async fn serve(
    query: Arc<QueryService>,
    listener: tokio::net::TcpListener,
    tls: &TlsSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // Every call is a request span from before its passport is checked (`auth` is a child).
    let mut server = tonic::transport::Server::builder().trace_fn(|request| {
        let path = request.uri().path();
        // Probes and discovery are not requests worth a trace.
        if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
            return tracing::Span::none();
        }
        let door = if path.starts_with("/strata.") {
            "cohort"
        } else {
            "flight"
        };
        let operation = path.rsplit('/').next().unwrap_or(path);
        strata_telemetry::request_span(door, operation, |name| {
            request.headers().get(name).and_then(|v| v.to_str().ok())
        })
    });
    if let Some(config) = server_tls(tls)? {
        server = server
            .tls_config(config)
            .context("invalid [tls] certificate, key or client CA")?;
    }
    let flight = FlightServiceServer::new(StrataFlightSql::new(query.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FlightServiceServer<StrataFlightSql>>()
        .await;
    health_reporter
        .set_serving::<CohortServiceServer<Cohorts>>()
        .await;
    let flight = InterceptedService::new(flight, auth::interceptor(query.clone(), "flight"));
    let cohorts = InterceptedService::new(
        CohortServiceServer::new(Cohorts::new(query.clone())),
        auth::interceptor(query, "cohort"),
    );
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
    let closing = tokio_util::task::TaskTracker::new();
    let incoming = TcpIncoming::from(listener)
        // Nagle with delayed ACKs stalls small gRPC frames ~40 ms per round trip.
        .with_nodelay(Some(true))
        .map_ok({
            let closing = closing.clone();
            move |stream| linger::Lingering::new(stream, closing.clone())
        });
    let served = server
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(flight)
        .add_service(cohorts)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("server failed");
    // The last connections deliver their tails before the process may exit.
    closing.close();
    let _ = tokio::time::timeout(linger::LINGER, closing.wait()).await;
    served
}

/// The TLS of a listener from `[tls]` (none without a certificate), its files read and parsed
/// now: a certificate, key or client CA that cannot be read or does not decode stops the start.
/// The Flight door's, and a cluster worker's (`strata worker`).
pub fn server_tls(tls: &TlsSettings) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let Some(identity) = identity(tls)? else {
        return Ok(None);
    };
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        // Mutual TLS: a client without a certificate from this CA never reaches a handler.
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .context("invalid [tls] certificate, key or client CA")?;
    Ok(Some(config))
}

fn identity(tls: &TlsSettings) -> anyhow::Result<Option<tonic::transport::Identity>> {
    let (cert, key) = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => anyhow::bail!("[tls] needs both cert and key"),
    };
    Ok(Some(tonic::transport::Identity::from_pem(
        read(cert)?,
        read(key)?,
    )))
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
