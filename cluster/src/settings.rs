use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::ClusterError;

/// `[cluster]`: the workers this server coordinates (none: it executes alone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Worker addresses, `host:port` (`strata serve --workers` adds to them).
    pub workers: Vec<String>,
    /// The shared secret workers require of the coordinator. Default:
    /// `<state_dir>/cluster.key`, made by the coordinator when missing.
    pub secret_file: Option<PathBuf>,
    /// Parquet bytes per scan partition before a scan is spread over more worker tasks:
    /// a scan of B bytes runs as ceil(B / this / target_partitions) tasks (at most one per
    /// worker), so small scans stay on one worker.
    pub scan_bytes_per_partition: u64,
    /// Seconds to wait for a worker's connection (and its TLS handshake) before the query fails.
    pub connect_timeout_secs: u64,
    /// The CA of the workers' certificates (each worker's `[tls]`): set, the workers speak TLS,
    /// and every call to one (the coordinator's, and the workers' own to each other) verifies
    /// the worker's certificate against it, for the host of the worker's address.
    pub ca_file: Option<PathBuf>,
    /// With `client_key`: the certificate presented to workers that require one (mutual TLS:
    /// their `[tls] client_ca`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            workers: Vec::new(),
            secret_file: None,
            scan_bytes_per_partition: 16 << 20,
            connect_timeout_secs: 5,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("[cluster] needs both client_cert and client_key".into());
        }
        if self.client_cert.is_some() && self.ca_file.is_none() {
            return Err(
                "[cluster] client_cert (mutual TLS) needs ca_file, the CA of the workers' \
                 certificates"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    /// TLS toward the workers (none without `ca_file`), its files read and checked now: an
    /// unreadable or malformed one stops the start instead of failing every query.
    pub fn client_tls(&self) -> Result<Option<ClientTlsConfig>, ClusterError> {
        let Some(ca) = &self.ca_file else {
            return Ok(None);
        };
        let pem = read("ca_file", ca)?;
        // tonic skips what is not a certificate: a CA file without one would fail every call.
        let certificates = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error("ca_file", ca, e.to_string()))?;
        if certificates.is_empty() {
            return Err(file_error("ca_file", ca, "holds no PEM certificate".into()));
        }
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .timeout(self.connect_timeout());
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(Identity::from_pem(
                read("client_cert", cert)?,
                read("client_key", key)?,
            ));
        }
        Endpoint::from_static("https://worker.invalid")
            .tls_config(tls.clone())
            .map_err(ClusterError::Tls)?;
        Ok(Some(tls))
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|e| file_error(key, path, e.to_string()))
}

fn file_error(key: &'static str, path: &Path, reason: String) -> ClusterError {
    ClusterError::TlsFile {
        key,
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_toward_the_workers_needs_a_ca_and_whole_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| ClusterSettings {
            ca_file: ca.map(|f| dir.path().join(f)),
            client_cert: cert.map(|f| dir.path().join(f)),
            client_key: key.map(|f| dir.path().join(f)),
            ..Default::default()
        };
        assert!(settings(None, None, None).client_tls().unwrap().is_none());
        let e = settings(Some("ca.pem"), Some("c.pem"), None).validate();
        assert!(e.unwrap_err().contains("both client_cert and client_key"));
        let e = settings(None, Some("c.pem"), Some("c.key")).validate();
        assert!(e.unwrap_err().contains("needs ca_file"));
        let e = settings(Some("ca.pem"), None, None)
            .client_tls()
            .unwrap_err();
        assert!(e.to_string().starts_with("[cluster] ca_file "), "{e}");
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let e = settings(Some("ca.pem"), None, None)
            .client_tls()
            .unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    }
}
