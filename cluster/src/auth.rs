//! The cluster secret: workers execute whatever plan they are sent, with their own access to
//! every shard, so they must take plans from the coordinator only. Every call to a worker —
//! the coordinator's and the workers' own, which read each other's stages — carries the secret,
//! and a worker refuses a call without it before decoding anything.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use url::Url;

use crate::error::ClusterError;

/// 32 random bytes, kept as 64 hex digits in a file only its owner reads.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret in `path` (a worker's: it never makes one, or two processes could each make
    /// their own).
    pub fn load(path: &Path) -> Result<Self, ClusterError> {
        let fail = |reason: String| ClusterError::Secret {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(
                "not found: start the coordinator first (it makes the secret) or pass the \
                 coordinator's --cluster-secret-file"
                    .into(),
            ),
            _ => fail(e.to_string()),
        })?;
        let text = text.trim();
        if text.len() < 32 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(fail(
                "expected at least 32 letters or digits on one line".into(),
            ));
        }
        Ok(ClusterSecret(text.into()))
    }

    /// The coordinator's secret: the one in `path`, or a new one written there.
    pub fn load_or_create(path: &Path) -> Result<Self, ClusterError> {
        if !path.exists() {
            strata_engine::fsutil::write_new_secret(path).map_err(|e| ClusterError::Secret {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Self::load(path)
    }

    fn header(&self) -> http::HeaderValue {
        let mut v =
            http::HeaderValue::from_str(&format!("Bearer {}", self.0)).expect("letters and digits");
        v.set_sensitive(true);
        v
    }

    /// A worker's check of every call: the coordinator's secret, compared in constant time.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let expected = format!("Bearer {}", self.0);
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "a Strata worker takes plans from its coordinator only",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Channels to the workers, one per worker and reused, each call carrying the secret; a worker
/// that does not answer within the connect timeout fails the query instead of hanging it. An
/// `https` worker is reached over TLS, its certificate verified against `[cluster] ca_file` for
/// the host of its address.
#[derive(Clone)]
pub(crate) struct AuthChannels {
    secret: ClusterSecret,
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
    channels: Arc<Mutex<HashMap<Url, Channel>>>,
}

impl AuthChannels {
    pub(crate) fn new(
        secret: ClusterSecret,
        connect_timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Self {
        AuthChannels {
            secret,
            connect_timeout,
            tls,
            channels: Default::default(),
        }
    }

    fn channel(&self, url: &Url) -> Result<Channel, DataFusionError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let bad = |e: &dyn std::fmt::Display| {
            DataFusionError::Configuration(format!("worker {url}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(&e))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if url.scheme() == "https" {
            let Some(tls) = &self.tls else {
                return Err(bad(
                    &"the workers speak TLS, and this node has no [cluster] ca_file to verify them",
                ));
            };
            // An IPv6 host without its brackets: the name its certificate must hold.
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(host))
                .map_err(|e| bad(&e))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for AuthChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        let channel = self.channel(url)?;
        let header = self.secret.header();
        let authorized = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<tonic::body::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, header.clone());
                request
            })
            .service(channel);
        Ok(create_worker_client(BoxCloneSyncChannel::new(authorized)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: Option<&str>) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        if let Some(h) = header {
            r.metadata_mut()
                .insert("authorization", h.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn a_worker_takes_its_coordinators_secret_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let secret = ClusterSecret::load_or_create(&path).unwrap();
        let again = ClusterSecret::load_or_create(&path).unwrap();
        assert_eq!(secret.0, again.0, "a second start keeps the secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner reads the secret");
        }
        let right = format!("Bearer {}", secret.0);
        assert!(secret.check(request(Some(&right))).is_ok());
        let mut wrong = right.clone();
        wrong.pop();
        wrong.push(if right.ends_with('0') { '1' } else { '0' });
        for h in [
            None,
            Some(""),
            Some(wrong.as_str()),
            Some(&right[..right.len() - 1]),
        ] {
            let e = secret.check(request(h)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
    }

    #[test]
    fn a_missing_or_short_secret_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ClusterSecret::load(&dir.path().join("none.key")).unwrap_err();
        assert!(
            missing.to_string().contains("start the coordinator first"),
            "{missing}"
        );
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc").unwrap();
        let e = ClusterSecret::load(&short).unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
    }
}
