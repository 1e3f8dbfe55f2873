//! The release ledger's journal on disk: one JSON line per participant set released to or
//! withheld from a principal, fsynced before the result carrying it leaves, read back at
//! start-up so that a restart does not forget what anyone was given.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roaring::RoaringTreemap;
use strata_planner::disclosure::release::{LedgerJournal, Recorded, ReleaseLedger};

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    /// Principal key.
    p: String,
    /// `r`eleased or `w`ithheld.
    k: char,
    /// The participant set, serialized roaring bitmap, base64.
    s: String,
}

#[derive(Debug)]
pub struct FileJournal {
    file: Mutex<std::fs::File>,
}

/// The ledger kept in `path` (created if absent, its history reloaded if present).
pub fn open_ledger(path: &Path, budget: u64) -> std::io::Result<ReleaseLedger> {
    let history = read_history(path)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // A torn last line must not swallow the next record: start it on a line of its own.
    if ends_mid_line(path)? {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    let journal = Arc::new(FileJournal {
        file: Mutex::new(file),
    });
    Ok(ReleaseLedger::restored(history, journal, budget))
}

fn ends_mid_line(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

fn read_history(path: &Path) -> std::io::Result<Vec<Recorded>> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut history = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        // A torn last line (crash mid-append) was never acknowledged: skip it.
        let Ok(e) = serde_json::from_str::<Entry>(&line?) else {
            continue;
        };
        let Ok(bytes) = STANDARD.decode(&e.s) else {
            continue;
        };
        let Ok(set) = RoaringTreemap::deserialize_from(&bytes[..]) else {
            continue;
        };
        history.push(Recorded {
            principal: e.p,
            released: e.k == 'r',
            set,
        });
    }
    Ok(history)
}

impl LedgerJournal for FileJournal {
    fn record(
        &self,
        principal: &str,
        released: &[&RoaringTreemap],
        withheld: &[&RoaringTreemap],
    ) -> std::io::Result<()> {
        let mut text = String::new();
        for (k, list) in [('r', released), ('w', withheld)] {
            for set in list {
                let mut bytes = Vec::with_capacity(set.serialized_size());
                set.serialize_into(&mut bytes)?;
                let entry = Entry {
                    p: principal.to_string(),
                    k,
                    s: STANDARD.encode(bytes),
                };
                text.push_str(&serde_json::to_string(&entry)?);
                text.push('\n');
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_planner::disclosure::release::{DEFAULT_BUDGET_BYTES, Decision, Row, Rules};

    fn offered(range: std::ops::Range<u64>) -> Row {
        Row {
            set: Some(range.collect()),
            offered: true,
        }
    }

    fn released(d: Vec<Decision>) -> Vec<bool> {
        d.into_iter().map(Decision::released).collect()
    }

    #[test]
    fn ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("released.jsonl");
        {
            let ledger = open_ledger(&path, DEFAULT_BUDGET_BYTES).unwrap();
            let d = ledger.decide("p", &[offered(0..1000)], 20, Rules::Groups);
            assert_eq!(released(d.unwrap()), vec![true]);
        }
        // A torn last line (a crash mid-append) is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"p\":\"p\",\"k\":\"r\",\"s\":\"AAA")
            .unwrap();
        let reopened = open_ledger(&path, DEFAULT_BUDGET_BYTES).unwrap();
        // 995 of the 1,000 released before: the 5 left out would be solved.
        let d = reopened.decide("p", &[offered(5..1000)], 20, Rules::Groups);
        assert_eq!(released(d.unwrap()), vec![false]);
        // Another principal's history is its own.
        let d = reopened.decide("q", &[offered(5..1000)], 20, Rules::Groups);
        assert_eq!(released(d.unwrap()), vec![true]);
        drop(reopened);
        // What was recorded after the torn line is read back too.
        let again = open_ledger(&path, DEFAULT_BUDGET_BYTES).unwrap();
        let d = again.decide("q", &[offered(5..990)], 20, Rules::Groups);
        assert_eq!(released(d.unwrap()), vec![false]);
    }

    /// A journal that refuses while `failing` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        failing: std::sync::atomic::AtomicBool,
    }

    impl LedgerJournal for Flaky {
        fn record(
            &self,
            _principal: &str,
            _released: &[&RoaringTreemap],
            _withheld: &[&RoaringTreemap],
        ) -> std::io::Result<()> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::other("disk full"));
            }
            Ok(())
        }
    }

    /// A decision that cannot be made durable is not a release, and is not remembered either.
    #[test]
    fn an_unrecorded_decision_releases_nothing() {
        use std::sync::atomic::Ordering;
        use strata_planner::disclosure::release::LedgerError;
        let journal = Arc::new(Flaky::default());
        journal.failing.store(true, Ordering::SeqCst);
        let ledger = ReleaseLedger::restored(vec![], journal.clone(), DEFAULT_BUDGET_BYTES);
        let refused = ledger.decide("p", &[offered(0..1000)], 20, Rules::Groups);
        assert!(matches!(refused, Err(LedgerError::Journal(_))));
        journal.failing.store(false, Ordering::SeqCst);
        // 0..1000 never left, so 5..1000 differs from nothing released: released.
        let d = ledger.decide("p", &[offered(5..1000)], 20, Rules::Groups);
        assert_eq!(released(d.unwrap()), vec![true]);
        // And now that it is recorded, 0..1000 would reveal the 5 left out.
        let d = ledger.decide("p", &[offered(0..1000)], 20, Rules::Groups);
        assert_eq!(released(d.unwrap()), vec![false]);
    }
}
