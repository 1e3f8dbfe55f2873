//! Exact postings of the elements of a few small sets: which cells hold each of them.
//!
//! The release ledger asks again and again which cells of a result contain a small one (a
//! suppressed cell's few participants): the minimal supersets that name its lines. A small set
//! has no sampled element for the sketches of `sets.rs` to rule cells out with, so each
//! question was a scan of every cell with a membership test per cell. The elements of the
//! small sets are known before any question is asked; filing each cell's share of them once
//! (a bitmap intersection per cell) answers every later question with an intersection of a few
//! short postings.

use std::collections::HashMap;

use roaring::RoaringTreemap;

use super::index::{Id, intersect};
use super::sets::Set;

/// Sets of up to this many elements are small: their elements are watched. (Larger ones have
/// sampled elements, which the sketches use.)
const SMALL: u64 = 64;

pub struct Members {
    /// The elements postings are kept for.
    universe: RoaringTreemap,
    /// Each element's filing sets, by position, ascending.
    postings: HashMap<u64, Vec<Id>>,
}

impl Members {
    /// Postings of the elements of the small sets among `watched`, over `cells` filed at their
    /// positions.
    pub fn of(watched: &[&Set], cells: &[&Set]) -> Self {
        let mut universe = RoaringTreemap::new();
        for s in watched.iter().filter(|s| s.len() <= SMALL) {
            universe |= s.bits();
        }
        let mut postings: HashMap<u64, Vec<Id>> = HashMap::new();
        if !universe.is_empty() {
            for (at, cell) in cells.iter().enumerate() {
                for x in &(cell.bits() & &universe) {
                    postings.entry(x).or_default().push(at as Id);
                }
            }
        }
        Members { universe, postings }
    }

    /// The positions of the cells holding every element of `s` (ascending), or `None` if
    /// `s` has an element outside the universe (or none at all): the caller must search.
    pub fn holding(&self, s: &Set) -> Option<Vec<Id>> {
        if s.is_empty() || !s.is_subset(&self.universe) {
            return None;
        }
        let mut postings: Vec<&[Id]> = Vec::with_capacity(s.len() as usize);
        for x in s.iter() {
            match self.postings.get(&x) {
                Some(p) => postings.push(p),
                None => return Some(Vec::new()),
            }
        }
        postings.sort_by_key(|p| p.len());
        let mut out = postings[0].to_vec();
        for p in &postings[1..] {
            if out.is_empty() {
                break;
            }
            out = intersect(&out, p);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sets::testing::{numbers, set};
    use super::*;

    #[test]
    fn holders_equal_brute_force() {
        let mut next = numbers(5);
        let sets: Vec<Set> = (0..300)
            .map(|k| match k % 3 {
                0 => set((0..1 + next() % 6).map(|_| next() % 400)),
                1 => set((0..next() % 300).map(|_| next() % 400)),
                _ => set((0..400).filter(|x| x % (1 + k % 7) == 0)),
            })
            .collect();
        let refs: Vec<&Set> = sets.iter().collect();
        let small: Vec<&Set> = sets.iter().filter(|s| s.len() <= 6).collect();
        let members = Members::of(&small, &refs);
        let brute = |s: &Set| -> Vec<Id> {
            (0..sets.len())
                .filter(|&at| s.subset_of(&sets[at]))
                .map(|at| at as Id)
                .collect()
        };
        for s in &small {
            if !s.is_empty() {
                assert_eq!(members.holding(s), Some(brute(s)));
            }
        }
        // Outside the universe: no answer, the caller searches.
        let large = sets.iter().find(|s| s.len() > 100).unwrap();
        assert_eq!(members.holding(large), None);
        assert_eq!(members.holding(&set([])), None);
    }
}
