//! Complementary suppression by participant sets, within a result and across the results
//! released to one principal. Every released aggregate row has a participant set; the ledger
//! keeps, per principal, the sets already released. A new row is withheld when releasing it
//! would let something protected be solved: for an aggregates-only principal any group of
//! 1..=T participants (`Rules::Groups`); for a row-level principal a suppressed cell of the
//! result (`Rules::Cells`). The relations that solve a set by subtraction:
//!
//! - nested sets: a released set contains it, or is contained in it, with 1..=T participants
//!   more (a total and the same total minus a few; overlapping filters; padding);
//! - a line: a total and disjoint parts of it whose counts add up, leaving a rest that is a
//!   withheld cell, withheld cells of 1..=T participants together, or (groups) any 1..=T;
//! - overlapping sets with their union released: |A| + |B| - |A ∪ B| is their intersection.
//!
//! Every relation involves a set's subsets, its supersets, or sets of a given size, which the
//! history's index (`index.rs`) finds without walking the history: a check costs what the
//! related sets hold, not how many sets a principal was given. Among the result's own sets the
//! relation is found once per result (`nest.rs`), so that the many checks of a decision (a first
//! pass, revocation passes, the lines of withheld cells) cost what they find, not a walk of the
//! result's cells each.
//!
//! Rows are decided largest set first, ties by content, so the same sets with the same history
//! get the same decisions whatever order the engine produced them in; a repeated query (same
//! sets) is released again unchanged. Decisions depend only on the sets of released rows and of
//! the new rows, never on values.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Range, RangeInclusive};
use std::sync::{Arc, Mutex};

use roaring::RoaringTreemap;

use super::index::{Id, SetIndex};
use super::nest::{Nest, Pos};
use super::sets::Set;

/// Bytes of participant sets kept per principal by default (`[disclosure] ledger_budget_mb`).
pub const DEFAULT_BUDGET_BYTES: u64 = 512 << 20;

#[derive(Debug)]
pub struct ReleaseLedger {
    /// One lock per principal: deciding (and journaling) one principal's result does not wait
    /// for another's.
    principals: Mutex<HashMap<String, Arc<Mutex<History>>>>,
    /// Where every decision is recorded before the result is released, so that a restart does
    /// not forget what a principal was given (none: a ledger of one result).
    journal: Option<Arc<dyn LedgerJournal>>,
    /// Bytes of sets (and their index) a principal may accumulate; past it their protected
    /// queries are refused (forgetting old releases would reopen differencing against them).
    budget: u64,
}

impl Default for ReleaseLedger {
    fn default() -> Self {
        ReleaseLedger {
            principals: Mutex::default(),
            journal: None,
            budget: DEFAULT_BUDGET_BYTES,
        }
    }
}

/// Durable storage of a ledger's decisions. The planner decides; where the decisions are kept
/// is the query service's business (a file today).
pub trait LedgerJournal: Send + Sync + std::fmt::Debug {
    /// Records the sets released to and withheld from `principal`; returns only once they are
    /// durable, because the result carrying them is released right after.
    fn record(
        &self,
        principal: &str,
        released: &[&RoaringTreemap],
        withheld: &[&RoaringTreemap],
    ) -> std::io::Result<()>;
}

/// One decision of the past, as a journal gives it back at start-up.
pub struct Recorded {
    pub principal: String,
    pub released: bool,
    pub set: RoaringTreemap,
}

/// What one principal was given, and what it was refused.
#[derive(Debug, Default)]
struct History {
    released: SetIndex,
    withheld: SetIndex,
    /// Serialized bytes of the sets.
    set_bytes: u64,
}

impl History {
    fn add(&mut self, set: Set, released: bool) {
        self.set_bytes += set.serialized_size() as u64;
        if released {
            self.released.insert(set);
        } else {
            self.withheld.insert(set);
        }
    }

    fn bytes(&self) -> u64 {
        self.set_bytes + self.released.overhead_bytes() + self.withheld.overhead_bytes()
    }
}

/// The principal's ledger is full.
#[derive(Debug, Clone)]
pub struct LedgerFull {
    pub bytes: u64,
    pub budget: u64,
}

impl std::fmt::Display for LedgerFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the release ledger of this principal is full ({} of {} bytes of released \
             participant sets); ask the operator to raise disclosure.ledger_budget_mb",
            self.bytes, self.budget
        )
    }
}

impl std::error::Error for LedgerFull {}

/// Why nothing of a result may be released.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    Full(LedgerFull),
    /// The decisions could not be made durable: releasing anyway would let a restart forget
    /// them.
    #[error("the release ledger could not be written: {0}")]
    Journal(std::io::Error),
}

/// What a release must prevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Row-level principals: no suppressed cell of the result can be solved from its released
    /// cells (the principal may read the rows; other small groups are not cells).
    Cells,
    /// Aggregates-only principals: no group of 1..=T participants can be derived from what was
    /// released, in this result or before.
    Groups,
}

/// What becomes of a row's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Release,
    /// Withheld: this result's other rows would let a small group be solved.
    Complementary,
    /// Withheld: with what the principal was given before, a small group could be solved.
    Differencing,
}

impl Decision {
    pub fn released(self) -> bool {
        self == Decision::Release
    }

    /// The reason a withheld row's cells are reported under (`cells::REASONS`).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Decision::Release => None,
            Decision::Complementary => Some("complementary"),
            Decision::Differencing => Some("differencing"),
        }
    }
}

/// One row of a protected result.
#[derive(Clone)]
pub struct Row {
    /// The row's participants (`None`: nothing to protect in it).
    pub set: Option<RoaringTreemap>,
    /// Whether its protected cells carry values (false: already suppressed).
    pub offered: bool,
}

impl ReleaseLedger {
    /// A ledger with `budget` bytes of sets per principal that starts from `history` and
    /// records every decision in `journal`.
    pub fn restored(
        history: impl IntoIterator<Item = Recorded>,
        journal: Arc<dyn LedgerJournal>,
        budget: u64,
    ) -> Self {
        let mut principals: HashMap<String, History> = HashMap::new();
        for r in history {
            principals
                .entry(r.principal)
                .or_default()
                .add(Set::new(r.set), r.released);
        }
        ReleaseLedger {
            principals: Mutex::new(
                principals
                    .into_iter()
                    .map(|(p, h)| (p, Arc::new(Mutex::new(h))))
                    .collect(),
            ),
            journal: Some(journal),
            budget,
        }
    }

