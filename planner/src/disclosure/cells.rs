//! What decides a statistical cell's fate, as functions the lineage rewrite adds to plans:
//! `strata_cell_check(participants [, dominated])` gives each cell a reason code (0: releasable),
//! `strata_protect(value, code)` replaces an aggregates-only principal's cell by its protected
//! form where it is computed, `strata_mask(value, code…)` suppresses a result cell at the output
//! and counts it by reason, and `strata_dominance(value, lineage…)` applies the (n, k) and p %
//! rules to a magnitude cell. None of them is registered where a caller could name it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, UInt8Array};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, UInt64Type};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use serde::Deserialize;

use crate::participants::{deserialize, selection, visited};

/// Why a cell is suppressed: bits of a cell's reason code (0: it may be released).
pub mod reason {
    /// Its own participant count is 1..=T.
    pub const THRESHOLD: u8 = 1;
    /// A few participants dominate its magnitude.
    pub const DOMINANCE: u8 = 2;
    /// Computed over suppressed cells (a window total over a line with a suppressed cell).
    pub const COMPLEMENTARY: u8 = 4;
}

/// How much protection a principal gets (DESIGN.md, "Disclosure control").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Registered or controlled tier, egress `rows`: everything inside a query is exact, the
    /// result's statistical cells are checked.
    RowLevel,
    /// Public tier or egress `aggregates`: every use of a statistical cell sees its protected
    /// value; counts are rounded; released sets are remembered across queries.
    AggregatesOnly,
}

/// `[disclosure.dominance]`: the (n, k) rule and the p % rule for magnitude cells.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dominance {
    /// The largest `n` contributions …
    pub n: usize,
    /// … may not exceed `k` percent of the cell's total.
    pub k: f64,
    /// The total less the two largest contributions must be more than `p` percent of the
    /// largest (else the second largest contributor can estimate the largest within p %).
    pub p: f64,
}

impl Default for Dominance {
    fn default() -> Self {
        // ACRO's and the statistical agencies' defaults.
        Dominance {
            n: 2,
            k: 90.0,
            p: 10.0,
        }
    }
}

impl Dominance {
    pub fn validate(&self) -> Result<(), String> {
        if self.n < 1 {
            return Err("disclosure.dominance.n must be at least 1".into());
        }
        if !(0.0..=100.0).contains(&self.k) || !(0.0..=100.0).contains(&self.p) {
            return Err("disclosure.dominance.k and .p are percentages (0 to 100)".into());
        }
        Ok(())
    }

    /// Whether contributions (one per contributor, any order) are dominated.
    pub fn dominated(&self, contributions: &mut [f64]) -> bool {
        for c in contributions.iter_mut() {
            *c = c.abs();
        }
        let total: f64 = contributions.iter().sum();
        if total <= 0.0 {
            return false;
        }
        // Only the largest few decide: select them rather than sort a large cell's every
        // contributor.
        let largest_first = |a: &f64, b: &f64| b.total_cmp(a);
        let top = self.n.max(2).min(contributions.len());
        if top < contributions.len() {
            contributions.select_nth_unstable_by(top - 1, largest_first);
        }
        let top = &mut contributions[..top];
        top.sort_by(largest_first);
        let top_n: f64 = top.iter().take(self.n).sum();
        if top_n > self.k / 100.0 * total {
            return true;
        }
        let largest = top[0];
        let second = top.get(1).copied().unwrap_or(0.0);
        total - largest - second < self.p / 100.0 * largest
    }
}

impl PartialEq for Dominance {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
            && self.k.to_bits() == other.k.to_bits()
            && self.p.to_bits() == other.p.to_bits()
    }
}

impl Eq for Dominance {}

impl std::hash::Hash for Dominance {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.n.hash(state);
        self.k.to_bits().hash(state);
        self.p.to_bits().hash(state);
    }
}

/// How a principal's cells are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protection {
    /// Participant counts 1..=threshold are suppressed.
    pub threshold: u64,
    /// Counts are rounded up to a multiple of this (aggregates-only principals).
    pub rounding: Option<u64>,
    pub level: Level,
    pub dominance: Dominance,
}

