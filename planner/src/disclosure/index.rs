//! The sets a principal was given (or refused), indexed so that the ledger's questions about a
//! new set — which sets are inside it, which contain it, which have a given size — cost what
//! their answers hold rather than the length of the history.
//!
//! - Subsets of `s`: a set `r ⊆ s` has its filing key (one of its elements, `Set::key`) in
//!   `s`, so the candidates are the sets filed under `s`'s elements (walking `s`
//!   or the keys, whichever is shorter).
//! - Supersets of `s`: a set `u ⊇ s` holds every element of `s`, in particular `s`'s probes
//!   (sampled elements, `sets::sampled_elements`); the index keeps the postings of sampled elements, so
//!   the candidates are the intersection of the probes' postings. A set without a probe (a few
//!   dozen participants or fewer, rarely) falls back to the sets larger than it. Postings are
//!   built once the index holds `POSTINGS_FROM` sets: below that a scan of the sets' sketches
//!   is cheaper than filing every sampled element of every set (a fresh principal's result).
//! - Sizes: the sets of each cardinality.
//!
//! Candidates are confirmed by `Set::subset_of` (sketch, then bitmaps). Sets are never moved:
//! a removed set is dead in place, and its id stays valid.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::{Bound, Range, RangeInclusive};

use datafusion::common::HashMap;
use roaring::RoaringBitmap;

use super::sets::{Set, sampled_elements};

pub type Id = u32;

/// A set as filed under its key: what rules most candidates out without a visit to the set.
#[derive(Debug)]
struct Filed {
    id: Id,
    len: u64,
    /// `Set::minimum(1)`: a subset's is no smaller than its superset's.
    minimum: u64,
}

/// Sets below which supersets are found by a scan (see the module's comment).
const POSTINGS_FROM: usize = 4096;

#[derive(Debug)]
pub struct SetIndex {
    /// Sets from which postings are kept (`POSTINGS_FROM`; lower in tests).
    postings_from: usize,
    sets: Vec<Set>,
    dead: RoaringBitmap,
    by_len: BTreeMap<u64, Vec<Id>>,
    /// Sets by `Set::fingerprint`: equal sets share one.
    by_content: HashMap<u64, Vec<Id>>,
    by_key: HashMap<u64, Vec<Filed>>,
    /// Built once `POSTINGS_FROM` sets are filed. Sorted ids: the intersections that find
    /// candidates (`intersect`) cost a fifth of a merge of compressed bitmaps.
    postings: Option<HashMap<u64, Vec<Id>>>,
    /// Entries of the postings (4 bytes each), which the principal's budget counts with the
    /// sets.
    posting_entries: u64,
}

impl Default for SetIndex {
    fn default() -> Self {
        SetIndex {
            postings_from: POSTINGS_FROM,
            sets: Vec::new(),
            dead: RoaringBitmap::new(),
            by_len: BTreeMap::new(),
            by_content: HashMap::new(),
            by_key: HashMap::new(),
            postings: None,
            posting_entries: 0,
        }
    }
}

impl SetIndex {
    /// Files `set`; returns its id.
    pub fn insert(&mut self, set: Set) -> Id {
        let id = Id::try_from(self.sets.len()).expect("fewer than 2^32 sets per principal");
        self.by_len.entry(set.len()).or_default().push(id);
        self.by_content
            .entry(set.fingerprint())
            .or_default()
            .push(id);
        if let Some(key) = set.key() {
            self.by_key.entry(key).or_default().push(Filed {
                id,
                len: set.len(),
                minimum: set.minimum(1),
            });
        }
        self.sets.push(set);
        match &mut self.postings {
            Some(postings) => self.posting_entries += post(postings, id, &self.sets[id as usize]),
            None if self.sets.len() >= self.postings_from => {
                let mut postings = HashMap::new();
                for (id, set) in self.sets.iter().enumerate() {
                    self.posting_entries += post(&mut postings, id as Id, set);
                }
                self.postings = Some(postings);
            }
            None => {}
        }
        id
    }

    /// Marks a set removed (it stays in the postings, dead).
    pub fn remove(&mut self, id: Id) {
        self.dead.insert(id);
    }