    fn history_of(&self, principal: &str) -> Arc<Mutex<History>> {
        let mut principals = self.principals.lock().unwrap_or_else(|p| p.into_inner());
        principals.entry(principal.to_string()).or_default().clone()
    }

    /// Decides which rows may be released to `principal` and records what was released and
    /// what was withheld.
    pub fn decide(
        &self,
        principal: &str,
        rows: &[Row],
        threshold: u64,
        rules: Rules,
    ) -> Result<Vec<Decision>, LedgerError> {
        let mut release = vec![Decision::Release; rows.len()];
        // Under the cell rules a result without a suppressed cell has no line to protect:
        // spare it the sketches of its sets.
        if rules == Rules::Cells
            && !rows
                .iter()
                .any(|r| !r.offered && r.set.as_ref().is_some_and(|s| !s.is_empty()))
        {
            return Ok(release);
        }
        let nest = Nest::of(&sketched(rows));
        // Which rows take part: under the cell rules only the lines of the result's
        // suppressed cells (their totals and the totals' parts); every row otherwise.
        let mut withheld_rows: Vec<bool> = rows.iter().map(|r| !r.offered).collect();
        let mut taking_part: Vec<usize> =
            (0..rows.len()).filter(|&i| nest.at(i).is_some()).collect();
        if rules == Rules::Cells {
            taking_part = lines_of_withheld(rows, &nest, &withheld_rows);
            if !taking_part.iter().any(|&i| rows[i].offered) {
                return Ok(release);
            }
        }
        let history = self.history_of(principal);
        let mut history = history.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = history.bytes();
        if bytes > self.budget {
            return Err(LedgerError::Full(LedgerFull {
                bytes,
                budget: self.budget,
            }));
        }
        let History {
            released,
            withheld,
            set_bytes,
        } = &mut *history;
        let first_withheld = withheld.next_id();
        let mut fresh = Fresh {
            nest: &nest,
            first: released.next_id(),
            ids: vec![None; nest.len()],
        };
        loop {
            decide_rows(
                (released, withheld),
                &mut fresh,
                first_withheld,
                (rows, &mut release),
                &taking_part,
                threshold,
                rules,
            );
            if rules != Rules::Cells {
                break;
            }
            // A cell withheld to protect another lies on lines of its own (its row and its
            // column, say), which a chain of subtractions can run along: they take part too,
            // decided again from the start, until every withheld cell's lines take part.
            for (i, d) in release.iter().enumerate() {
                if rows[i].offered && !d.released() {
                    withheld_rows[i] = true;
                }
            }
            let grown = lines_of_withheld(rows, &nest, &withheld_rows);
            if grown.iter().all(|i| taking_part.binary_search(i).is_ok()) {
                break;
            }
            taking_part = grown;
            fresh.forget(released);
            withheld.truncate(first_withheld);
            release.fill(Decision::Release);
        }
        let first_new = fresh.first;
        fn new_sets(index: &SetIndex, from: Id) -> Vec<&RoaringTreemap> {
            index.since(from).map(|id| index.get(id).bits()).collect()
        }
        let (new_released, new_withheld) = (
            new_sets(released, first_new),
            new_sets(withheld, first_withheld),
        );
        let journaled = match &self.journal {
            Some(journal) => journal.record(principal, &new_released, &new_withheld),
            None => Ok(()),
        };
        let new_bytes = new_released
            .iter()
            .chain(&new_withheld)
            .map(|s| s.serialized_size() as u64)
            .sum::<u64>();
        if let Err(e) = journaled {
            released.truncate(first_new);
            withheld.truncate(first_withheld);
            return Err(LedgerError::Journal(e));
        }
        *set_bytes += new_bytes;
        Ok(release)
    }
}

/// Participants from which the sets' sketches are made on several threads.
const PARALLEL_FROM: u64 = 100_000;

/// The cores sketches are split among, asked once: the answer reads the process's cgroup
/// limits from files.
static CORES: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as u64);

