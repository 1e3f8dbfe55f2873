//! The release ledger alone: how long deciding a result's rows takes for an aggregates-only
//! principal with an empty history and with a long one (a history reloaded from a ledger file,
//! as after a restart). Participant sets are random subsets of a population, sized like the
//! cells of research queries; each result partitions the population into groups, a few of them
//! small (primary-suppressed). Prints JSON; `bench/run.py` reports it.

use std::time::Instant;

use clap::Parser;
use roaring::RoaringTreemap;
use serde::Serialize;
use strata_planner::disclosure::release::{Row, Rules};

#[derive(Parser)]
struct Args {
    /// Participants in the population.
    #[arg(long, default_value_t = 100_000)]
    population: u64,
    /// Released sets in the long history.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Rows of the results decided.
    #[arg(long, value_delimiter = ',', default_value = "79,1000")]
    rows: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Serialize)]
struct Timing {
    rows: usize,
    history: usize,
    median_ms: f64,
}

/// SplitMix64: a deterministic stream without another dependency.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A result of `rows` disjoint groups over the population, each of a random share; every
/// twentieth group small (offered false, as primary suppression leaves it).
fn result_of(s: &mut Stream, population: u64, rows: usize) -> Vec<Row> {
    let mut groups = vec![RoaringTreemap::new(); rows];
    for person in 1..=population {
        let g = (s.next() % rows as u64) as usize;
        groups[g].insert(person);
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, set)| {
            if i % 20 == 19 {
                let small: RoaringTreemap = set.iter().take(5).collect();
                Row {
                    set: Some(small),
                    offered: false,
                }
            } else {
                Row {
                    set: Some(set),
                    offered: true,
                }
            }
        })
        .collect()
}

/// A ledger file holding `n` released sets of one principal, sized 20 to 5,000 participants.
fn history_file(s: &mut Stream, population: u64, n: usize) -> anyhow::Result<std::path::PathBuf> {
    use base64::Engine;
    use std::io::Write;
    let path = std::env::temp_dir().join(format!(
        "strata-ledger-bench-{}-{n}.jsonl",
        std::process::id()
    ));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for _ in 0..n {
        let size = 20 + s.next() % 4_981;
        let set: RoaringTreemap = (0..size).map(|_| 1 + s.next() % population).collect();
        let mut bytes = Vec::new();
        set.serialize_into(&mut bytes)?;
        let line = serde_json::json!({
            "p": "bench", "k": "r",
            "s": base64::engine::general_purpose::STANDARD.encode(bytes),
        });
        writeln!(out, "{line}")?;
    }
    // On disk before anything is timed: the first journal write's fsync would otherwise flush
    // the whole history file and be counted as a decision.
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(path)
}

/// The median time of `runs` calls of `decide`.
fn median_ms<E: std::error::Error + Send + Sync + 'static>(
    runs: usize,
    mut decide: impl FnMut() -> Result<(), E>,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        decide()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut s = Stream(20261206);
    let mut timings = Vec::new();
    let path = history_file(&mut s, args.population, args.history)?;
    let long = strata_query::open_ledger(&path, u64::MAX >> 20)?;
    for &rows in &args.rows {
        let result = result_of(&mut s, args.population, rows);
        // A fresh principal each run: its own empty history, journaled to a file as the
        // server journals every principal's decisions (and as the long history is).
        let fresh_path = std::env::temp_dir().join(format!(
            "strata-ledger-bench-{}-fresh.jsonl",
            std::process::id()
        ));
        let fresh_ledger = strata_query::open_ledger(&fresh_path, u64::MAX >> 20)?;
        let mut n = 0;
        let fresh = median_ms(args.runs, || {
            n += 1;
            fresh_ledger
                .decide(&format!("fresh-{n}"), &result, 20, Rules::Groups)
                .map(drop)
        })?;
        let _ = std::fs::remove_file(&fresh_path);
        timings.push(Timing {
            rows,
            history: 0,
            median_ms: fresh,
        });
        // New results (new sets) against the long history: a repeated result would be found
        // released already.
        let mut results: Vec<Vec<Row>> = (0..args.runs)
            .map(|_| result_of(&mut s, args.population, rows))
            .collect();
        let against_history = median_ms(args.runs, || {
            let next = results.pop().expect("one result per run");
            long.decide("bench", &next, 20, Rules::Groups).map(drop)
        })?;
        timings.push(Timing {
            rows,
            history: args.history,
            median_ms: against_history,
        });
    }
    let _ = std::fs::remove_file(&path);
    println!("{}", serde_json::to_string_pretty(&timings)?);
    Ok(())
}