    /// Forgets every set with id `next..` (decisions that could not be made durable).
    pub fn truncate(&mut self, next: Id) {
        if next >= self.next_id() {
            return;
        }
        for set in self.sets.drain(next as usize..) {
            let (len, key) = (set.len(), set.key());
            for ids in [
                self.by_len.get_mut(&len),
                self.by_content.get_mut(&set.fingerprint()),
            ]
            .into_iter()
            .flatten()
            {
                ids.retain(|&id| id < next);
            }
            if let Some(filed) = key.and_then(|k| self.by_key.get_mut(&k)) {
                filed.retain(|f| f.id < next);
            }
            let Some(postings) = &mut self.postings else {
                continue;
            };
            for x in sampled_elements(set.bits()) {
                if let Some(p) = postings.get_mut(&x) {
                    let kept = p.partition_point(|&id| id < next);
                    self.posting_entries -= (p.len() - kept) as u64;
                    p.truncate(kept);
                }
            }
        }
        self.dead.remove_range(next..);
    }

    pub fn get(&self, id: Id) -> &Set {
        &self.sets[id as usize]
    }

    pub fn alive(&self, id: Id) -> bool {
        !self.dead.contains(id)
    }

    /// The number of ids handed out (dead sets included): ids from here on are newer.
    pub fn next_id(&self) -> Id {
        self.sets.len() as Id
    }

    /// Approximate bytes the index adds to its sets.
    pub fn overhead_bytes(&self) -> u64 {
        4 * self.posting_entries + 16 * self.sets.len() as u64
    }

    /// Live sets equal to `set`, among ids in `from..`.
    pub fn find(&self, set: &Set, from: Id) -> Option<Id> {
        self.by_content
            .get(&set.fingerprint())?
            .iter()
            .copied()
            .find(|&id| id >= from && self.alive(id) && self.get(id) == set)
    }

    /// Live sets whose size is in `lens`, among ids in `from..`.
    pub fn with_len(&self, lens: RangeInclusive<u64>, from: Id) -> impl Iterator<Item = Id> + '_ {
        // An empty range (start past end) is no error: nothing has such a size.
        let lens = if lens.is_empty() {
            (Bound::Included(0), Bound::Excluded(0))
        } else {
            (Bound::Included(*lens.start()), Bound::Included(*lens.end()))
        };
        self.by_len
            .range(lens)
            .flat_map(|(_, ids)| ids.iter().copied())
            .filter(move |&id| id >= from && self.alive(id))
    }

    /// Live sets `r ⊆ s`, among `ids`.
    pub fn subsets(&self, s: &Set, ids: Range<Id>) -> Vec<Id> {
        // Empty sets are filed under no key; they are subsets of everything.
        let mut out: Vec<Id> = self
            .with_len(0..=0, ids.start)
            .filter(|id| ids.contains(id))
            .collect();
        if s.is_empty() {
            return out;
        }
        let minimum = s.minimum(1);
        let mut take = |filed: &Vec<Filed>| {
            out.extend(
                filed
                    .iter()
                    .filter(|f| ids.contains(&f.id) && f.len <= s.len() && f.minimum >= minimum)
                    .map(|f| f.id)
                    .filter(|&id| self.alive(id) && self.get(id).subset_of(s)),
            )
        };
        if s.len() < self.by_key.len() as u64 {
            for x in s.bits().iter() {
                if let Some(filed) = self.by_key.get(&x) {
                    take(filed);
                }
            }
        } else {
            // `s` holds more elements than there are keys: a scan of the sets (whose subset
            // test looks at sizes and sketches before any bitmap) costs less than testing
            // every key's membership in `s`.
            out.extend(ids.clone().filter(|&id| {
                let r = self.get(id);
                !r.is_empty() && self.alive(id) && r.subset_of(s)
            }));
        }
        out.sort_unstable();
        out
    }

    /// Live sets `u ⊇ s`, among `ids`.
    pub fn supersets(&self, s: &Set, ids: Range<Id>) -> Vec<Id> {
        self.superset_candidates(s, ids)
            .filter(|&id| s.subset_of(self.get(id)))
            .collect()
    }

    /// Live sets at least as large as `s` with ids in `ids` that may contain `s`: those
    /// holding all of its probes, or (no postings, no probes) every one.
    fn superset_candidates(&self, s: &Set, ids: Range<Id>) -> Box<dyn Iterator<Item = Id> + '_> {
        let min_len = s.len();
        let Some(postings) = self.postings.as_ref().filter(|_| !s.probes().is_empty()) else {
            // Among one result's sets (a long history before them), a walk of those ids beats
            // a walk of every size's list.
            if ids.start > 0 {
                return Box::new(
                    ids.filter(move |&id| self.alive(id) && self.get(id).len() >= min_len),
                );
            }
            return Box::new(
                self.with_len(min_len..=u64::MAX, 0)
                    .filter(move |id| ids.contains(id)),
            );
        };
        // Only ids in `ids`: each posting's older and newer ids are cut off before any work.
        let mut probed: Vec<&[Id]> = Vec::with_capacity(s.probes().len());
        for x in s.probes() {
            match postings.get(x) {
                Some(p) => probed.push(before(since(p, ids.start), ids.end)),
                None => return Box::new(std::iter::empty()),
            }
        }
        probed.sort_by_key(|p| p.len());
        let mut candidates = match probed[..] {
            [only] => only.to_vec(),
            [a, b, ..] => intersect(a, b),
            [] => unreachable!("a set with probes"),
        };
        // Every probe, down to a handful of candidates too: a candidate's own subset test reads
        // a large set's bitmap, colder than a probe's posting.
        for p in probed.iter().skip(2) {
            if candidates.is_empty() {
                break;
            }
            candidates = intersect(&candidates, p);
        }
        Box::new(
            candidates
                .into_iter()
                .filter(move |&id| self.alive(id) && self.get(id).len() >= min_len),
        )
    }

    /// Every live set with id in `from..`, oldest first.
    pub fn since(&self, from: Id) -> impl Iterator<Item = Id> + '_ {
        (from..self.next_id()).filter(|&id| self.alive(id))
    }
}