/// The rows' sets with their sketches. Hashing every participant of every cell is most of a
/// fresh decision on a large result, and the result's aggregation, which had every core, is
/// done: the rows are split among the cores, in runs of about as many participants.
fn sketched(rows: &[Row]) -> Vec<Option<Set>> {
    let sketch = |rows: &[Row]| -> Vec<Option<Set>> {
        rows.iter().map(|r| r.set.clone().map(Set::new)).collect()
    };
    let participants: u64 = rows.iter().flat_map(|r| &r.set).map(|s| s.len()).sum();
    let threads = *CORES;
    if participants < PARALLEL_FROM || threads < 2 {
        return sketch(rows);
    }
    let mut runs: Vec<&[Row]> = Vec::new();
    let (mut start, mut held) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        held += r.set.as_ref().map_or(0, |s| s.len());
        if held * threads >= participants * (runs.len() as u64 + 1) {
            runs.push(&rows[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&rows[start..]);
    std::thread::scope(|scope| {
        let others: Vec<_> = runs[1..]
            .iter()
            .map(|&run| scope.spawn(move || sketch(run)))
            .collect();
        let mut sets = sketch(runs[0]);
        for other in others {
            sets.extend(other.join().expect("sketching a set does not panic"));
        }
        sets
    })
}

/// This result's distinct sets (its nest) and the ids of those released so far in the
/// principal's released index: all from `first` on, the history's ids are below it.
struct Fresh<'a> {
    nest: &'a Nest,
    first: Id,
    /// By position in the nest.
    ids: Vec<Option<Id>>,
}

impl Fresh<'_> {
    fn release(&mut self, index: &mut SetIndex, at: Pos) {
        self.ids[at as usize] = Some(index.insert(self.nest.set(at).clone()));
    }

    fn revoke(&mut self, index: &mut SetIndex, at: Pos) {
        if let Some(id) = self.ids[at as usize].take() {
            index.remove(id);
        }
    }

    /// Takes back every release of this result (decided again from the start).
    fn forget(&mut self, index: &mut SetIndex) {
        index.truncate(self.first);
        self.ids.fill(None);
    }

    /// This result's released sets, as (id, position), oldest first.
    fn released(&self) -> Vec<(Id, Pos)> {
        let mut out: Vec<(Id, Pos)> = (self.ids.iter().enumerate())
            .filter_map(|(at, id)| id.map(|id| (id, at as Pos)))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Smallest first: sizes, then contents (a total order of distinct sets), so that decisions
/// do not depend on the order rows arrived in.
fn by_size(nest: &Nest, a: Pos, b: Pos) -> std::cmp::Ordering {
    if a == b {
        return std::cmp::Ordering::Equal;
    }
    let (sa, sb) = (nest.set(a), nest.set(b));
    sa.len()
        .cmp(&sb.len())
        .then_with(|| sa.iter().cmp(sb.iter()))
}

/// One pass of decisions over the rows taking part (ids of this result from `fresh.first`
/// and `first_withheld` on): the withheld rows filed, the offered ones decided largest first,
/// then releases a later withholding made solvable revoked.
fn decide_rows(
    (released, withheld): (&mut SetIndex, &mut SetIndex),
    fresh: &mut Fresh,
    first_withheld: Id,
    (rows, release): (&[Row], &mut [Decision]),
    taking_part: &[usize],
    threshold: u64,
    rules: Rules,
) {
    let nest = fresh.nest;
    let at = |i: usize| nest.at(i).expect("rows taking part have a set");
    let mut taking_part = taking_part.to_vec();
    // The decisions must not depend on the order the rows arrived in (partitions finish in
    // any order): the same question asked twice gives up the same cells, never a union.
    taking_part.sort_by(|&a, &b| {
        by_size(nest, at(a), at(b)).then_with(|| rows[a].offered.cmp(&rows[b].offered))
    });
    for &i in &taking_part {
        let set = nest.set(at(i));
        if !rows[i].offered && withheld.find(set, 0).is_none() {
            withheld.insert(set.clone());
        }
    }
    let mut order: Vec<usize> = taking_part
        .iter()
        .copied()
        .filter(|&i| rows[i].offered)
        .collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (nest.set(at(a)), nest.set(at(b)));
        sb.len()
            .cmp(&sa.len())
            .then_with(|| by_size(nest, at(a), at(b)))
    });
    for i in order {
        let set = nest.set(at(i));
        if released.find(set, 0).is_some() {
            continue;
        }
        // Withheld before: withheld again, so that repeating a query changes nothing.
        if withheld.find(set, 0).is_some_and(|id| id < first_withheld) {
            release[i] = Decision::Differencing;
            continue;
        }
        let check = Check {
            withheld: &*withheld,
            threshold,
            rules,
        };
        if check.derivable(set, Released::all(released, fresh)) {
            // Solvable from this result alone, or only with what was released before.
            release[i] = if check.derivable(set, Released::since(released, fresh)) {
                Decision::Complementary
            } else {
                Decision::Differencing
            };
            if withheld.find(set, 0).is_none() {
                withheld.insert(set.clone());
            }
            continue;
        }
        fresh.release(released, at(i));
    }
    revoke_solvable(
        (released, withheld),
        fresh,
        first_withheld,
        (rows, release),
        threshold,
        rules,
    );
}

/// A later withholding can make an earlier release of this result solvable (a cell alone with
/// a withheld one in its line): revokes such releases until nothing changes. Smallest first, so
/// that a line gives up its smallest cells before its margin. Only the lines of this result's
/// withheld cells can change: with nothing withheld, every relation was checked as its rows
/// came in.
fn revoke_solvable(
    (released, withheld): (&mut SetIndex, &mut SetIndex),
    fresh: &mut Fresh,
    first_withheld: Id,
    (rows, release): (&[Row], &mut [Decision]),
    threshold: u64,
    rules: Rules,
) {
    let nest = fresh.nest;
    let mut offered = vec![false; nest.len()];
    for i in (0..rows.len()).filter(|&i| rows[i].offered) {
        if let Some(at) = nest.at(i) {
            offered[at as usize] = true;
        }
    }
    let mut passes = 0usize;
    while withheld.next_id() > first_withheld {
        let new = fresh.released();
        let new_withheld: Vec<Pos> = withheld
            .since(first_withheld)
            .map(|id| {
                nest.position(withheld.get(id))
                    .expect("this result's withheld sets are its own")
            })
            .collect();
        let on_lines = on_lines_of(nest, &new, &new_withheld);
        let mut newest: Vec<usize> = on_lines.clone();
        newest.sort_by(|&a, &b| by_size(nest, new[a].1, new[b].1));
        let check = Check {
            withheld: &*withheld,
            threshold,
            rules,
        };
        let all = Released::all(released, fresh);
        let revoked = newest
            .into_iter()
            .find(|&k| check.derivable(nest.set(new[k].1), all.skipping(new[k].0)))
            .or_else(|| {
                // Bridges join lines of withheld cells: only their cells matter.
                let cells: Vec<Pos> = on_lines.iter().map(|&k| new[k].1).collect();
                bridge_victim(nest, &cells, &new_withheld).map(|j| on_lines[j])
            })
            .or_else(|| tie_of_withheld(all, &new, &new_withheld, &offered))
            .map(|k| new[k].1);
        let Some(at) = revoked else {
            tracing::debug!(passes, on_lines = on_lines.len(), "revocations done");
            break;
        };
        passes += 1;
        fresh.revoke(released, at);
        for row in nest.rows_at(at) {
            release[row] = Decision::Complementary;
        }
        withheld.insert(nest.set(at).clone());
    }
}

/// The released sets a check may use: the principal's history, or only this result's, minus
/// one set being reconsidered.
#[derive(Clone, Copy)]
struct Released<'a> {
    index: &'a SetIndex,
    fresh: &'a Fresh<'a>,
    from: Id,
    skip: Option<Id>,
}

impl<'a> Released<'a> {
    fn all(index: &'a SetIndex, fresh: &'a Fresh<'a>) -> Self {
        Released {
            index,
            fresh,
            from: 0,
            skip: None,
        }
    }

    /// This result's released sets alone.
    fn since(index: &'a SetIndex, fresh: &'a Fresh<'a>) -> Self {
        Released {
            from: fresh.first,
            ..Self::all(index, fresh)
        }
    }

    fn skipping(self, id: Id) -> Self {
        Released {
            skip: Some(id),
            ..self
        }
    }

