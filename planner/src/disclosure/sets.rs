//! Participant sets as the release ledger keeps them: the bitmap with what makes relations
//! between sets cheap to rule out — its cardinality, range and a min-hash sketch. `R ⊆ S` implies
//! `|R| <= |S|`, `min R >= min S`, `max R <= max S` and, for every hash, `min h(R) >= min h(S)`;
//! unrelated sets fail one of these almost always, so the exact bitmap test runs rarely. The
//! minima are taken over the sampled elements only (`sampled`: one in `SAMPLING`), which keeps
//! the implication (R's sampled elements are S's) at an eighth of the hashing: a result's sets
//! hold millions of (cell, participant) pairs.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, RwLock};

use roaring::{RoaringBitmap, RoaringTreemap};

/// Hashes in the sketch: a random pair of large unrelated sets passes all of them with
/// probability about 2^-8.
const HASHES: usize = 8;

#[derive(Debug, Clone)]
pub struct Set {
    /// Shared: the same set is filed in several indexes (a result's cells, the released or
    /// withheld history), and cloning it must not copy the bitmap.
    bits: Arc<RoaringTreemap>,
    len: u64,
    lo: u64,
    hi: u64,
    sketch: [u64; HASHES],
    /// The elements that give the first two hashes their minimum: a superset holds both, and a
    /// large unrelated set seldom does (the sketch alone passes a small set's supersets-by-size).
    /// The first is also the key a set is filed under for subset searches (`index.rs`).
    pivots: [u64; 2],
    /// Up to `PROBES` of the set's elements that the index keeps postings for (`sampled`): a
    /// superset holds all of them, so the sets holding all of them are its candidates.
    probes: Vec<u64>,
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64's finalizer.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One element in `SAMPLING` has postings in a set index: a set of more than a few dozen
/// participants almost always has a probe, and the postings cost an eighth of the sets' size.
pub const SAMPLING: u64 = 8;
const PROBES: usize = 4;
const SAMPLE_SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// Whether the index keeps postings for element `x`.
fn sampled(x: u64) -> bool {
    sample_hash(x).is_some()
}

/// `x`'s sample hash if `x` is sampled (probes are the sampled elements with the smallest).
fn sample_hash(x: u64) -> Option<u64> {
    Some(mix(x ^ SAMPLE_SEED)).filter(|h| h.is_multiple_of(SAMPLING))
}

/// `bits`' sampled elements, ascending. Where a set is dense in a block of 2^16 ids, the block's
/// sampled ids (the same for every set: `sampled` depends on the id alone) are computed once per
/// process and the set's are an intersection of bitmaps; elsewhere each element is hashed.
/// Research results hold millions of (cell, participant) pairs over the same dense person ids,
/// and hashing each one was most of a fresh decision.
pub fn sampled_elements(bits: &RoaringTreemap) -> Vec<u64> {
    let mut out = Vec::with_capacity((bits.len() / SAMPLING + 16) as usize);
    for (high, bitmap) in bits.bitmaps() {
        let base = u64::from(high) << 32;
        match sampled_in_blocks(high, bitmap) {
            Some(sampled) => out.extend(sampled.iter().map(|low| base | u64::from(low))),
            None => out.extend(
                bitmap
                    .iter()
                    .map(|low| base | u64::from(low))
                    .filter(|&x| sampled(x)),
            ),
        }
    }
    out
}

/// Blocks of 2^16 ids whose sampled ids the process keeps: 8 KiB each, so at most 16 MiB, all
/// a population of 134 M dense person ids needs.
const BLOCKS_KEPT: u64 = 2048;

/// A block is worth computing (2^16 hashes, once) for a set that holds at least one in this
/// many of its ids; sparse or scattered ids are hashed one by one.
const BLOCK_DENSITY: u64 = 32;

/// Bitmaps with fewer elements are hashed one by one: that costs less than finding their blocks.
const SMALL: u64 = 256;

/// The sampled ids of the blocks computed so far, per 32-bit high part of the id.
#[derive(Default)]
struct Blocks {
    by_high: HashMap<u32, Block>,
    kept: u64,
}

#[derive(Default)]
struct Block {
    /// The numbers (id >> 16) of the blocks computed.
    computed: RoaringBitmap,
    sampled: RoaringBitmap,
}

static BLOCKS: LazyLock<RwLock<Blocks>> = LazyLock::new(Default::default);

/// The sampled elements of `bitmap` (ids `high << 32 | low`) through the kept blocks, or `None`
/// where its blocks are not kept and not worth computing.
fn sampled_in_blocks(high: u32, bitmap: &RoaringBitmap) -> Option<RoaringBitmap> {
    if bitmap.len() < SMALL {
        return None;
    }
    let blocks = block_numbers(bitmap);
    let missing = {
        let kept = BLOCKS
            .read()
            .expect("no panics while the blocks are written");
        match kept.by_high.get(&high) {
            Some(block) if blocks.is_subset(&block.computed) => {
                return Some(bitmap & &block.sampled);
            }
            Some(block) => &blocks - &block.computed,
            None => blocks,
        }
    };
    if missing.len() * (1 << 16) > BLOCK_DENSITY * bitmap.len() {
        return None;
    }
    let mut kept = BLOCKS
        .write()
        .expect("no panics while the blocks are written");
    let kept = &mut *kept;
    if kept.kept + missing.len() > BLOCKS_KEPT {
        return None;
    }
    let block = kept.by_high.entry(high).or_default();
    // Another thread may have computed some of them meanwhile.
    let missing = missing - &block.computed;
    for b in &missing {
        let start = b << 16;
        let ids =
            (start..=start | 0xFFFF).filter(|&low| sampled(u64::from(high) << 32 | u64::from(low)));
        block.sampled |= RoaringBitmap::from_sorted_iter(ids).expect("ascending");
    }
    let added = missing.len();
    block.computed |= missing;
    let sampled = bitmap & &block.sampled;
    kept.kept += added;
    Some(sampled)
}

/// The numbers (id >> 16) of the blocks `bitmap` has elements in.
fn block_numbers(bitmap: &RoaringBitmap) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    let mut elements = bitmap.iter();
    while let Some(x) = elements.next() {
        let b = x >> 16;
        out.insert(b);
        if b == 0xFFFF {
            break;
        }
        elements.advance_to((b + 1) << 16);
    }
    out
}

