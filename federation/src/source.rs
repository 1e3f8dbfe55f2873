//! One remote Flight SQL server: where it is, the credential Strata presents to it, and the
//! calls a scan makes (run a statement, fetch its streams).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{FederationError, Result};

/// Largest message accepted from a remote: a batch of wide rows passes tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How a remote source is reached, from its `[stores.NAME]` entry.
#[derive(Clone)]
pub struct SourceConfig {
    /// The store's name in the catalog: every message about the source uses it.
    pub name: String,
    /// `grpc://host:port` (also `grpc+tcp://`) or `grpc+tls://host:port`.
    pub url: String,
    /// Sent as `authorization: Bearer …` (a Strata passport, or the remote's own token).
    pub token: Option<String>,
    /// PEM file of the CA that signed the remote's certificate; the WebPKI roots when absent.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// How long the remote may take to plan a statement (a scan's stream then runs as long as
    /// the query may).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A connected (lazily: the channel reconnects by itself after the remote restarts) source.
pub struct FlightSqlSource {
    config: SourceConfig,
    channel: Channel,
    /// `host:port` of the source: the only location a result may be fetched from.
    authority: String,
}

impl std::fmt::Debug for FlightSqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(
            f,
            "FlightSqlSource({}, {})",
            self.config.name, self.config.url
        )
    }
}

/// A remote's result as it arrives, batch by batch.
pub type RemoteBatches = std::pin::Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

impl FlightSqlSource {
    pub fn new(config: SourceConfig) -> Result<Self> {
        let bad = |reason: String| FederationError::Config {
            store: config.name.clone(),
            reason,
        };
        let url = url::Url::parse(&config.url).map_err(|e| bad(format!("bad url: {e}")))?;
        let tls = match url.scheme() {
            "grpc" | "grpc+tcp" => false,
            "grpc+tls" => true,
            other => {
                return Err(bad(format!(
                    "unsupported scheme '{other}' (use grpc:// or grpc+tls://)"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| bad("the url has no host".into()))?;
        let port = url
            .port()
            .ok_or_else(|| bad("the url has no port".into()))?;
        let authority = format!("{host}:{port}");
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| bad(format!("bad url: {e}")))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if tls {
            let mut tls_config = ClientTlsConfig::new().domain_name(host);
            tls_config = match &config.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
                    tls_config.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls_config.with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls_config)
                .map_err(|e| bad(format!("TLS: {e}")))?;
        } else if config.token.is_some() && !is_loopback(host) {
            return Err(bad(
                "a credential is never sent in clear text to another machine: use grpc+tls://"
                    .into(),
            ));
        }
        Ok(FlightSqlSource {
            channel: endpoint.connect_lazy(),
            authority,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    fn client(&self) -> FlightSqlServiceClient<Channel> {
        let inner = FlightServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut client = FlightSqlServiceClient::new_from_inner(inner);
        if let Some(token) = &self.config.token {
            client.set_token(token.clone());
        }
        client
    }

    /// GetFlightInfo for `sql`, within the request timeout.
    async fn plan(&self, sql: String, for_operator: bool) -> Result<arrow_flight::FlightInfo> {
        let mut client = self.client();
        let call = client.execute(sql, None);
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Ok(answer) => {
                answer.map_err(|e| FederationError::from_flight(self.name(), e, for_operator))
            }
            Err(_) => {
                tracing::warn!(source = %self.name(), "a remote source did not plan in time");
                Err(FederationError::Unreachable {
                    store: self.name().to_string(),
                })
            }
        }
    }

    /// The columns of `SELECT * FROM table` as the remote declares them, without its metadata
    /// and all nullable (a remote's declared nullability is not a promise Strata can check
    /// before the rows arrive). Errors keep the remote's message: the operator reads them.
    pub async fn schema_of(&self, table: &str) -> Result<SchemaRef> {
        let sql = format!(
            "SELECT * FROM {} LIMIT 0",
            crate::pushdown::table_name(table)
        );
        let info = self.plan(sql, true).await?;
        let schema = info
            .try_decode_schema()
            .map_err(|e| self.protocol(format!("a schema that does not decode: {e}")))?;
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| {
                Arc::new(
                    f.as_ref()
                        .clone()
                        .with_nullable(true)
                        .with_metadata(Default::default()),
                )
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Runs `sql` on the remote and streams every endpoint of its result in order. Each
    /// batch must have `expected`'s column types; it is relabelled with `expected`.
    pub async fn run(self: Arc<Self>, sql: String, expected: SchemaRef) -> Result<RemoteBatches> {
        let info = self.plan(sql, false).await?;
        let mut tickets = Vec::with_capacity(info.endpoint.len());
        for endpoint in info.endpoint {
            if let Some(location) = endpoint.location.first()
                && !self.is_here(&location.uri)
            {
                // The credential goes to the source it was given for, nowhere else.
                tracing::warn!(source = %self.name(), location = %location.uri, "an endpoint elsewhere");
                return Err(self.protocol("an endpoint at another location, which is not followed"));
            }
            // An endpoint that cannot be fetched would leave its rows out of the answer.
            tickets.push(
                endpoint
                    .ticket
                    .ok_or_else(|| self.protocol("an endpoint without a ticket"))?,
            );
        }
        let source = self.clone();
        let batches = futures::stream::iter(tickets)
            .then(move |ticket| {
                let source = source.clone();
                async move {
                    let name = source.name().to_string();
                    let stream = source
                        .client()
                        .do_get(ticket)
                        .await
                        .map_err(|e| FederationError::from_flight(&name, e, false))?;
                    Ok::<_, FederationError>(
                        stream.map_err(move |e| FederationError::from_flight(&name, e, false)),
                    )
                }
            })
            .try_flatten();
        Ok(Box::pin(batches.map(move |batch| {
            relabel(batch?, &expected).map_err(|what| self.protocol(what))
        })))
    }

    fn is_here(&self, uri: &str) -> bool {
        if uri.starts_with("arrow-flight-reuse-connection://") {
            return true;
        }
        url::Url::parse(uri).is_ok_and(|u| {
            u.host_str()
                .zip(u.port())
                .is_some_and(|(h, p)| format!("{h}:{p}") == self.authority)
        })
    }

    fn protocol(&self, what: impl Into<String>) -> FederationError {
        FederationError::Protocol {
            store: self.name().to_string(),
            what: what.into(),
        }
    }
}

/// The batch with `expected`'s field names and nullability, if its column types are the same.
fn relabel(batch: RecordBatch, expected: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let columns = batch.columns();
    if columns.len() != expected.fields().len()
        || columns
            .iter()
            .zip(expected.fields())
            .any(|(c, f)| c.data_type() != f.data_type())
    {
        return Err("columns that differ from the schema it declared".into());
    }
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(expected.clone(), columns.to_vec(), &options)
        .map_err(|e| format!("a batch that does not fit its schema: {e}"))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
