//! Complementary suppression by participant sets, within a result and across the results
//! released to one principal. Every released aggregate row has a participant set; the ledger
//! keeps, per principal, the sets already released. A new row is withheld when releasing it
//! would let a small group (1..=T participants) be solved:
//!
//! - its set differs from a released set by 1..=T participants (a total and the same total
//!   minus a few; overlapping filters; padding);
//! - the part of its set not covered by released subsets is 1..=T participants (a total whose
//!   parts are released but one);
//! - it is a part of a released total whose uncovered rest would shrink to 1..=T participants
//!   (the last released part of a line with one withheld part: the next-smallest cell).
//!
//! Rows are decided largest set first, ties by content, so the same sets with the same history
//! get the same decisions whatever order the engine produced them in; a repeated query (same
//! sets) is released again unchanged. Decisions depend only on the sets of released rows and of
//! the new rows, never on values.

use std::collections::HashMap;
use std::sync::Mutex;

use roaring::RoaringTreemap;

/// Sets kept per principal; the oldest go first beyond this.
const MAX_SETS_PER_PRINCIPAL: usize = 20_000;

#[derive(Debug, Default)]
pub struct ReleaseLedger {
    principals: Mutex<HashMap<String, History>>,
    /// Append-only record of every decision, fsynced before the result is released, so that a
    /// restart does not forget what a principal was given.
    file: Option<Mutex<std::fs::File>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    /// Principal key.
    p: String,
    /// `r`eleased or `w`ithheld.
    k: char,
    /// The participant set, serialized roaring bitmap, base64.
    s: String,
}

/// What one principal was given, and what it was refused.
#[derive(Debug, Default)]
struct History {
    released: Vec<RoaringTreemap>,
    withheld: Vec<RoaringTreemap>,
}

/// One row of a protected result.
pub struct Row {
    /// The row's participants (`None`: nothing to protect in it).
    pub set: Option<RoaringTreemap>,
    /// Whether its protected cells carry values (false: already suppressed).
    pub offered: bool,
}

