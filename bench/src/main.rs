//! Plain-DataFusion baseline: the benchmark's queries over the very same Parquet files, with
//! DataFusion's stock `ListingTable` and default settings, timed in-process.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// Dataset folder (its table folders are read directly; catalog.toml only names them).
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long)]
    queries: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
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
    let ctx = SessionContext::new();
    for entry in std::fs::read_dir(&args.dataset)? {
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
