//! Plain-DataFusion baseline: the benchmark's queries over the very same Parquet files, with
//! DataFusion's stock `ListingTable` and default settings, timed in-process. With `--engine
//! strata` the same queries run in-process on Strata's own tables (`Dataset::session`: sharded
//! providers, Strata's scan settings, no service, no policy, no Flight), which splits what the
//! engine costs from what the service and the wire cost.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

/// The allocator datafusion-cli ships with (and Strata's server uses): the baseline is DataFusion
/// as its own command line runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Dataset folder (its table folders are read directly; catalog.toml only names them).
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// `datafusion` (stock ListingTable) or `strata` (Strata's dataset, in-process).
    #[arg(long, default_value = "datafusion")]
    engine: String,
    /// Print each query's EXPLAIN ANALYZE (operators, rows, times) instead of timings.
    #[arg(long)]
    explain: bool,
}

#[derive(Deserialize)]
struct Query {
    name: String,
    sql: String,
}

#[derive(Serialize)]
struct Timing {
    name: String,
    rows: usize,
    times_ms: Vec<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let queries: Vec<Query> = serde_json::from_str(&std::fs::read_to_string(&args.queries)?)?;
    // The dataset stays open while its session runs: it owns the runtime the session uses.
    let (ctx, _dataset) = match args.engine.as_str() {
        "datafusion" => (listing_tables(&args.dataset).await?, None),
        "strata" => {
            let dataset = strata_engine::Dataset::open(&args.dataset, &Default::default()).await?;
            (dataset.session()?.0, Some(dataset))
        }
        other => anyhow::bail!("--engine {other}: use datafusion or strata"),
    };
    if args.explain {
        for q in &queries {
            let sql = format!("EXPLAIN ANALYZE {}", q.sql);
            let batches = ctx.sql(&sql).await?.collect().await?;
            println!(
                "== {}\n{}",
                q.name,
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
            );
        }
        return Ok(());
    }
    let mut out = Vec::new();
    for q in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        // One warm-up run, as for the other engines.
        for run in 0..=args.runs {
            let start = Instant::now();
            let batches: Vec<_> = ctx
                .sql(&q.sql)
                .await?
                .execute_stream()
                .await?
                .try_collect()
                .await?;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            rows = batches.iter().map(|b| b.num_rows()).sum();
            if run > 0 {
                times.push(ms);
            }
        }
        out.push(Timing {
            name: q.name.clone(),
            rows,
            times_ms: times,
        });
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// Stock DataFusion: a `ListingTable` per table folder, default settings.
async fn listing_tables(dataset: &std::path::Path) -> anyhow::Result<SessionContext> {
    let ctx = SessionContext::new();
    for entry in std::fs::read_dir(dataset)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.file_type()?.is_dir() || name.starts_with('.') {
            continue;
        }
        let path = format!("{}/", entry.path().display());
        ctx.register_parquet(&name, &path, ParquetReadOptions::default())
            .await
            .with_context(|| format!("register {name}"))?;
    }
    Ok(ctx)
}
