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
    released: Mutex<HashMap<String, Vec<RoaringTreemap>>>,
}

impl ReleaseLedger {
    /// Decides which of `rows` (participant sets of one result's rows; `None` for rows with
    /// nothing to protect) may be released to `principal`, and records the released ones.
    pub fn decide(
        &self,
        principal: &str,
        rows: &[Option<RoaringTreemap>],
        threshold: u64,
    ) -> Vec<bool> {
        let mut ledger = self.released.lock().unwrap_or_else(|p| p.into_inner());
        let history = ledger.entry(principal.to_string()).or_default();
        let mut order: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_some()).collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (rows[a].as_ref().unwrap(), rows[b].as_ref().unwrap());
            sb.len()
                .cmp(&sa.len())
                .then_with(|| sa.iter().cmp(sb.iter()))
        });
        let mut release = vec![true; rows.len()];
        let mut released_now: Vec<RoaringTreemap> = Vec::new();
        for i in order {
            let set = rows[i].as_ref().unwrap();
            if set.is_empty() {
                continue;
            }
            let known = || history.iter().chain(released_now.iter());
            if derivable(set, known(), threshold) {
                release[i] = false;
                continue;
            }
            if !history.iter().chain(released_now.iter()).any(|r| r == set) {
                released_now.push(set.clone());
            }
        }
        history.extend(released_now);
        if history.len() > MAX_SETS_PER_PRINCIPAL {
            let excess = history.len() - MAX_SETS_PER_PRINCIPAL;
            history.drain(..excess);
        }
        release
    }
}

fn small(n: u64, threshold: u64) -> bool {
    (1..=threshold).contains(&n)
}

fn derivable<'a>(
    set: &RoaringTreemap,
    known: impl Iterator<Item = &'a RoaringTreemap> + Clone,
    threshold: u64,
) -> bool {
    let n = set.len();
    // A released set 1..=T away (either direction).
    let near = known
        .clone()
        .any(|r| r.len().abs_diff(n) <= threshold && small((set ^ r).len(), threshold));
    if near {
        return true;
    }
    // Released subsets leave a small rest of this set.
    let mut covered = RoaringTreemap::new();
    let mut any = false;
    for r in known.clone() {
        if r.len() < n && r.is_subset(set) {
            covered |= r;
            any = true;
        }
    }
    if any && small(n - covered.len(), threshold) {
        return true;
    }
    // This set is a part of a released total whose uncovered rest it would shrink to a small
    // group.
    for total in known.clone() {
        if total.len() <= n || !set.is_subset(total) {
            continue;
        }
        let mut covered = set.clone();
        for r in known.clone() {
            if r.len() < total.len() && r.is_subset(total) {
                covered |= r;
            }
        }
        if small(total.len() - covered.len(), threshold) {
            return true;
        }
    }
    false
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
        let rows = vec![Some(a), Some(total), Some(b)];
        let d = ledger.decide("p", &rows, 20);
        // Total and the larger part go; the last part would leave 15 uncovered: withheld.
        assert_eq!(d, vec![true, true, false]);
    }

    #[test]
    fn differencing_across_queries() {
        let ledger = ReleaseLedger::default();
        assert_eq!(ledger.decide("p", &[Some(set(0..1000))], 20), vec![true]);
        // Same total minus 3 participants: refused.
        assert_eq!(ledger.decide("p", &[Some(set(3..1000))], 20), vec![false]);
        // Same set again: released again (deterministic).
        assert_eq!(ledger.decide("p", &[Some(set(0..1000))], 20), vec![true]);
        // Another principal has its own history.
        assert_eq!(ledger.decide("q", &[Some(set(3..1000))], 20), vec![true]);
        // Far enough away: fine.
        assert_eq!(ledger.decide("p", &[Some(set(0..500))], 20), vec![true]);
    }

    #[test]
    fn order_of_rows_does_not_matter() {
        let rows = vec![Some(set(0..100)), Some(set(0..60)), Some(set(60..90))];
        let mut reversed = rows.clone();
        reversed.reverse();
        let a = ReleaseLedger::default().decide("p", &rows, 20);
        let mut b = ReleaseLedger::default().decide("p", &reversed, 20);
        b.reverse();
        assert_eq!(a, b);
    }
}
