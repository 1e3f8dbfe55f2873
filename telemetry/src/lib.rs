//! What the operator sees of a running server: the log on stderr, OpenTelemetry traces over
//! OTLP/gRPC, and a Prometheus endpoint. `[telemetry]` in the server config turns the last two on;
//! without it the server only logs. What is measured is decided where it happens (the query
//! service counts queries, the engine its cache); this crate only wires the outputs.

use std::net::SocketAddr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// `[telemetry]`: everything off unless set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/gRPC collector for traces (`http://host:4317`); no traces without it.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the traces.
    pub service_name: String,
    /// Fraction of requests traced (children follow their request's decision).
    pub sample_ratio: f64,
    /// Where Prometheus scrapes `/metrics`; no endpoint without it.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            service_name: "strata".into(),
            sample_ratio: 1.0,
            metrics_listen: None,
        }
    }
}

impl TelemetrySettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("telemetry.sample_ratio must be between 0 and 1".into());
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!(
                "telemetry.otlp_endpoint must be an http:// or https:// URL, not {endpoint:?}"
            ));
        }
        if self.service_name.is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot start the OTLP trace exporter for {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("cannot serve metrics on {addr}: {message}")]
    Metrics { addr: SocketAddr, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] sends what is still buffered.
#[must_use]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: the log (filtered by `STRATA_LOG`, default `info`) and, with
/// an endpoint, the trace exporter. Call inside the Tokio runtime: the gRPC exporter's channel
/// runs on it.
pub fn init(format: LogFormat, settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    let traces = settings
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| trace_provider(endpoint, settings))
        .transpose()?;
    // Only Strata's own spans become traces: the exporter's gRPC client (tonic, h2) would
    // otherwise trace its own exports, and DataFusion's internals are not requests.
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("strata"))
            .with_filter(Targets::new().with_target("strata", LevelFilter::INFO))
    });
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => log
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => log
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
    };
    Registry::default().with(log).with(otel).init();
    Ok(Telemetry { traces })
}

fn trace_provider(
    endpoint: &str,
    settings: &TelemetrySettings,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

impl Telemetry {
    /// Sends the spans still buffered; a collector that is down costs at most a few seconds.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "traces not all sent at shutdown");
        }
    }
}

/// Serves the Prometheus text format on `addr` (`GET /metrics`, or any path) from the global
/// `metrics` recorder. Call inside the Tokio runtime.
pub fn serve_metrics(addr: SocketAddr) -> Result<(), TelemetryError> {
    let failed = |e: metrics_exporter_prometheus::BuildError| TelemetryError::Metrics {
        addr,
        message: e.to_string(),
    };
    // Histograms with buckets (aggregatable across servers), not client-side quantiles: from a
    // millisecond point lookup to a query at its 15-minute limit.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0, 900.0,
        ])
        .map_err(failed)?
        .install()
        .map_err(failed)
}

/// The root span of one request through a door: `door` and `operation` name it; a W3C
/// `traceparent` the caller sent (gRPC metadata) makes it a child of the caller's trace, so a
/// service that calls Strata sees the query inside its own request.
pub fn request_span<'a>(
    door: &'static str,
    operation: &str,
    header: impl Fn(&str) -> Option<&'a str>,
) -> tracing::Span {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        parent: None,
        "request",
        otel.name = format!("{door} {operation}"),
        otel.kind = "server",
        door,
        operation,
    );
    if let Some(traceparent) = header("traceparent") {
        let carrier = Carrier {
            traceparent,
            tracestate: header("tracestate"),
        };
        let parent =
            opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
        // Without the trace layer (no endpoint set) there is nothing to attach to.
        let _ = span.set_parent(parent);
    }
    span
}

struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl opentelemetry::propagation::Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}