/// Cells of one result suppressed, by reason.
#[derive(Debug, Default)]
pub struct SuppressionCounter {
    threshold: AtomicU64,
    dominance: AtomicU64,
    complementary: AtomicU64,
    differencing: AtomicU64,
}

/// The reasons a report names, as they appear in the schema metadata and the audit record.
pub const REASONS: [&str; 4] = ["threshold", "complementary", "dominance", "differencing"];

impl SuppressionCounter {
    pub fn get(&self) -> u64 {
        REASONS.iter().map(|r| self.of(r)).sum()
    }

    pub fn of(&self, reason: &str) -> u64 {
        self.slot(reason)
            .map_or(0, |slot| slot.load(Ordering::Relaxed))
    }

    pub fn add(&self, reason: &str, n: u64) {
        if let Some(slot) = self.slot(reason) {
            slot.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn slot(&self, reason: &str) -> Option<&AtomicU64> {
        Some(match reason {
            "threshold" => &self.threshold,
            "dominance" => &self.dominance,
            "complementary" => &self.complementary,
            "differencing" => &self.differencing,
            _ => return None,
        })
    }

    /// Counts one cell suppressed for `code` (its first reason).
    fn count_code(&self, code: u8) {
        let slot = if code & reason::THRESHOLD != 0 {
            &self.threshold
        } else if code & reason::DOMINANCE != 0 {
            &self.dominance
        } else {
            &self.complementary
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

fn udf(imp: impl ScalarUDFImpl + 'static) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(imp))
}

/// `strata_cell_check(participants, sub-cell participants… [, dominated])`: the cell's reason
/// code.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CellCheck {
    threshold: u64,
    signature: Signature,
}

pub fn cell_check_udf(threshold: u64) -> Arc<ScalarUDF> {
    udf(CellCheck {
        threshold,
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
    })
}

/// Participant counts of a lineage column: a bitmap's cardinality, a count, or one per id.
fn participant_counts(lineage: &ArrayRef) -> DfResult<Vec<u64>> {
    Ok(match lineage.data_type() {
        DataType::Binary => {
            let sets = lineage.as_binary::<i32>();
            (0..sets.len())
                .map(|i| {
                    if sets.is_null(i) {
                        Ok(0)
                    } else {
                        deserialize(sets.value(i)).map(|s| s.len())
                    }
                })
                .collect::<DfResult<_>>()?
        }
        DataType::UInt64 => {
            let c = lineage.as_primitive::<UInt64Type>();
            (0..c.len())
                .map(|i| if c.is_null(i) { 0 } else { c.value(i) })
                .collect()
        }
        DataType::Int64 => (0..lineage.len())
            .map(|i| u64::from(lineage.is_valid(i)))
            .collect(),
        other => return exec_err!("strata_cell_check: unexpected lineage type {other}"),
    })
}

impl ScalarUDFImpl for CellCheck {
    fn name(&self) -> &str {
        "strata_cell_check"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // Participant sets or counts (the cell's own, then its sub-cells'), each checked
        // against the threshold, and the dominance flag (Boolean).
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let t = self.threshold;
        let mut codes = vec![0u8; args.number_rows];
        for array in &arrays {
            if let Some(dominated) = array.as_boolean_opt() {
                for (i, code) in codes.iter_mut().enumerate() {
                    if dominated.is_valid(i) && dominated.value(i) {
                        *code |= reason::DOMINANCE;
                    }
                }
                continue;
            }
            for (code, n) in codes.iter_mut().zip(participant_counts(array)?) {
                if (1..=t).contains(&n) {
                    *code |= reason::THRESHOLD;
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(UInt8Array::from(codes))))
    }
}

/// Codes of several columns OR-ed row by row (NULL counts as 0).
fn combined_codes(codes: &[ArrayRef], rows: usize) -> DfResult<Vec<u8>> {
    let mut out = vec![0u8; rows];
    for c in codes {
        let c = arrow::compute::cast(c, &DataType::UInt8)?;
        let c = c.as_primitive::<arrow::datatypes::UInt8Type>();
        for (i, o) in out.iter_mut().enumerate() {
            if c.is_valid(i) {
                *o |= c.value(i);
            }
        }
    }
    Ok(out)
}

/// `(value, code…)` arguments: the value, NULL where any code is set, and the combined codes.
fn value_and_codes(args: ScalarFunctionArgs) -> DfResult<(ArrayRef, Vec<u8>)> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let codes = combined_codes(&arrays[1..], args.number_rows)?;
    let withhold: BooleanArray = codes.iter().map(|&c| Some(c != 0)).collect();
    Ok((arrow::compute::nullif(&arrays[0], &withhold)?, codes))
}

pub const PROTECT: &str = "strata_protect";
pub const PROTECT_ROUNDED: &str = "strata_protect_rounded";
pub const MASK: &str = "strata_mask";

/// `strata_protect(value, code)`: an aggregates-only principal's cell as every later use sees
/// it: NULL unless releasable, counts rounded up.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Protect {
    /// Round this cell (it is a count).
    rounding: Option<u64>,
    signature: Signature,
}

pub fn protect_udf(protection: Protection, is_count: bool) -> Arc<ScalarUDF> {
    udf(Protect {
        rounding: protection.rounding.filter(|&b| is_count && b > 1),
        signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable),
    })
}

impl ScalarUDFImpl for Protect {
    fn name(&self) -> &str {
        // The two forms differ by name: a plan shipped to a cluster worker names its functions,
        // and the worker must find the form the coordinator planned.
        match self.rounding {
            Some(_) => PROTECT_ROUNDED,
            None => PROTECT,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (kept, _) = value_and_codes(args)?;
        Ok(ColumnarValue::Array(match self.rounding {
            Some(base) => round_up(&kept, base)?,
            None => kept,
        }))
    }
}

/// Counts rounded up to the next multiple of `base` (0 stays 0).
fn round_up(values: &ArrayRef, base: u64) -> DfResult<ArrayRef> {
    let as_i64 = arrow::compute::cast(values, &DataType::Int64)?;
    let v = as_i64.as_primitive::<Int64Type>();
    let b = base as i64;
    let rounded: arrow::array::Int64Array = v
        .iter()
        .map(|x| x.map(|x| if x <= 0 { x } else { (x + b - 1) / b * b }))
        .collect();
    Ok(arrow::compute::cast(&rounded, values.data_type())?)
}

/// `strata_mask(value, code…)`: a result cell, NULL where any of its codes is set; counts the
/// suppressed cells of the result by reason.
#[derive(Debug)]
struct Mask {
    counter: Arc<SuppressionCounter>,
    signature: Signature,
}

impl PartialEq for Mask {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.counter, &other.counter)
    }
}

impl Eq for Mask {}

impl std::hash::Hash for Mask {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.counter).hash(state);
    }
}

