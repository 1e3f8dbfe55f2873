use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster secret {path}: {reason}")]
    Secret { path: PathBuf, reason: String },
    #[error("invalid worker address {0:?}: write host:port or http://host:port")]
    WorkerAddress(String),
    #[error("cannot serve the worker on {addr}: {reason}")]
    Serve {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}