/// Files `set`'s sampled elements under `id` in `postings`; returns how many.
fn post(postings: &mut HashMap<u64, Vec<Id>>, id: Id, set: &Set) -> u64 {
    let mut n = 0;
    for x in sampled_elements(set.bits()) {
        let posting = postings.entry(x).or_default();
        // Ids are handed out in order (after a truncation too): postings stay sorted.
        debug_assert!(posting.last().is_none_or(|&last| last < id));
        posting.push(id);
        n += 1;
    }
    n
}

/// The ids of `posting` below `until`: a result's own sets are the newest, a few at the end.
fn before(posting: &[Id], until: Id) -> &[Id] {
    let newer = posting.iter().rev().take_while(|&&id| id >= until).count();
    &posting[..posting.len() - newer]
}

/// The ids of `posting` from `from` on, found from the end: they are the newest, and a binary
/// search of a long posting that is not in cache misses on most of its steps.
fn since(posting: &[Id], from: Id) -> &[Id] {
    if posting.first().is_none_or(|&first| first >= from) {
        return posting;
    }
    // posting[0] < from: strides doubling back from the end find an id below it.
    let (mut low, mut high) = (posting.len() - 1, posting.len());
    let mut stride = 1;
    while posting[low] >= from {
        high = low;
        low = low.saturating_sub(stride);
        stride *= 2;
    }
    &posting[low + posting[low..high].partition_point(|&id| id < from)..]
}

thread_local! {
    /// A bit per id, all clear between calls of `intersect`: clearing only the bits it set
    /// spares each call the zeroing of a bit array as long as the ids.
    static MARKS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The ids in both `a` and `b` (each ascending, without repeats), ascending. A few ids are
/// looked up in a much longer list; otherwise the lists meet in a bit array of the shorter
/// one's ids: a merge mispredicts a branch on every other step, and a lookup in a posting that
/// is not in cache misses on most of its steps where a scan streams.
fn intersect(a: &[Id], b: &[Id]) -> Vec<Id> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let Some(&last) = short.last() else {
        return Vec::new();
    };
    if short.len() * 256 < long.len() {
        return short
            .iter()
            .copied()
            .filter(|id| long.binary_search(id).is_ok())
            .collect();
    }
    let word = |id: Id| (id >> 6) as usize;
    let bit = |id: Id| 1u64 << (id & 63);
    let long = &long[..long.partition_point(|&id| id <= last)];
    MARKS.with_borrow_mut(|marks| {
        if marks.len() <= word(last) {
            marks.resize(word(last) + 1, 0);
        }
        for &id in short {
            marks[word(id)] |= bit(id);
        }
        let mut both = Vec::new();
        for &id in long {
            if marks[word(id)] & bit(id) != 0 {
                both.push(id);
            }
        }
        for &id in short {
            marks[word(id)] = 0;
        }
        both
    })
}