    fn sets(&self, ids: impl IntoIterator<Item = Id>) -> Vec<&'a Set> {
        ids.into_iter()
            .filter(|&id| Some(id) != self.skip)
            .map(|id| self.index.get(id))
            .collect()
    }

    /// Released sets strictly inside `s`.
    fn inside(&self, s: &Set) -> Vec<&'a Set> {
        let mut out = self.sets(self.related(s, Nest::inside, SetIndex::subsets));
        out.retain(|r| r.len() < s.len());
        out
    }

    /// Released sets strictly containing `s`.
    fn around(&self, s: &Set) -> Vec<&'a Set> {
        let mut out = self.sets(self.related(s, Nest::around, SetIndex::supersets));
        out.retain(|u| u.len() > s.len());
        out
    }

    /// The released sets related to `s` (inside it or around it): this result's from its
    /// nest when `s` is one of its sets, the rest from the index.
    fn related(
        &self,
        s: &Set,
        in_nest: fn(&Nest, Pos) -> &[Pos],
        in_index: fn(&SetIndex, &Set, Range<Id>) -> Vec<Id>,
    ) -> Vec<Id> {
        let (nest, first) = (self.fresh.nest, self.fresh.first);
        let Some(at) = nest.position(s) else {
            return in_index(self.index, s, self.from..self.index.next_id());
        };
        let mut ids = if self.from < first {
            in_index(self.index, s, self.from..first)
        } else {
            Vec::new()
        };
        ids.extend(
            in_nest(nest, at)
                .iter()
                .filter_map(|&p| self.fresh.ids[p as usize]),
        );
        ids
    }

    fn with_len(&self, lens: RangeInclusive<u64>) -> Vec<&'a Set> {
        self.sets(self.index.with_len(lens, self.from))
    }
}

/// The rows on a line of a withheld row (`withheld[i]`): offered rows whose set strictly
/// contains a withheld set (its totals), and the rows inside those totals (their parts).
fn lines_of_withheld(rows: &[Row], nest: &Nest, withheld: &[bool]) -> Vec<usize> {
    let mut around_seed = vec![false; nest.len()];
    for at in (0..rows.len())
        .filter(|&i| withheld[i])
        .filter_map(|i| nest.at(i))
    {
        for &u in nest.around(at) {
            around_seed[u as usize] = true;
        }
    }
    let totals: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].offered && !withheld[i])
        .filter(|&i| nest.at(i).is_some_and(|at| around_seed[at as usize]))
        .collect();
    let mut in_total = vec![false; nest.len()];
    for at in totals.iter().filter_map(|&t| nest.at(t)) {
        for &p in nest.inside(at) {
            in_total[p as usize] = true;
        }
    }
    (0..rows.len())
        .filter(|&i| {
            nest.at(i).is_some_and(|at| {
                withheld[i] || totals.binary_search(&i).is_ok() || in_total[at as usize]
            })
        })
        .collect()
}

/// Positions in `new` (this result's released sets, oldest first) of the sets on a line of a
/// withheld set of this result: its totals (released sets strictly containing it) and their
/// parts (released sets strictly inside a total), ascending.
fn on_lines_of(nest: &Nest, new: &[(Id, Pos)], withheld: &[Pos]) -> Vec<usize> {
    let mut in_new: Vec<Option<usize>> = vec![None; nest.len()];
    for (k, &(_, at)) in new.iter().enumerate() {
        in_new[at as usize] = Some(k);
    }
    let totals: BTreeSet<usize> = withheld
        .iter()
        .flat_map(|&w| nest.around(w))
        .filter_map(|&at| in_new[at as usize])
        .collect();
    let mut on = totals.clone();
    for &t in &totals {
        on.extend(
            nest.inside(new[t].1)
                .iter()
                .filter_map(|&at| in_new[at as usize]),
        );
    }
    on.into_iter().collect()
}

/// A few of a result's sets (positions in its nest, repeats allowed: a set both released and
/// withheld), with the nest's relation among them by index in the list.
struct Among<'a> {
    nest: &'a Nest,
    cells: Vec<Pos>,
    /// Indices in `cells` by position.
    indices: HashMap<Pos, Vec<usize>>,
}

impl<'a> Among<'a> {
    fn new(nest: &'a Nest, cells: Vec<Pos>) -> Self {
        let mut indices: HashMap<Pos, Vec<usize>> = HashMap::new();
        for (i, &at) in cells.iter().enumerate() {
            indices.entry(at).or_default().push(i);
        }
        Among {
            nest,
            cells,
            indices,
        }
    }

    fn len(&self) -> usize {
        self.cells.len()
    }

    fn set(&self, i: usize) -> &Set {
        self.nest.set(self.cells[i])
    }