pub fn mask_udf(counter: Arc<SuppressionCounter>) -> Arc<ScalarUDF> {
    udf(Mask {
        counter,
        // Volatile: evaluated once per result row, never folded or shared.
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Volatile),
    })
}

impl ScalarUDFImpl for Mask {
    fn name(&self) -> &str {
        MASK
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (kept, codes) = value_and_codes(args)?;
        for &c in codes.iter().filter(|&&c| c != 0) {
            self.counter.count_code(c);
        }
        Ok(ColumnarValue::Array(kept))
    }
}

/// `strata_dominance(value, lineage…)`: whether a magnitude cell is dominated. Contributions
/// are summed per contributor: the participant of a row (its first person id), or, for a row
/// that is itself a group of participants (an inner aggregate), that group.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DominanceUdaf {
    rule: Dominance,
    signature: Signature,
}

pub fn dominance_udaf(rule: Dominance) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(DominanceUdaf {
        rule,
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
    }))
}

impl AggregateUDFImpl for DominanceUdaf {
    fn name(&self) -> &str {
        "strata_dominance"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            "contributions",
            DataType::Binary,
            false,
        ))])
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(Contributions {
            rule: self.rule,
            cell: Contributed::default(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(ContributionGroups::new(self.rule)))
    }

    fn default_value(&self, _data_type: &DataType) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Boolean(Some(false)))
    }
}

