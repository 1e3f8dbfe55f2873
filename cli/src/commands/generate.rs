//! `strata generate`: a deterministic synthetic dataset (same seed and arguments, same bytes).

use std::path::PathBuf;

use strata_testdata::generate::{GenerateOptions, generate};

pub async fn run(out: PathBuf, persons: u64, shards: u32, seed: u64) -> anyhow::Result<()> {
    let opts = GenerateOptions {
        out: out.clone(),
        persons,
        shards,
        seed,
        progress: true,
    };
    let summary = tokio::task::spawn_blocking(move || generate(&opts)).await??;
    let rows: u64 = summary.tables.iter().map(|t| t.1).sum();
    eprintln!(
        "wrote {} ({} tables, {rows} rows)",
        out.display(),
        summary.tables.len()
    );
    Ok(())
}
