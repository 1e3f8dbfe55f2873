//! `strata serve --config FILE`: the operator's settings, all optional, with defaults that are
//! safe for a single-machine deployment.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use strata_planner::disclosure::DisclosureSettings;
use strata_planner::registered::RegisteredSettings;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the server keeps its state: the date-shift secret and the audit log. Default:
    /// `<dataset>/.strata-server`.
    pub state_dir: Option<PathBuf>,
    pub registered: RegisteredSettings,
    pub egress: EgressSettings,
    pub audit: AuditSettings,
    pub disclosure: DisclosureSettings,
    pub pg: PgSettings,
    pub tls: TlsSettings,
    pub limits: crate::limits::LimitSettings,
    pub telemetry: strata_telemetry::TelemetrySettings,
    pub cluster: strata_cluster::ClusterSettings,
}

/// The PostgreSQL-wire door (`[pg]`): off unless `listen` (or `--pg-listen`) is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgSettings {
    pub listen: Option<std::net::SocketAddr>,
    /// Accounts that log in with SCRAM-SHA-256 instead of a passport password (dashboards,
    /// BI servers), each acting under a service passport with `aggregates` egress.
    pub service_accounts: Vec<ServiceAccount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    pub user: String,
    /// A PostgreSQL SCRAM verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// as in `pg_authid.rolpassword`): the password itself is never stored.
    pub scram: String,
    /// The service passport (a JWT file) the account acts under.
    pub passport: PathBuf,
}

/// TLS for the listeners (`[tls]`): a PEM certificate chain and its private key; with
/// `client_ca`, mutual TLS: every client must present a certificate that CA signed (on top of
/// its passport), and the PostgreSQL door refuses connections without TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("[tls] needs both cert and key".into());
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return Err("[tls] client_ca (mutual TLS) needs the server's cert and key too".into());
        }
        Ok(())
    }
}

/// Row-level result sizes that raise an alert, and the hard cap that stops a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    pub alert_rows: u64,
    pub alert_bytes: u64,
    pub max_rows: u64,
    pub max_bytes: u64,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            alert_rows: 100_000,
            alert_bytes: 256 << 20,
            max_rows: 10_000_000,
            max_bytes: 4 << 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Default: `<state_dir>/audit.jsonl`.
    pub path: Option<PathBuf>,
}

impl ServerConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(ServerConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let config: ServerConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "invalid config {}: {}",
                path.display(),
                e.message().lines().next().unwrap_or("")
            )
        })?;
        let e = &config.egress;
        if e.alert_rows > e.max_rows || e.alert_bytes > e.max_bytes {
            anyhow::bail!(
                "invalid config {}: egress alert thresholds must not exceed the caps",
                path.display()
            );
        }
        if let Err(e) = config.limits.validate() {
            anyhow::bail!("invalid config {}: {e}", path.display());
        }
        if let Err(e) = config.tls.validate() {
            anyhow::bail!("invalid config {}: {e}", path.display());
        }
        if let Err(e) = config.cluster.validate() {
            anyhow::bail!("invalid config {}: {e}", path.display());
        }
        if let Err(e) = config.telemetry.validate() {
            anyhow::bail!("invalid config {}: {e}", path.display());
        }
        if let Err(e) = config.disclosure.validate() {
            anyhow::bail!("invalid config {}: {e}", path.display());
        }
        if config.registered.max_age < 1 {
            anyhow::bail!(
                "invalid config {}: registered.max_age must be positive",
                path.display()
            );
        }
        Ok(config)
    }

    pub fn state_dir(&self, dataset: &Path) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| dataset.join(".strata-server"))
    }

    /// The secret a cluster's workers require of their coordinator.
    pub fn cluster_secret_path(&self, dataset: &Path) -> PathBuf {
        self.cluster
            .secret_file
            .clone()
            .unwrap_or_else(|| self.state_dir(dataset).join("cluster.key"))
    }

    pub fn audit_path(&self, dataset: &Path) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.state_dir(dataset).join("audit.jsonl"))
    }
}

/// The server secret keying the registered tier's date shift: 32 random bytes, made once and
/// kept (mode 0600) so offsets survive restarts; losing it re-shifts every date. Made when
/// missing only if `make` (a cluster worker reads its coordinator's and never makes one: it
/// would shift dates its own way).
pub fn read_or_make_date_shift_secret(state_dir: &Path, make: bool) -> anyhow::Result<[u8; 32]> {
    let path = state_dir.join("date-shift.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_secret(text.trim())
            .with_context(|| format!("{} is not a 64-digit hex secret", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !make => Err(anyhow::anyhow!(
            "no date-shift secret at {}: start the coordinator first (it makes it) and give \
             the worker the coordinator's state folder (--config)",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(strata_engine::fsutil::write_new_secret(&path)?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parse_secret(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