impl ReleaseLedger {
    /// A ledger kept in `path` (created if absent, reloaded if present).
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        use base64::Engine;
        use std::io::BufRead;
        let mut principals: HashMap<String, History> = HashMap::new();
        if let Ok(f) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(f).lines() {
                let line = line?;
                // A torn last line (crash mid-append) was never acknowledged: skip it.
                let Ok(e) = serde_json::from_str::<Entry>(&line) else {
                    continue;
                };
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&e.s) else {
                    continue;
                };
                let Ok(set) = RoaringTreemap::deserialize_from(&bytes[..]) else {
                    continue;
                };
                let h = principals.entry(e.p).or_default();
                match e.k {
                    'r' => h.released.push(set),
                    _ => h.withheld.push(set),
                }
            }
        }
        for h in principals.values_mut() {
            for list in [&mut h.released, &mut h.withheld] {
                if list.len() > MAX_SETS_PER_PRINCIPAL {
                    let excess = list.len() - MAX_SETS_PER_PRINCIPAL;
                    list.drain(..excess);
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(ReleaseLedger {
            principals: Mutex::new(principals),
            file: Some(Mutex::new(file)),
        })
    }

    fn persist(&self, principal: &str, released: &[RoaringTreemap], withheld: &[RoaringTreemap]) {
        use base64::Engine;
        use std::io::Write;
        let Some(file) = &self.file else { return };
        let mut text = String::new();
        for (k, list) in [('r', released), ('w', withheld)] {
            for set in list {
                let mut bytes = Vec::with_capacity(set.serialized_size());
                if set.serialize_into(&mut bytes).is_err() {
                    continue;
                }
                let entry = Entry {
                    p: principal.to_string(),
                    k,
                    s: base64::engine::general_purpose::STANDARD.encode(bytes),
                };
                if let Ok(line) = serde_json::to_string(&entry) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        }
        if text.is_empty() {
            return;
        }
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.sync_data()) {
            tracing::error!(error = %e, "release ledger not written");
        }
    }

    /// Decides which rows may be released to `principal` and records what was released and
    /// what was withheld.
    pub fn decide(&self, principal: &str, rows: &[Row], threshold: u64) -> Vec<bool> {
        let mut ledger = self.principals.lock().unwrap_or_else(|p| p.into_inner());
        let history = ledger.entry(principal.to_string()).or_default();
        let mut release = vec![true; rows.len()];
        let mut released = std::mem::take(&mut history.released);
        let mut withheld = std::mem::take(&mut history.withheld);
        let first_withheld = withheld.len();
        for row in rows {
            if let (Some(set), false) = (&row.set, row.offered)
                && !set.is_empty()
                && !withheld.contains(set)
            {
                withheld.push(set.clone());
            }
        }
        let first_new = released.len();
        let mut order: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].offered && rows[i].set.is_some())
            .collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (rows[a].set.as_ref().unwrap(), rows[b].set.as_ref().unwrap());
            sb.len()
                .cmp(&sa.len())
                .then_with(|| sa.iter().cmp(sb.iter()))
        });
        for i in order {
            let set = rows[i].set.as_ref().unwrap();
            if set.is_empty() || released.contains(set) {
                continue;
            }
            let refs: Vec<&RoaringTreemap> = released.iter().collect();
            if derivable(set, &refs, &withheld, threshold) {
                release[i] = false;
                if !withheld.contains(set) {
                    withheld.push(set.clone());
                }
                continue;
            }
            released.push(set.clone());
        }
        // A later withholding can make an earlier release of this result solvable (a cell alone
        // with a withheld one in its line): revoke such releases until nothing changes.
        // Smallest first, so that a line gives up its smallest cells before its margin.
        loop {
            let mut newest: Vec<usize> = (first_new..released.len()).collect();
            newest.sort_by(|&a, &b| {
                let (sa, sb) = (&released[a], &released[b]);
                sa.len()
                    .cmp(&sb.len())
                    .then_with(|| sa.iter().cmp(sb.iter()))
            });
            let revoked = newest.into_iter().find(|&k| {
                let others: Vec<&RoaringTreemap> = released
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != k)
                    .map(|(_, r)| r)
                    .collect();
                derivable(&released[k], &others, &withheld, threshold)
            });
            let Some(k) = revoked else { break };
            let set = released.remove(k);
            for (i, row) in rows.iter().enumerate() {
                if row.set.as_ref() == Some(&set) {
                    release[i] = false;
                }
            }
            withheld.push(set);
        }
        let new_released: Vec<RoaringTreemap> = released[first_new..].to_vec();
        let new_withheld: Vec<RoaringTreemap> = withheld[first_withheld..].to_vec();
        for list in [&mut released, &mut withheld] {
            if list.len() > MAX_SETS_PER_PRINCIPAL {
                let excess = list.len() - MAX_SETS_PER_PRINCIPAL;
                list.drain(..excess);
            }
        }
        history.released = released;
        history.withheld = withheld;
        drop(ledger);
        self.persist(principal, &new_released, &new_withheld);
        release
    }
}

fn small(n: u64, threshold: u64) -> bool {
    (1..=threshold).contains(&n)
}

/// Whether a line (a total and parts of it) gives a protected group away: the participants
/// its parts leave uncovered are 1..=T (a bound on a small group), or its disjoint parts leave
/// exactly one withheld cell (solvable by subtraction, whatever its size).
fn exposes(
    total: &RoaringTreemap,
    start: &RoaringTreemap,
    released: &[&RoaringTreemap],
    withheld: &[RoaringTreemap],
    threshold: u64,
) -> bool {
    let mut parts: Vec<&RoaringTreemap> = released
        .iter()
        .copied()
        .filter(|r| r.len() < total.len() && r.is_subset(total))
        .collect();
    if parts.is_empty() && start.is_empty() {
        return false;
    }
    let mut union = start.clone();
    for p in &parts {
        union |= *p;
    }
    if small((total - &union).len(), threshold) {
        return true;
    }
    // Largest first, each disjoint from what is taken: the parts whose counts add up.
    parts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.iter().cmp(b.iter())));
    let mut disjoint = start.clone();
    for p in parts {
        if p.is_disjoint(&disjoint) {
            disjoint |= p;
        }
    }
    if disjoint.is_empty() {
        return false;
    }
    let rest = total - &disjoint;
    let n = rest.len();
    n > 0 && withheld.iter().any(|w| w.len() == n && *w == rest)
}

