//! Which of one result's sets lie inside which: the relation that every check of a decision
//! asks about (a cell's totals, a total's parts, the lines of a withheld cell), found once per
//! result instead of once per question.
//!
//! A participant is in few of a result's cells (about nine of the 740 of a conditions-by-year
//! table), so a set's supersets are among the few cells holding its key (`Set::key`, one of its
//! elements): the exact postings of the keys name the candidates, and a subset test confirms
//! each. Asked of the history's index instead, every question scanned the result's sets (an
//! index has no postings until it holds thousands of sets), which made a fresh principal's
//! decision quadratic in the number of cells.

use roaring::RoaringTreemap;

use datafusion::common::HashMap;

use super::sets::Set;

/// A position in a nest: one distinct set of the result.
pub type Pos = u32;

pub struct Nest {
    /// The result's distinct non-empty sets.
    sets: Vec<Set>,
    /// Positions by `Set::fingerprint`.
    by_content: HashMap<u64, Vec<Pos>>,
    /// Each row's position (`None`: no set, or an empty one).
    rows: Vec<Option<Pos>>,
    /// Per position, the positions of the sets strictly containing it, ascending.
    around: Vec<Vec<Pos>>,
    /// Per position, the positions of the sets strictly inside it, ascending.
    inside: Vec<Vec<Pos>>,
}

impl Nest {
    /// The relation among the rows' sets; equal sets share a position.
    pub fn of(rows: &[Option<Set>]) -> Self {
        let mut nest = Nest {
            sets: Vec::new(),
            by_content: HashMap::new(),
            rows: Vec::with_capacity(rows.len()),
            around: Vec::new(),
            inside: Vec::new(),
        };
        for set in rows {
            let at = match set {
                Some(s) if !s.is_empty() => Some(nest.position(s).unwrap_or_else(|| {
                    let at = nest.sets.len() as Pos;
                    nest.by_content.entry(s.fingerprint()).or_default().push(at);
                    nest.sets.push(s.clone());
                    at
                })),
                _ => None,
            };
            nest.rows.push(at);
        }
        nest.relate();
        nest
    }

    fn relate(&mut self) {
        let keys: RoaringTreemap = self.sets.iter().filter_map(Set::key).collect();
        let mut holding: HashMap<u64, Vec<Pos>> = HashMap::new();
        for (at, set) in self.sets.iter().enumerate() {
            for x in &(set.bits() & &keys) {
                holding.entry(x).or_default().push(at as Pos);
            }
        }
        self.around = vec![Vec::new(); self.sets.len()];
        self.inside = vec![Vec::new(); self.sets.len()];
        for (at, set) in self.sets.iter().enumerate() {
            let key = set.key().expect("nest sets are not empty");
            for &u in &holding[&key] {
                if self.sets[u as usize].len() > set.len() && set.subset_of(&self.sets[u as usize])
                {
                    self.around[at].push(u);
                    // Positions are visited in order: each list stays ascending.
                    self.inside[u as usize].push(at as Pos);
                }
            }
        }
    }

    /// The number of distinct sets.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    pub fn set(&self, at: Pos) -> &Set {
        &self.sets[at as usize]
    }

    /// Row `row`'s position.
    pub fn at(&self, row: usize) -> Option<Pos> {
        self.rows[row]
    }

    /// The rows whose set is the one at `at`.
    pub fn rows_at(&self, at: Pos) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows.len()).filter(move |&row| self.rows[row] == Some(at))
    }

    /// The position of a set equal to `s`, if the result has one.
    pub fn position(&self, s: &Set) -> Option<Pos> {
        self.by_content
            .get(&s.fingerprint())?
            .iter()
            .copied()
            .find(|&at| self.sets[at as usize] == *s)
    }

    /// The sets strictly containing the one at `at`.
    pub fn around(&self, at: Pos) -> &[Pos] {
        &self.around[at as usize]
    }

    /// The sets strictly inside the one at `at`.
    pub fn inside(&self, at: Pos) -> &[Pos] {
        &self.inside[at as usize]
    }

    /// Whether the set at `a` lies strictly inside the one at `b`.
    pub fn strictly_inside(&self, a: Pos, b: Pos) -> bool {
        self.around[a as usize].binary_search(&b).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sets::testing::{numbers, set};
    use super::*;

    #[test]
    fn relations_equal_brute_force() {
        let mut next = numbers(3);
        // Nested chains, tables with margins, random sets, small sets, repeats and empties.
        let mut rows: Vec<Option<Set>> = Vec::new();
        for k in 1..40u64 {
            rows.push(Some(set((0..2_000).filter(|x| x % k == 0))));
            let size = 1 + next() % 300;
            rows.push(Some(set((0..size).map(|_| next() % 2_000))));
            rows.push(Some(set((0..(k % 6)).map(|_| next() % 2_000))));
            rows.push(Some(set((k * 50..k * 50 + 50).filter(|x| x % 3 != 0))));
        }
        rows.push(rows[7].clone());
        rows.push(None);
        let nest = Nest::of(&rows);
        for (row, s) in rows.iter().enumerate() {
            let Some(s) = s.as_ref().filter(|s| !s.is_empty()) else {
                assert_eq!(nest.at(row), None);
                continue;
            };
            let at = nest.at(row).expect("a non-empty set has a position");
            assert_eq!(nest.set(at), s);
            assert_eq!(nest.position(s), Some(at));
            assert!(nest.rows_at(at).any(|r| r == row));
        }
        for a in 0..nest.len() as Pos {
            let (sa, brute_around, brute_inside): (&Set, Vec<Pos>, Vec<Pos>) = (
                nest.set(a),
                (0..nest.len() as Pos)
                    .filter(|&b| {
                        let sb = nest.set(b).bits();
                        sb.len() > nest.set(a).len() && nest.set(a).bits().is_subset(sb)
                    })
                    .collect(),
                (0..nest.len() as Pos)
                    .filter(|&b| {
                        let sb = nest.set(b).bits();
                        sb.len() < nest.set(a).len() && sb.is_subset(nest.set(a).bits())
                    })
                    .collect(),
            );
            assert_eq!(nest.around(a), brute_around, "around {}", sa.len());
            assert_eq!(nest.inside(a), brute_inside, "inside {}", sa.len());
            for &b in &brute_around {
                assert!(nest.strictly_inside(a, b) && !nest.strictly_inside(b, a));
            }
        }
        assert!(nest.len() < rows.len(), "repeats share a position");
        assert_eq!(nest.position(&set([1_000_001])), None);
    }
}
