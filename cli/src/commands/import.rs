//! `strata import omop` and `strata import vcf`: an operator's data into a dataset.

use std::path::PathBuf;

use strata_ingest::import_omop::{OmopImportOptions, import_omop};
use strata_ingest::import_vcf::{VcfImportOptions, import_vcf};

pub async fn omop(from: PathBuf, out: PathBuf, shards: u32) -> anyhow::Result<()> {
    let opts = OmopImportOptions {
        from,
        out: out.clone(),
        shards,
        progress: true,
    };
    let summary = import_omop(&opts).await?;
    eprintln!(
        "imported {} tables into {}",
        summary.tables.len(),
        out.display()
    );
    Ok(())
}

pub async fn vcf(from: PathBuf, out: PathBuf, samples: Option<PathBuf>) -> anyhow::Result<()> {
    let opts = VcfImportOptions {
        from,
        dataset: out.clone(),
        samples,
        progress: true,
    };
    let summary = tokio::task::spawn_blocking(move || import_vcf(&opts)).await??;
    eprintln!(
        "imported {} variants and {} genotypes into {}",
        summary.variants,
        summary.genotypes,
        out.display()
    );
    Ok(())
}