fn derivable(
    set: &RoaringTreemap,
    released: &[&RoaringTreemap],
    withheld: &[RoaringTreemap],
    threshold: u64,
) -> bool {
    let n = set.len();
    // A released set 1..=T away (either direction).
    if released
        .iter()
        .any(|r| r.len().abs_diff(n) <= threshold && small((set ^ *r).len(), threshold))
    {
        return true;
    }
    // As a total, against its released parts.
    if exposes(set, &RoaringTreemap::new(), released, withheld, threshold) {
        return true;
    }
    // As a part of each released total, with the total's other released parts.
    released.iter().any(|total| {
        total.len() > n
            && set.is_subset(total)
            && exposes(total, set, released, withheld, threshold)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(range: std::ops::Range<u64>) -> RoaringTreemap {
        range.collect()
    }

    #[test]
    fn total_then_parts_withholds_the_next_smallest() {
        let ledger = ReleaseLedger::default();
        // Total of 100; parts 50, 35, 10 (primary-suppressed: not offered), 5 (idem).
        let total = set(0..100);
        let a = set(0..50);
        let b = set(50..85);
        let rows = vec![offered(a), offered(total), offered(b)];
        let d = ledger.decide("p", &rows, 20);
        // Total and the larger part go; the last part would leave 15 uncovered: withheld.
        assert_eq!(d, vec![true, true, false]);
    }

    #[test]
    fn differencing_across_queries() {
        let ledger = ReleaseLedger::default();
        assert_eq!(ledger.decide("p", &[offered(set(0..1000))], 20), vec![true]);
        // Same total minus 3 participants: refused.
        assert_eq!(
            ledger.decide("p", &[offered(set(3..1000))], 20),
            vec![false]
        );
        // Same set again: released again (deterministic).
        assert_eq!(ledger.decide("p", &[offered(set(0..1000))], 20), vec![true]);
        // Another principal has its own history.
        assert_eq!(ledger.decide("q", &[offered(set(3..1000))], 20), vec![true]);
        // Far enough away: fine.
        assert_eq!(ledger.decide("p", &[offered(set(0..500))], 20), vec![true]);
    }

    #[test]
    fn order_of_rows_does_not_matter() {
        let sets = [set(0..100), set(0..60), set(60..90)];
        let rows: Vec<Row> = sets.iter().cloned().map(offered).collect();
        let reversed: Vec<Row> = sets.iter().rev().cloned().map(offered).collect();
        let a = ReleaseLedger::default().decide("p", &rows, 20);
        let mut b = ReleaseLedger::default().decide("p", &reversed, 20);
        b.reverse();
        assert_eq!(a, b);
    }

    #[test]
    fn union_of_total_and_parts() {
        let rows = vec![
            Row {
                set: Some(set(61..66)),
                offered: false,
            },
            offered(set(40..61)),
            offered(set(0..66)),
            offered(set(0..40)),
        ];
        let d = ReleaseLedger::default().decide("p", &rows, 20);
        assert_eq!(d, vec![true, false, true, true]);
    }

    #[test]
    fn ledger_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("strata-ledger-{}", std::process::id()));
        let path = dir.join("released.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let ledger = ReleaseLedger::open(&path).unwrap();
            assert_eq!(ledger.decide("p", &[offered(set(0..1000))], 20), vec![true]);
        }
        let reopened = ReleaseLedger::open(&path).unwrap();
        assert_eq!(
            reopened.decide("p", &[offered(set(5..1000))], 20),
            vec![false]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn offered(set: RoaringTreemap) -> Row {
        Row {
            set: Some(set),
            offered: true,
        }
    }

    /// A 2x2 table with margins and one small cell: no withheld inner cell may be the only one
    /// withheld in a line whose total is released.
    #[test]
    fn two_by_two_with_margins() {
        let (x11, x12, x21, x22) = (set(0..10), set(10..60), set(60..110), set(110..200));
        let r1 = &x11 | &x12;
        let r2 = &x21 | &x22;
        let c1 = &x11 | &x21;
        let c2 = &x12 | &x22;
        let g = &r1 | &r2;
        let sets = [g, r1, r2, c1, c2, x12, x21, x22, x11];
        let rows: Vec<Row> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| Row {
                set: Some(s.clone()),
                offered: i != 8,
            })
            .collect();
        let d = ReleaseLedger::default().decide("p", &rows, 20);
        let shown = |i: usize| i != 8 && d[i];
        assert!(shown(0), "the grand total goes out");
        // Lines: (total, parts) by index.
        let lines = [
            (1, [8, 5]),
            (2, [6, 7]),
            (3, [8, 6]),
            (4, [5, 7]),
            (0, [1, 2]),
            (0, [3, 4]),
        ];
        for (total, parts) in lines {
            let hidden = parts.iter().filter(|&&p| !shown(p)).count();
            assert!(
                !shown(total) || hidden != 1,
                "line {total} {parts:?}: one hidden cell"
            );
        }
    }
}