    fn related(&self, positions: &[Pos]) -> Vec<usize> {
        let mut out: Vec<usize> = positions
            .iter()
            .filter_map(|at| self.indices.get(at))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Cells strictly containing cell `i`, ascending.
    fn around(&self, i: usize) -> Vec<usize> {
        self.related(self.nest.around(self.cells[i]))
    }

    /// Cells strictly inside cell `i`, ascending.
    fn inside(&self, i: usize) -> Vec<usize> {
        self.related(self.nest.inside(self.cells[i]))
    }

    fn strictly_inside(&self, i: usize, j: usize) -> bool {
        self.nest.strictly_inside(self.cells[i], self.cells[j])
    }
}

/// Two-dimensional tables (a table with its margins, as CUBE, ROLLUP or a UNION writes it).
/// Every cell lies on two lines — an inner cell on its row and its column, a row total on its
/// row and on the line of row totals (which sum to the grand total), the grand total on the
/// lines of row totals and of column totals. Withheld cells are edges between their two lines;
/// a withheld cell that is a bridge of that graph (in no cycle) can be solved from the released
/// cells. Lines are named by their totals' sets: an inner cell's lines are its two minimal
/// supersets in the result; a margin (whose only superset is the grand total) lies on its own
/// line and on the grand total's line of its family (margins of one family are disjoint, the
/// two families overlap). Returns the index in `released` of a cell to withhold as well: the
/// smallest released cell on one of the bridge's lines, else that line's total.
fn bridge_victim(nest: &Nest, released: &[Pos], withheld: &[Pos]) -> Option<usize> {
    // The result's cells: released ones (this result) then withheld ones.
    let n_released = released.len();
    let cells = Among::new(nest, released.iter().chain(withheld).copied().collect());
    // Minimal supersets are found when asked for: the withheld cells' always, a released
    // cell's only when a bridge's line is searched for candidates.
    let minimal_of: Vec<std::cell::OnceCell<Vec<usize>>> = (0..cells.len())
        .map(|_| std::cell::OnceCell::new())
        .collect();
    let minimal = |i: usize| -> &[usize] {
        minimal_of[i].get_or_init(|| {
            let mut sup = cells.around(i);
            // Smallest first, a superset is minimal unless a minimal one found before lies
            // inside it (one that is not minimal holds a minimal one, which would lie inside it
            // too): a test against the few minimal ones, not against every superset.
            sup.sort_by_key(|&j| cells.set(j).len());
            let mut minimal: Vec<usize> = Vec::new();
            for j in sup {
                if !minimal.iter().any(|&m| cells.strictly_inside(m, j)) {
                    minimal.push(j);
                }
            }
            minimal.sort_unstable();
            minimal
        })
    };
    // Line nodes: a cell index (the line it totals), or the grand total's line for a family.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Node {
        Line(usize),
        Grand(usize, u8),
        /// The one side of a cell that lies on a single line.
        Outside,
    }
    // Margins: cells whose only minimal superset is a top (a cell with no superset).
    let is_top = |i: usize| minimal(i).is_empty();
    let family = |i: usize| -> u8 {
        // Family 0 holds the margin first met (smallest index) among those it is disjoint from.
        let grand = minimal(i)[0];
        let first = is_top(grand)
            .then(|| {
                cells
                    .inside(grand)
                    .into_iter()
                    .find(|&j| minimal(j) == [grand])
            })
            .flatten()
            .unwrap_or(i);
        if cells.set(first).disjoint(cells.set(i)) || first == i {
            0
        } else {
            1
        }
    };
    // A margin has a line of its own only if inner cells sum to it.
    let has_cells = |i: usize| {
        cells.inside(i).into_iter().any(|j| {
            let m = minimal(j);
            m.len() == 2 && m.contains(&i)
        })
    };
    let has_family_1 =
        |g: usize| (cells.inside(g).into_iter()).any(|j| minimal(j) == [g] && family(j) == 1);
    let lines_of = |i: usize| -> Option<(Node, Node)> {
        match minimal(i) {
            [a, b] => Some((Node::Line(*a), Node::Line(*b))),
            [g] if is_top(*g) => {
                let own = if has_cells(i) {
                    Node::Line(i)
                } else {
                    Node::Outside
                };
                Some((own, Node::Grand(*g, family(i))))
            }
            [] => {
                let other = if has_family_1(i) {
                    Node::Grand(i, 1)
                } else {
                    Node::Outside
                };
                Some((Node::Grand(i, 0), other))
            }
            _ => None,
        }
    };
    let edges: Vec<(Node, Node, usize)> = (n_released..cells.len())
        .filter_map(|i| lines_of(i).map(|(a, b)| (a, b, i)))
        .collect();
    let connected_without = |skip: usize, from: Node, to: Node| -> bool {
        let mut seen = vec![from];
        let mut frontier = vec![from];
        while let Some(n) = frontier.pop() {
            for (k, &(a, b, _)) in edges.iter().enumerate() {
                if k == skip || (a != n && b != n) {
                    continue;
                }
                let next = if a == n { b } else { a };
                if next == to {
                    return true;
                }
                if !seen.contains(&next) {
                    seen.push(next);
                    frontier.push(next);
                }
            }
        }
        false
    };
    for (k, &(a, b, _)) in edges.iter().enumerate() {
        if connected_without(k, a, b) {
            continue;
        }
        // Released cells on line `a` or `b` (a cell on another's line lies inside it; on a
        // grand total's line, inside it or that total itself).
        let on = |node: Node, i: usize| match node {
            Node::Line(l) => {
                l != i
                    && cells.strictly_inside(i, l)
                    && lines_of(i).is_some_and(|(x, y)| x == node || y == node)
            }
            Node::Grand(g, _) => {
                (i == g || cells.strictly_inside(i, g))
                    && lines_of(i).is_some_and(|(x, y)| x == node || y == node)
            }
            Node::Outside => false,
        };
        let mut candidates: Vec<usize> =
            (0..n_released).filter(|&i| on(a, i) || on(b, i)).collect();
        candidates.sort_by(|&x, &y| by_size(nest, cells.cells[x], cells.cells[y]));
        let victim = candidates.first().copied().or_else(|| {
            [a, b].into_iter().find_map(|n| match n {
                Node::Line(l) if l < n_released => Some(l),
                _ => None,
            })
        });
        return victim;
    }
    None
}

/// The published 1-D rule withholds the next-smallest cell *and its ties*: a released cell of
/// this result (`new`, as (id, position)) with the same participant count as a cell withheld
/// by complementary suppression (an offered row, `offered` by position) on the same line
/// (sharing its smallest released total). Returns the index in `new`.
fn tie_of_withheld(
    released: Released,
    new: &[(Id, Pos)],
    withheld: &[Pos],
    offered: &[bool],
) -> Option<usize> {
    let nest = released.fresh.nest;
    let line_of = |c: &Set| -> Option<&Set> {
        released
            .around(c)
            .into_iter()
            .min_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.iter().cmp(b.iter())))
    };
    let is_total = |c: Pos| withheld.iter().any(|&w| nest.strictly_inside(w, c));
    for &w in withheld.iter().filter(|&&w| offered[w as usize]) {
        let w = (w, nest.set(w));
        let Some(line) = line_of(w.1) else { continue };
        if let Some(k) = (0..new.len()).find(|&k| {
            let (at, c) = (new[k].1, nest.set(new[k].1));
            c.len() == w.1.len() && !is_total(at) && line_of(c) == Some(line)
        }) {
            return Some(k);
        }
    }
    None
}

fn small(n: u64, threshold: u64) -> bool {
    (1..=threshold).contains(&n)
}

/// What one decision is checked against: the sets withheld so far and the rules.
#[derive(Clone, Copy)]
struct Check<'a> {
    withheld: &'a SetIndex,
    threshold: u64,
    rules: Rules,
}