const SEEDS: [u64; HASHES] = [
    0x9E37_79B9_7F4A_7C15,
    0x3C6E_F372_FE94_F82A,
    0xDAA6_6D2C_7DDF_743F,
    0x78DD_E6E5_FD29_F054,
    0x1715_609F_7C74_6C69,
    0xB54C_DA58_FBBE_E87E,
    0x5384_5412_7B09_6493,
    0xF1BB_CDCB_FA53_E0A8,
];

impl Set {
    pub fn new(bits: RoaringTreemap) -> Self {
        let mut sketch = [u64::MAX; HASHES];
        let mut pivots = [0u64; 2];
        // The sampled elements with the smallest sample hashes: deterministic per set.
        let mut probes: Vec<(u64, u64)> = Vec::with_capacity(PROBES + 1);
        for x in sampled_elements(&bits) {
            let key = sample_hash(x).expect("a sampled element");
            if probes.len() < PROBES || key < probes[PROBES - 1].0 {
                let at = probes.partition_point(|p| p.0 < key);
                probes.insert(at, (key, x));
                probes.truncate(PROBES);
            }
            // The sketch's hashes from the sample hash, which already mixes every bit of `x`: a
            // multiply each (the high bits, which decide comparisons, depend on every bit of
            // the key), not a finalizer each.
            let hashes: [u64; HASHES] =
                std::array::from_fn(|i| (key ^ SEEDS[i]).wrapping_mul(SEEDS[i] | 1));
            for (i, (s, h)) in sketch.iter_mut().zip(hashes).enumerate() {
                // `<=`: a first element hashing to u64::MAX still becomes the pivot.
                if h <= *s {
                    *s = h;
                    if i < 2 {
                        pivots[i] = x;
                    }
                }
            }
        }
        let (lo, hi) = (bits.min().unwrap_or(u64::MAX), bits.max().unwrap_or(0));
        if probes.is_empty() {
            // Nothing sampled (a small set): its ends are members too.
            pivots = [lo, hi];
        }
        Set {
            len: bits.len(),
            lo,
            hi,
            bits: Arc::new(bits),
            sketch,
            pivots,
            probes: probes.into_iter().map(|(_, x)| x).collect(),
        }
    }