/// Keys of contributors that are groups, apart from person ids.
const GROUP_KEY: u64 = 1 << 63;

/// The contributor of each row (`None`: the row has no lineage).
fn contributors(lineage: &[ArrayRef], rows: usize) -> Vec<Option<u64>> {
    use std::hash::{Hash, Hasher};
    let mut out = vec![None; rows];
    for array in lineage {
        match array.data_type() {
            DataType::Int64 => {
                let ids = array.as_primitive::<Int64Type>();
                for (i, o) in out.iter_mut().enumerate() {
                    if o.is_none() && ids.is_valid(i) {
                        *o = Some(ids.value(i) as u64 & !GROUP_KEY);
                    }
                }
            }
            DataType::Binary => {
                let sets = array.as_binary::<i32>();
                for (i, o) in out.iter_mut().enumerate() {
                    if o.is_none() && sets.is_valid(i) {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        sets.value(i).hash(&mut h);
                        *o = Some(h.finish() | GROUP_KEY);
                    }
                }
            }
            // Everyone on the other side of an anti join: not a contributor of the value.
            _ => {}
        }
    }
    out
}

/// Calls `add(row, contributor, value)` for every row of a batch (`values[0]` the value, the
/// rest the lineage) that has a value, a contributor and passes `filter`.
fn for_each_contribution(
    values: &[ArrayRef],
    filter: Option<&BooleanArray>,
    mut add: impl FnMut(usize, u64, f64),
) -> DfResult<()> {
    let v = arrow::compute::cast(&values[0], &DataType::Float64)?;
    let v = v.as_primitive::<Float64Type>();
    let selected = selection(filter);
    let rows = visited(v.len(), v.nulls(), selected.as_ref());
    match &values[1..] {
        // One participant per row, the usual lineage: read the ids in place.
        [ids] if ids.data_type() == &DataType::Int64 => {
            let ids = ids.as_primitive::<Int64Type>();
            let rows = match ids.nulls() {
                Some(nulls) => &rows & nulls.inner(),
                None => rows,
            };
            let (ids, v) = (ids.values(), v.values());
            if rows.count_set_bits() == rows.len() {
                for (i, (&id, &v)) in ids.iter().zip(v.iter()).enumerate() {
                    add(i, id as u64 & !GROUP_KEY, v);
                }
            } else {
                for i in rows.set_indices() {
                    add(i, ids[i] as u64 & !GROUP_KEY, v[i]);
                }
            }
        }
        lineage => {
            let who = contributors(lineage, v.len());
            for i in rows.set_indices() {
                if let Some(w) = who[i] {
                    add(i, w, v.value(i));
                }
            }
        }
    }
    Ok(())
}

/// Pairs a cell holds before the first compaction.
const COMPACT_AT: usize = 4096;

/// One cell's contributions: (contributor, sum) pairs. Rows come sorted by person (files are),
/// so a contributor's rows mostly arrive together and add to the last pair; a new pair is
/// pushed when the contributor changes, and pairs of one contributor are summed by sorting
/// now and then (whenever the pairs have doubled). A map probed per contributor cost more: a
/// large cell's map misses the cache on nearly every probe.
#[derive(Debug, Default)]
struct Contributed {
    pairs: Vec<(u64, f64)>,
    /// The pairs after the last compaction (sorted, one per contributor).
    compacted: usize,
}

impl Contributed {
    /// Adds a contribution; returns the change in pairs held.
    fn add(&mut self, who: u64, value: f64) -> isize {
        if let Some((w, sum)) = self.pairs.last_mut()
            && *w == who
        {
            *sum += value;
            return 0;
        }
        let before = self.pairs.len();
        self.pairs.push((who, value));
        if self.pairs.len() >= COMPACT_AT.max(2 * self.compacted) {
            self.compact();
        }
        self.pairs.len() as isize - before as isize
    }

