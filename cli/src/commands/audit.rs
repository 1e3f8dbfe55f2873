//! `strata audit`: print a server's audit log, one line per request, filtered.

use std::path::PathBuf;

use strata_query::audit::{AuditQuery, print};
use strata_query::config::ServerConfig;

pub fn run(
    dataset: Option<PathBuf>,
    log: Option<PathBuf>,
    query: AuditQuery,
) -> anyhow::Result<()> {
    let path = match (log, dataset) {
        (Some(log), _) => log,
        (None, Some(dataset)) => ServerConfig::default().audit_path(&dataset),
        (None, None) => anyhow::bail!("give --dataset or --log"),
    };
    let shown = print(&path, &query)?;
    eprintln!("{shown} request(s)");
    Ok(())
}
