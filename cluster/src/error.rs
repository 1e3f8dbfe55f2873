use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster secret {path}: {reason}")]
    Secret { path: PathBuf, reason: String },
    #[error("invalid worker address {0:?}: write host:port or {1}://host:port")]
    WorkerAddress(String, &'static str),
    #[error("[cluster] {key} {path}: {reason}")]
    TlsFile {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("[cluster] ca_file, client_cert and client_key do not make a TLS configuration")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot serve the worker on {addr}: {reason}")]
    Serve {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}
