//! Runs the synthetic generator: `gen OUT [PERSONS] [SHARDS] [SEED]`, printing row counts,
//! elapsed time and the size on disk.
use std::path::{Path, PathBuf};
use std::time::Instant;

use strata_testdata::generate::{GenerateOptions, generate};

fn size_of(p: &Path) -> u64 {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| size_of(&e.unwrap().path()))
            .sum()
    } else {
        p.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(
        args.get(1)
            .expect("usage: gen OUT [PERSONS] [SHARDS] [SEED]"),
    );
    let arg = |i: usize, d: u64| {
        args.get(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(d)
    };
    let opts = GenerateOptions {
        out: out.clone(),
        persons: arg(2, 5_000),
        shards: arg(3, 4) as u32,
        seed: arg(4, 42),
        progress: true,
    };
    let start = Instant::now();
    match generate(&opts) {
        Ok(summary) => {
            let secs = start.elapsed().as_secs_f64();
            let mut total = 0;
            for (table, rows) in &summary.tables {
                println!("{table:26} {rows:>12}");
                total += rows;
            }
            println!("{:26} {total:>12}", "total rows");
            println!(
                "elapsed {secs:.1} s, {:.1} MB on disk",
                size_of(&out) as f64 / 1e6
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