impl Check<'_> {
    fn small(&self, n: u64) -> bool {
        small(n, self.threshold)
    }

    /// Whether releasing `set` on top of `released` lets a protected group be solved.
    fn derivable(&self, set: &Set, released: Released) -> bool {
        let n = set.len();
        let inside = released.inside(set);
        let around = released.around(set);
        // As a total, against its released parts; as a part of each released total, with the
        // total's other released parts.
        let on_a_line = || {
            self.exposes(set, None, &inside)
                || around
                    .iter()
                    .any(|total| self.exposes(total, Some(set), &released.inside(total)))
        };
        if self.rules == Rules::Cells {
            return on_a_line();
        }
        // A released set that contains it, or that it contains, with 1..=T participants more:
        // the difference of the two counts is that small group. Two overlapping sets that
        // merely differ by a few participants reveal nothing by subtraction.
        if inside.iter().any(|r| self.small(n - r.len()))
            || around.iter().any(|u| self.small(u.len() - n))
        {
            return true;
        }
        // Two overlapping sets and their union: |A| + |B| - |A ∪ B| is their intersection,
        // and |A ∪ B| - |B| the part of A outside B.
        self.overlap_exposes(set, &inside, &around, released) || on_a_line()
    }

    /// Whether a line (a total and disjoint parts of it, whose counts add up) gives a
    /// protected group away: the rest its parts leave is exactly one withheld cell (solvable by
    /// subtraction, whatever its size), is made of withheld cells that together hold 1..=T
    /// participants, or — under the `Groups` rules — is any 1..=T participants. `parts` are
    /// the released sets strictly inside `total`.
    fn exposes(&self, total: &Set, start: Option<&Set>, parts: &[&Set]) -> bool {
        if parts.is_empty() && start.is_none() {
            return false;
        }
        let mut parts = parts.to_vec();
        // Disjoint parts taken largest first, then smallest first: two ways a line adds up.
        parts.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.iter().cmp(b.iter())));
        let largest_first = parts.clone();
        parts.reverse();
        for order in [largest_first, parts] {
            let mut disjoint = start.map(|s| s.bits().clone()).unwrap_or_default();
            for p in order {
                if p.is_disjoint(&disjoint) {
                    disjoint |= p.bits();
                }
            }
            if disjoint.is_empty() {
                continue;
            }
            let rest = total.bits() - &disjoint;
            let n = rest.len();
            if n == 0 {
                continue;
            }
            if self.rules == Rules::Groups && self.small(n) {
                return true;
            }
            let withheld = |lens| {
                self.withheld
                    .with_len(lens, 0)
                    .map(|id| self.withheld.get(id))
            };
            if withheld(n..=n).any(|w| *w.bits() == rest) {
                return true;
            }
            if self.small(n) {
                let mut covered = RoaringTreemap::new();
                for w in withheld(0..=n).filter(|w| w.is_subset(&rest)) {
                    covered |= w.bits();
                }
                if covered == rest {
                    return true;
                }
            }
        }
        false
    }

    /// `set` with a released set and their union released too (either as `set` or as the
    /// other two), where the intersection or one side's rest is 1..=T participants. `inside`
    /// and `around` are the released sets strictly inside and around `set`.
    fn overlap_exposes(
        &self,
        set: &Set,
        inside: &[&Set],
        around: &[&Set],
        released: Released,
    ) -> bool {
        let reveals = |a: u64, b: u64, union: u64| {
            self.small(a + b - union) || self.small(union - a) || self.small(union - b)
        };
        let n = set.len();
        let t = self.threshold;
        // `set` as one side: a released union U ⊋ set, and a released R ⊊ U, not nested with
        // `set`, with R ∪ set = U. R holds U's outside of `set`, so |R| >= |U| - n; only the
        // sizes where a count reveals something are looked at.
        for u in around {
            let (m, outside) = (u.len(), u.bits() - set.bits());
            // |R| - (m - n) participants of `set` in R, or m - |R| of U outside R (R ∩ set = ∅
            // at |R| = m - n: then `set` itself is that rest).
            let rest = m.saturating_sub(t).max(m - n)..=m - 1;
            let shared = m - n + 1..=(m - n).saturating_add(t).min(m - 1);
            // One walk when the two overlap (always when m - n <= T: `rest` is then all of
            // m - n..m, and every R reveals U's rest outside `set`).
            let lens: Vec<RangeInclusive<u64>> =
                if shared.start() <= rest.end() && rest.start() <= shared.end() {
                    vec![(*shared.start()).min(*rest.start())..=m - 1]
                } else {
                    vec![shared, rest]
                };
            for r in lens.into_iter().flat_map(|l| released.with_len(l)) {
                if r.subset_of(set)
                    || set.subset_of(r)
                    || !r.strict_subset_of(u)
                    || !outside.is_subset(r.bits())
                {
                    continue;
                }
                if reveals(n, r.len(), m) {
                    return true;
                }
            }
        }
        // `set` as the union of two released sets inside it: only pairs whose sizes reveal a
        // count (sorted by size, each side's partners found by binary search).
        let mut inside = inside.to_vec();
        inside.sort_by_key(|s| s.len());
        let lens: Vec<u64> = inside.iter().map(|s| s.len()).collect();
        let between = |lo: u64, hi: u64| {
            lens.partition_point(|&l| l < lo)..lens.partition_point(|&l| l <= hi)
        };
        for (i, a) in inside.iter().enumerate() {
            let la = a.len();
            let partners: Vec<std::ops::Range<usize>> = if self.small(n - la) {
                vec![between(n - la + 1, n)]
            } else {
                vec![
                    between(n - la + 1, (n - la).saturating_add(t)),
                    between(
                        (n - la)
                            .saturating_add(t)
                            .saturating_add(1)
                            .max(n.saturating_sub(t)),
                        n - 1,
                    ),
                ]
            };
            for j in partners.into_iter().flatten() {
                let b = inside[j];
                if j != i
                    && la + b.len() > n
                    && !a.subset_of(b)
                    && !b.subset_of(a)
                    && reveals(la, b.len(), n)
                    && (a.bits() | b.bits()).len() == n
                {
                    return true;
                }
            }
        }
        false
    }
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
        let rows = vec![
            offered(a),
            offered(total),
            offered(b),
            Row {
                set: Some(set(85..95)),
                offered: false,
            },
            Row {
                set: Some(set(95..100)),
                offered: false,
            },
        ];
        let d = released(ledger.decide("p", &rows, 20, Rules::Groups).unwrap());
        // Total and the larger part go; the last part would leave 15 uncovered: withheld.
        assert_eq!(d[..3], [true, true, false]);
    }

    #[test]
    fn differencing_across_queries() {
        let ledger = ReleaseLedger::default();
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(set(0..1000))], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
        // Same total minus 3 participants: refused.
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(set(3..1000))], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![false]
        );
        // Same set again: released again (deterministic).
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(set(0..1000))], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
        // Another principal has its own history.
        assert_eq!(
            released(
                ledger
                    .decide("q", &[offered(set(3..1000))], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
        // Far enough away: fine.
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(set(0..500))], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
    }

    #[test]
    fn order_of_rows_does_not_matter() {
        let sets = [set(0..100), set(0..60), set(60..90)];
        let rows: Vec<Row> = sets.iter().cloned().map(offered).collect();
        let reversed: Vec<Row> = sets.iter().rev().cloned().map(offered).collect();
        let a = released(
            ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Groups)
                .unwrap(),
        );
        let mut b = released(
            ReleaseLedger::default()
                .decide("p", &reversed, 20, Rules::Groups)
                .unwrap(),
        );
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
        let d = released(
            ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Groups)
                .unwrap(),
        );
        assert_eq!(d, vec![true, false, true, true]);
    }

    /// Two 2x2 blocks of withheld cells joined by one withheld cell: every line has two withheld
    /// cells, but the joining cell is a bridge.
    #[test]
    fn bridges_are_broken() {
        // A 4x4 table of cells of 30 participants each, with row and column totals and the
        // grand total; cell (i, j) holds ids [30*(4i+j), 30*(4i+j)+30).
        let cell = |i: u64, j: u64| set(30 * (4 * i + j)..30 * (4 * i + j) + 30);
        let mut rows = Vec::new();
        let withheld = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
        ];
        // (1,2) joins the two blocks; row 1 and column 2 each hold three withheld cells.
        let mut grand = RoaringTreemap::new();
        for i in 0..4 {
            let mut row = RoaringTreemap::new();
            let mut col = RoaringTreemap::new();
            for j in 0..4 {
                row |= cell(i, j);
                col |= cell(j, i);
                rows.push(Row {
                    set: Some(cell(i, j)),
                    offered: !withheld.contains(&(i, j)),
                });
            }
            grand |= &row;
            rows.push(offered(row));
            rows.push(offered(col));
        }
        rows.push(offered(grand));
        let d = released(
            ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Groups)
                .unwrap(),
        );
        // Some released inner cell was withheld in addition to break the bridge.
        let extra = rows
            .iter()
            .zip(&d)
            .filter(|(r, ok)| r.offered && !**ok && r.set.as_ref().unwrap().len() == 30)
            .count();
        assert!(extra >= 1, "the bridge cell (1,2) stays solvable");
    }

    /// A 1-D line whose next-smallest cells are tied: both go.
    #[test]
    fn next_smallest_takes_its_ties() {
        let rows = vec![
            offered(set(0..200)),
            offered(set(0..100)),
            offered(set(100..140)),
            offered(set(140..180)),
            Row {
                set: Some(set(180..200)),
                offered: false,
            },
        ];
        let d = released(
            ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Groups)
                .unwrap(),
        );
        assert_eq!(d[..4], [true, true, false, false]);
    }

    /// The same rows in any order give the same decisions, row by row.
    #[test]
    fn decisions_do_not_depend_on_row_order() {
        let rows = vec![
            offered(set(0..100)),
            offered(set(0..50)),
            offered(set(50..85)),
            Row {
                set: Some(set(85..100)),
                offered: false,
            },
            offered(set(200..300)),
            offered(set(200..240)),
            offered(set(240..280)),
            Row {
                set: Some(set(280..300)),
                offered: false,
            },
        ];
        let decide = |rows: &[Row]| {
            ReleaseLedger::default()
                .decide("p", rows, 20, Rules::Cells)
                .unwrap()
        };
        let first = decide(&rows);
        for shift in 1..rows.len() {
            let mut turned = rows.clone();
            turned.rotate_left(shift);
            let mut again = decide(&turned);
            again.rotate_right(shift);
            assert_eq!(again, first, "rows rotated by {shift}");
        }
        let mut reversed = rows.clone();
        reversed.reverse();
        let mut again = decide(&reversed);
        again.reverse();
        assert_eq!(again, first);
    }

    /// Row-level rules: two released sets a few participants apart reveal no suppressed cell of
    /// the result, so both go; a line's suppressed cell is still protected.
    #[test]
    fn cell_rules_protect_suppressed_cells_only() {
        let ledger = ReleaseLedger::default();
        let rows = [offered(set(0..1000)), offered(set(3..1000))];
        assert_eq!(
            released(ledger.decide("p", &rows, 20, Rules::Cells).unwrap()),
            vec![true, true]
        );
        let line = vec![
            offered(set(0..100)),
            offered(set(0..50)),
            offered(set(50..85)),
            Row {
                set: Some(set(85..100)),
                offered: false,
            },
        ];
        let d = ReleaseLedger::default()
            .decide("p", &line, 20, Rules::Cells)
            .unwrap();
        assert_eq!(released(d.clone())[..3], [true, true, false]);
        assert_eq!(d[2], Decision::Complementary);
        // Overlapping parts that do not add up to the total reveal nothing.
        let overlapping = vec![
            offered(set(0..100)),
            offered(set(0..60)),
            offered(set(30..90)),
        ];
        assert_eq!(
            released(
                ReleaseLedger::default()
                    .decide("p", &overlapping, 20, Rules::Cells)
                    .unwrap()
            ),
            vec![true, true, true]
        );
    }

    /// Whether `target`'s count follows from the `released` counts by addition and
    /// subtraction: its indicator is in the span of theirs (over the atoms of the sets'
    /// Venn diagram), by Gaussian elimination.
    fn in_span(released: &[RoaringTreemap], target: &RoaringTreemap) -> bool {
        let mut all = target.clone();
        for r in released {
            all |= r;
        }
        let mut atoms: Vec<Vec<bool>> = all
            .iter()
            .map(|x| {
                released
                    .iter()
                    .chain([target])
                    .map(|r| r.contains(x))
                    .collect()
            })
            .collect();
        atoms.sort();
        atoms.dedup();
        let rank = |rows: usize| {
            let mut m: Vec<Vec<f64>> = (0..rows)
                .map(|r| atoms.iter().map(|a| f64::from(u8::from(a[r]))).collect())
                .collect();
            let (mut rank, cols) = (0, atoms.len());
            for c in 0..cols {
                let Some(p) = (rank..m.len()).find(|&r| m[r][c].abs() > 1e-9) else {
                    continue;
                };
                m.swap(rank, p);
                let pivot = m[rank].clone();
                for (r, row) in m.iter_mut().enumerate() {
                    if r != rank && row[c].abs() > 1e-9 {
                        let f = row[c] / pivot[c];
                        for (x, p) in row.iter_mut().zip(&pivot) {
                            *x -= f * p;
                        }
                    }
                }
                rank += 1;
            }
            rank
        };
        rank(released.len()) == rank(released.len() + 1)
    }

    /// Margins with gaps and chains through cells withheld to protect another: a suppressed
    /// cell W = (F, X) of a 2 x 2 table whose (F, Y) cell is not in the result, with row totals
    /// R_F, R_M and column totals C_X, C_Y, in every combination of rows. Withholding (M, X)
    /// for W puts (M, X)'s own lines in play (R_M − (M, Y)): those take part too, and no
    /// combination leaves W solvable from what is released.
    #[test]
    fn chains_through_complementary_cells_are_broken() {
        let w = set(0..3);
        let cells = [
            set(3..43),               // (M, X)
            set(43..93),              // (M, Y)
            set(0..3) | set(93..153), // R_F: W and (F, Y), which is no cell
            set(3..93),               // R_M
            set(0..43),               // C_X
            set(43..153),             // C_Y
        ];
        for mask in 1u32..(1 << cells.len()) {
            let mut rows = vec![Row {
                set: Some(w.clone()),
                offered: false,
            }];
            let chosen: Vec<&RoaringTreemap> = (0..cells.len())
                .filter(|k| mask & (1 << k) != 0)
                .map(|k| &cells[k])
                .collect();
            rows.extend(chosen.iter().map(|&c| offered(c.clone())));
            let d = ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Cells)
                .unwrap();
            let released: Vec<RoaringTreemap> = (1..rows.len())
                .filter(|&i| d[i].released())
                .map(|i| rows[i].set.clone().unwrap())
                .collect();
            assert!(
                !in_span(&released, &w),
                "cells {mask:06b}: the suppressed cell follows from {} released",
                released.len()
            );
        }
    }

    /// Aggregates-only rules: two overlapping sets and their union give the intersection away.
    #[test]
    fn group_rules_see_intersections() {
        let ledger = ReleaseLedger::default();
        let a = set(0..100);
        let b = set(95..300);
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(a.clone())], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
        assert_eq!(
            released(
                ledger
                    .decide("p", &[offered(b.clone())], 20, Rules::Groups)
                    .unwrap()
            ),
            vec![true]
        );
        // |A| + |B| - |A ∪ B| = 5.
        let d = ledger
            .decide("p", &[offered(&a | &b)], 20, Rules::Groups)
            .unwrap();
        assert_eq!(d, vec![Decision::Differencing]);
    }

    /// Past its budget a principal's protected results are refused, never decided against a
    /// history with its oldest releases forgotten.
    #[test]
    fn a_full_ledger_refuses() {
        let ledger = ReleaseLedger {
            budget: 1,
            ..ReleaseLedger::default()
        };
        assert!(
            ledger
                .decide("p", &[offered(set(0..1000))], 20, Rules::Groups)
                .is_ok()
        );
        assert!(
            ledger
                .decide("p", &[offered(set(0..500))], 20, Rules::Groups)
                .is_err()
        );
        assert!(
            ledger
                .decide("q", &[offered(set(0..500))], 20, Rules::Groups)
                .is_ok()
        );
    }

    /// A threshold raised after releases (T 1 → 2): U and R ⊂ U two apart were released under
    /// the old one; the part of U outside R, offered now, is solvable (|U| - |R|) and withheld.
    #[test]
    fn a_raised_threshold_sees_old_releases() {
        let ledger = ReleaseLedger::default();
        let both = ledger
            .decide(
                "p",
                &[offered(set(1..11)), offered(set(3..11))],
                1,
                Rules::Groups,
            )
            .unwrap();
        assert_eq!(released(both), [true, true]);
        let d = ledger
            .decide("p", &[offered(set(1..3))], 2, Rules::Groups)
            .unwrap();
        assert_eq!(released(d), [false]);
    }

    fn released(d: Vec<Decision>) -> Vec<bool> {
        d.into_iter().map(Decision::released).collect()
    }

    fn offered(set: RoaringTreemap) -> Row {
        Row {
            set: Some(set),
            offered: true,
        }
    }

    #[test]
    fn sketches_on_several_threads_equal_one_thread() {
        // Cells of a large result (uneven sizes, a missing set), past PARALLEL_FROM.
        let mut next = super::super::sets::testing::numbers(17);
        let rows: Vec<Row> = (0..300u64)
            .map(|k| Row {
                set: (k % 50 != 7).then(|| (0..next() % 3_000).map(|_| next() % 200_000).collect()),
                offered: true,
            })
            .collect();
        let participants: u64 = rows.iter().flat_map(|r| &r.set).map(|s| s.len()).sum();
        assert!(participants >= PARALLEL_FROM);
        let serial: Vec<Option<Set>> = rows.iter().map(|r| r.set.clone().map(Set::new)).collect();
        let parallel = sketched(&rows);
        assert_eq!(parallel.len(), serial.len());
        for (p, s) in parallel.iter().zip(&serial) {
            assert_eq!(p, s);
            if let (Some(p), Some(s)) = (p, s) {
                assert_eq!(p.fingerprint(), s.fingerprint());
                assert_eq!((p.key(), p.probes()), (s.key(), s.probes()));
            }
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
        let d = released(
            ReleaseLedger::default()
                .decide("p", &rows, 20, Rules::Groups)
                .unwrap(),
        );
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