    /// Sums each contributor's pairs into one. The sort is stable and the pairs are sorted
    /// runs (the last compaction's, then each file's order), which it merges in near-linear
    /// time.
    fn compact(&mut self) {
        self.pairs.sort_by_key(|&(w, _)| w);
        self.pairs.dedup_by(|(w, v), (kept_w, kept_v)| {
            let same = w == kept_w;
            if same {
                *kept_v += *v;
            }
            same
        });
        self.compacted = self.pairs.len();
    }

    /// One pair per contributor; returns the change in pairs held.
    fn settle(&mut self) -> isize {
        let before = self.pairs.len();
        if before != self.compacted {
            self.compact();
        }
        self.pairs.len() as isize - before as isize
    }

    fn dominated(&mut self, rule: &Dominance) -> bool {
        self.settle();
        let mut c: Vec<f64> = self.pairs.iter().map(|&(_, v)| v).collect();
        !c.is_empty() && rule.dominated(&mut c)
    }

    fn state(&mut self) -> Vec<u8> {
        self.settle();
        let mut bytes = Vec::with_capacity(self.pairs.len() * 16);
        for (k, v) in &self.pairs {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    /// Adds a partial state's pairs; returns the change in pairs held.
    fn merge(&mut self, state: &[u8]) -> isize {
        let mut change = 0;
        for pair in state.chunks_exact(16) {
            let k = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let v = f64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            change += self.add(k, v);
        }
        change
    }

    fn entries(&self) -> usize {
        self.pairs.len()
    }
}

#[derive(Debug)]
struct Contributions {
    rule: Dominance,
    cell: Contributed,
}

impl Accumulator for Contributions {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let cell = &mut self.cell;
        for_each_contribution(values, None, |_, w, v| {
            cell.add(w, v);
        })
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Boolean(Some(self.cell.dominated(&self.rule))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.cell.pairs.capacity() * 16
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.cell.state()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let states = states[0].as_binary::<i32>();
        for i in 0..states.len() {
            if states.is_valid(i) {
                self.cell.merge(states.value(i));
            }
        }
        Ok(())
    }
}

/// The grouped form, so that DataFusion does not split every batch by group for a per-group
/// accumulator (which cost more than the contributions themselves).
#[derive(Debug)]
struct ContributionGroups {
    rule: Dominance,
    cells: Vec<Contributed>,
    /// Contributors held, over all cells: DataFusion asks for the size after every batch.
    entries: usize,
}

impl ContributionGroups {
    fn new(rule: Dominance) -> Self {
        ContributionGroups {
            rule,
            cells: Vec::new(),
            entries: 0,
        }
    }

    fn grow(&mut self, total_num_groups: usize) {
        if self.cells.len() < total_num_groups {
            self.cells
                .resize_with(total_num_groups, Contributed::default);
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<Contributed> {
        let taken = emit_to.take_needed(&mut self.cells);
        self.entries -= taken.iter().map(Contributed::entries).sum::<usize>();
        taken
    }
}

impl GroupsAccumulator for ContributionGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.grow(total_num_groups);
        let (cells, entries) = (&mut self.cells, &mut self.entries);
        for_each_contribution(values, opt_filter, |row, w, v| {
            *entries = entries.wrapping_add_signed(cells[group_indices[row]].add(w, v));
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        let rule = self.rule;
        let dominated: BooleanArray = self
            .take(emit_to)
            .iter_mut()
            .map(|c| Some(c.dominated(&rule)))
            .collect();
        Ok(Arc::new(dominated))
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        let states: BinaryArray = self
            .take(emit_to)
            .iter_mut()
            .map(|c| Some(c.state()))
            .collect();
        Ok(vec![Arc::new(states)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.grow(total_num_groups);
        let states = values[0].as_binary::<i32>();
        for (row, &g) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                let change = self.cells[g].merge(states.value(row));
                self.entries = self.entries.wrapping_add_signed(change);
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let mut states: Vec<Option<Vec<u8>>> = vec![Some(Vec::new()); values[0].len()];
        for_each_contribution(values, opt_filter, |row, w, v| {
            let mut cell = Contributed::default();
            cell.add(w, v);
            states[row] = Some(cell.state());
        })?;
        Ok(vec![Arc::new(states.into_iter().collect::<BinaryArray>())])
    }

    fn size(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Contributed>() + self.entries * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_keeps_zero() {
        let v: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            Some(0),
            Some(1),
            Some(20),
            Some(21),
            None,
        ]));
        let r = round_up(&v, 20).unwrap();
        let r = r.as_primitive::<Int64Type>();
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![Some(0), Some(20), Some(20), Some(40), None]
        );
    }

    /// The grouped accumulator decides as one plain accumulator per group would, through a
    /// filter, split over two partial accumulators and merged, with a contributor's rows
    /// spread over batches and interleaved with other groups'.
    #[test]
    fn grouped_contributions_decide_as_per_group_ones() {
        let rule = Dominance::default();
        let grouped = || ContributionGroups::new(rule);
        // Group 0: person 1 dominates (one large value spread over rows); group 1: even;
        // group 2: person 7's large value is filtered out, so even; group 3: a value from a
        // group contributor (an inner aggregate's set) dominates.
        let rows: Vec<(usize, Option<i64>, Option<f64>, bool)> = vec![
            (0, Some(1), Some(500.0), true),
            (1, Some(2), Some(10.0), true),
            (0, Some(1), Some(480.0), true),
            (0, Some(2), Some(5.0), true),
            (0, Some(3), Some(5.0), true),
            (1, Some(3), Some(10.0), true),
            (0, Some(4), Some(6.0), true),
            (1, Some(4), Some(10.0), true),
            (2, Some(7), Some(9_000.0), false),
            (2, Some(5), Some(10.0), true),
            (2, Some(6), Some(10.0), true),
            (1, Some(5), None, true),
            (2, Some(8), Some(11.0), true),
            (3, None, Some(900.0), true),
            (3, Some(9), Some(1.0), true),
            (3, Some(10), Some(1.0), true),
            (3, Some(11), Some(1.0), true),
            (2, Some(9), Some(10.0), true),
            (1, Some(6), Some(12.0), true),
            (1, Some(7), Some(11.0), true),
        ];
        let set = crate::participants::serialize(&[1u64, 2].into_iter().collect());
        let batch = |rows: &[(usize, Option<i64>, Option<f64>, bool)]| {
            let values: ArrayRef = Arc::new(arrow::array::Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ));
            let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ));
            let sets: ArrayRef = Arc::new(BinaryArray::from(
                rows.iter()
                    .map(|r| r.1.is_none().then_some(set.as_slice()))
                    .collect::<Vec<_>>(),
            ));
            let filter = BooleanArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>());
            let groups: Vec<usize> = rows.iter().map(|r| r.0).collect();
            (vec![values, ids, sets], filter, groups)
        };
        let mut parts = [grouped(), grouped()];
        for (k, chunk) in rows.chunks(3).enumerate() {
            let (values, filter, groups) = batch(chunk);
            parts[k % 2]
                .update_batch(&values, &groups, Some(&filter), 4)
                .unwrap();
        }
        let mut merged = grouped();
        for part in &mut parts {
            let state = part.state(EmitTo::All).unwrap();
            let n = state[0].len();
            merged
                .merge_batch(&state, &(0..n).collect::<Vec<_>>(), 4)
                .unwrap();
        }
        let held: usize = merged.cells.iter().map(Contributed::entries).sum();
        assert_eq!(
            merged.entries, held,
            "the pairs held, as size() reports them"
        );
        for cell in &mut merged.cells {
            cell.settle();
        }
        let held: usize = merged.cells.iter().map(Contributed::entries).sum();
        assert_eq!(held, 17, "one pair per (cell, contributor) once settled");
        let got = merged.evaluate(EmitTo::All).unwrap();
        let got: Vec<bool> = got.as_boolean().iter().map(|b| b.unwrap()).collect();
        let expected: Vec<bool> = (0..4)
            .map(|g| {
                let kept: Vec<_> = rows.iter().filter(|r| r.0 == g && r.3).cloned().collect();
                let (values, _, _) = batch(&kept);
                let mut plain = Contributions {
                    rule,
                    cell: Contributed::default(),
                };
                plain.update_batch(&values).unwrap();
                plain.evaluate().unwrap() == ScalarValue::Boolean(Some(true))
            })
            .collect();
        assert_eq!(got, vec![true, false, false, true]);
        assert_eq!(got, expected);
        // Partial aggregation skipped (each row its own state), as DataFusion does when the
        // groups barely reduce the rows.
        let (values, filter, groups) = batch(&rows);
        let mut direct = grouped();
        let state = direct.convert_to_state(&values, Some(&filter)).unwrap();
        direct.merge_batch(&state, &groups, 4).unwrap();
        let direct = direct.evaluate(EmitTo::All).unwrap();
        let direct: Vec<bool> = direct.as_boolean().iter().map(|b| b.unwrap()).collect();
        assert_eq!(direct, expected);
    }

    /// Sums per contributor through many compactions equal a map's, whatever the arrival
    /// order: sorted runs (files), interleaved runs, and scattered contributors.
    #[test]
    fn contributions_summed_per_contributor() {
        let orders: [fn(u64) -> u64; 3] = [
            |i| i / 7,
            |i| if i % 2 == 0 { i / 14 } else { 100_000 + i / 14 },
            |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 5_003,
        ];
        for who in orders {
            let mut cell = Contributed::default();
            let mut expected = std::collections::HashMap::new();
            let mut held: isize = 0;
            for i in 0..60_000u64 {
                let v = (i % 13) as f64;
                held += cell.add(who(i), v);
                *expected.entry(who(i)).or_insert(0.0) += v;
                assert!(cell.pairs.len() <= 2 * expected.len() + COMPACT_AT);
            }
            assert_eq!(held, cell.entries() as isize);
            held += cell.settle();
            assert_eq!(held, expected.len() as isize);
            let mut state = Contributed::default();
            state.merge(&cell.state());
            state.settle();
            for (w, v) in &state.pairs {
                assert_eq!(expected[w], *v, "contributor {w}");
            }
            assert_eq!(state.pairs.len(), expected.len());
        }
    }

    #[test]
    fn dominance_rules() {
        let rule = Dominance::default();
        // Two contributors hold 95 % of the total: (n, k) rule.
        assert!(rule.dominated(&mut [50.0, 45.0, 1.0, 1.0, 1.0, 1.0, 1.0]));
        // Evenly spread: neither rule.
        assert!(!rule.dominated(&mut [10.0; 30]));
        // With k = 90, p = 10 never decides alone (a rest under 10 % of the largest is under
        // 10 % of the total); with k = 99 it does: the rest is 5 % of the largest.
        let p_only = Dominance { k: 99.0, ..rule };
        assert!(!Dominance { p: 0.0, ..p_only }.dominated(&mut [100.0, 10.0, 1.0, 2.0, 2.0]));
        assert!(p_only.dominated(&mut [100.0, 10.0, 1.0, 2.0, 2.0]));
        // The rest is 20 % of the largest: safe by p %, and the top two are 70 %.
        assert!(!rule.dominated(&mut [50.0, 20.0, 5.0, 5.0, 5.0, 5.0]));
        // The largest anywhere among many, negative values by their size.
        let mut many = vec![1.0; 500];
        many[250] = -6_000.0;
        assert!(rule.dominated(&mut many));
        let mut many = vec![1.0; 500];
        many[499] = 30.0;
        many[3] = 20.0;
        assert!(!rule.dominated(&mut many.clone()));
        assert!(
            Dominance {
                n: 3,
                k: 8.0,
                ..rule
            }
            .dominated(&mut many)
        );
    }
}