    /// The element a set is filed under for subset searches: a subset of `s` has its own
    /// in `s`.
    pub fn key(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.pivots[0])
    }

    /// The `i`th min-hash of the sketch: a subset's is no smaller than its superset's.
    pub fn minimum(&self, i: usize) -> u64 {
        self.sketch[i]
    }

    /// A hash of the size and the sketch: equal sets have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        self.sketch.iter().fold(mix(self.len), |h, &m| mix(h ^ m))
    }

    pub fn probes(&self) -> &[u64] {
        &self.probes
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bits(&self) -> &RoaringTreemap {
        &self.bits
    }

    /// `self ⊆ other`.
    pub fn subset_of(&self, other: &Set) -> bool {
        self.len <= other.len
            && (self.len == 0
                || (self.lo >= other.lo
                    && self.hi <= other.hi
                    && self.sketch.iter().zip(&other.sketch).all(|(a, b)| a >= b)
                    && self.pivots.iter().all(|&x| other.bits.contains(x))
                    && self.bits_inside(other)))
    }

    /// The bitmap test of `subset_of`. A few elements are looked up one by one: roaring walks
    /// both of two array containers, which for a handful of participants inside a cell of
    /// thousands is a walk of the large one (a result's small cells lie inside many cells).
    fn bits_inside(&self, other: &Set) -> bool {
        if self.len.saturating_mul(64) < other.len {
            self.bits.iter().all(|x| other.bits.contains(x))
        } else {
            self.bits.is_subset(&other.bits)
        }
    }

    /// `self ⊊ other`.
    pub fn strict_subset_of(&self, other: &Set) -> bool {
        self.len < other.len && self.subset_of(other)
    }

    pub fn disjoint(&self, other: &Set) -> bool {
        self.len == 0
            || other.len == 0
            || self.hi < other.lo
            || other.hi < self.lo
            || self.bits.is_disjoint(&other.bits)
    }
}

impl Deref for Set {
    type Target = RoaringTreemap;

    fn deref(&self) -> &RoaringTreemap {
        &self.bits
    }
}

impl PartialEq for Set {
    fn eq(&self, other: &Self) -> bool {
        // A set filed in several indexes shares its bitmap: the same bitmap is the same set.
        Arc::ptr_eq(&self.bits, &other.bits)
            || (self.len == other.len && self.sketch == other.sketch && self.bits == other.bits)
    }
}

impl Eq for Set {}

/// What the ledger's tests build their sets with.
#[cfg(test)]
pub(crate) mod testing {
    use super::Set;

    pub fn set(xs: impl IntoIterator<Item = u64>) -> Set {
        Set::new(xs.into_iter().collect())
    }

    /// A deterministic stream of 31-bit numbers (a linear congruential generator).
    pub fn numbers(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_pass_and_unrelated_sets_fail() {
        let s = Set::new((0..1000).collect());
        let r = Set::new((100..200).collect());
        let other = Set::new((500..1600).collect());
        assert!(r.subset_of(&s) && r.strict_subset_of(&s) && !s.subset_of(&r));
        assert!(!other.subset_of(&s) && !s.subset_of(&other));
        assert!(s.subset_of(&s) && !s.strict_subset_of(&s));
        assert!(Set::new(RoaringTreemap::new()).subset_of(&r));
        assert!(r.disjoint(&Set::new((300..400).collect())) && !r.disjoint(&s));
    }

    #[test]
    fn sampled_elements_through_blocks_equal_hashing_each() {
        let high = 7u64 << 32;
        let sets: Vec<RoaringTreemap> = vec![
            // Dense in its blocks: they are computed and kept.
            (1..200_000).collect(),
            // Every other id, across a block boundary, in two 32-bit parts.
            (60_000..140_000)
                .step_by(2)
                .chain((high..high + 70_000).step_by(3))
                .collect(),
            // Scattered: one id per block, too sparse for blocks to be worth computing.
            (0..300u64).map(|i| (i << 20) | 5).collect(),
            // Dense in a kept block plus one far id: its block is computed too.
            (190_000..210_000).chain([1 << 30]).collect(),
            // Few ids in a kept block plus one far id, whose block is not worth computing for
            // so few: hashed one by one.
            (199_000..199_500).chain([3 << 30]).collect(),
            (u64::from(u32::MAX) - 1000..u64::from(u32::MAX) + 1000).collect(),
            // Small: hashed one by one.
            (5..100).collect(),
            RoaringTreemap::new(),
        ];
        for bits in &sets {
            let hashed: Vec<u64> = bits.iter().filter(|&x| sampled(x)).collect();
            assert_eq!(sampled_elements(bits), hashed);
            // Again, through whatever the first call kept.
            assert_eq!(sampled_elements(bits), hashed);
        }
    }
}