#[cfg(test)]
mod tests {
    use super::super::sets::testing::{numbers, set};
    use super::*;

    /// Brute force over every filed set, by the bitmaps alone (no sketch), as the index must
    /// answer.
    fn brute(index: &SetIndex, s: &Set, sub: bool) -> Vec<Id> {
        (0..index.next_id())
            .filter(|&id| index.alive(id))
            .filter(|&id| {
                if sub {
                    index.get(id).bits().is_subset(s.bits())
                } else {
                    s.bits().is_subset(index.get(id).bits())
                }
            })
            .collect()
    }

    #[test]
    fn intersections_equal_brute_force() {
        let mut next = numbers(11);
        let mut list = |len: usize, span: u32| -> Vec<Id> {
            let mut v: Vec<Id> = (0..len).map(|_| next() as Id % span).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        // Like lengths (the bit array, twice in a row: it must be left clear), a few against
        // many (lookups), empty lists, ids on word edges.
        let cases = [
            (list(500, 2_000), list(700, 2_000)),
            (list(500, 2_000), list(700, 2_000)),
            (list(3, 100_000), list(5_000, 100_000)),
            (vec![0, 63, 64, 127, 128], vec![63, 64, 65, 128, 4_000]),
            (vec![], list(10, 50)),
            (list(10, 50), vec![]),
        ];
        for (a, b) in &cases {
            let brute: Vec<Id> = a.iter().copied().filter(|x| b.contains(x)).collect();
            assert_eq!(intersect(a, b), brute);
            assert_eq!(intersect(b, a), brute);
        }
        MARKS.with_borrow(|marks| assert!(marks.iter().all(|&w| w == 0)));
    }

    #[test]
    fn the_newest_ids_of_a_posting() {
        let posting: Vec<Id> = (0..1_000).map(|i| i * 3).collect();
        for from in [0, 1, 2, 3, 1_500, 2_994, 2_997, 2_998, 5_000] {
            let brute: Vec<Id> = posting.iter().copied().filter(|&id| id >= from).collect();
            assert_eq!(since(&posting, from), brute, "from {from}");
        }
        assert!(since(&[], 7).is_empty());
    }

    #[test]
    fn answers_equal_brute_force() {
        let mut index = SetIndex {
            postings_from: 64,
            ..SetIndex::default()
        };
        let mut next = numbers(7);
        // Nested chains, random sets, small sets without probes, an empty set.
        let everyone = set(0..5_000);
        index.insert(everyone.clone());
        for k in 1..100u64 {
            index.insert(set((0..5_000).filter(|x| x % k == 0)));
            let size = 1 + next() % 300;
            index.insert(set((0..size).map(|_| next() % 5_000)));
            index.insert(set((0..(k % 6)).map(|_| next() % 5_000)));
        }
        index.insert(set(std::iter::empty()));
        index.remove(5);
        let queries: Vec<Set> = (0..index.next_id())
            .map(|id| index.get(id).clone())
            .chain([
                set([0, 6, 12]),
                set((0..5_000).filter(|x| x % 6 == 0)),
                everyone,
            ])
            .collect();
        assert!(index.postings.is_some(), "postings are built");
        let agree = |index: &SetIndex| {
            for q in &queries {
                let all = 0..index.next_id();
                assert_eq!(index.subsets(q, all.clone()), brute(index, q, true));
                let mut sup = index.supersets(q, all);
                sup.sort_unstable();
                assert_eq!(sup, brute(index, q, false));
                // A window of ids: the same answers, cut to it.
                let window = |ids: Vec<Id>| -> Vec<Id> {
                    ids.into_iter()
                        .filter(|id| (50..150).contains(id))
                        .collect()
                };
                assert_eq!(index.subsets(q, 50..150), window(brute(index, q, true)));
                let mut sup = index.supersets(q, 50..150);
                sup.sort_unstable();
                assert_eq!(sup, window(brute(index, q, false)));
            }
        };
        agree(&index);
        assert!(!index.subsets(&queries[0], 0..index.next_id()).contains(&5));
        assert_eq!(index.find(&queries[3], 0), Some(3));
        // Decisions that could not be made durable are forgotten, postings included.
        let entries = index.posting_entries;
        index.remove(index.next_id() - 1);
        index.truncate(200);
        assert_eq!(index.next_id(), 200);
        assert!(index.posting_entries < entries);
        agree(&index);
    }
}
