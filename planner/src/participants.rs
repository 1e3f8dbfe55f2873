//! The functions disclosure control adds to plans: `strata_participants(…)`, an aggregate that
//! unions the participants of a group into a roaring bitmap (person ids as Int64 columns, or
//! bitmaps of inner aggregates as Binary columns); its window form that returns only the
//! cardinality; and `strata_cell_set(lineage…)`, each result row's participants for the release
//! ledger. None of them is registered where a caller could name it.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Int64Array, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use roaring::RoaringTreemap;

pub const PARTICIPANTS: &str = "strata_participants";
pub const PARTICIPANT_COUNT: &str = "strata_participant_count";

/// What the aggregate returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// The serialized bitmap (Binary), for outer aggregates to union.
    Bitmap,
    /// Its cardinality (UInt64), for window frames: a bitmap per row would be too large.
    Count,
    /// Its cardinality as `COUNT(DISTINCT …)` gives it (Int64): `distinct_count`.
    DistinctCount,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Participants {
    output: Output,
    signature: Signature,
    /// Used by server-built cohort plans as a distinct count of integer values (event dates):
    /// an intermediate that never leaves the server, so disclosure control leaves it alone.
    /// Callers cannot name it: it is in no function registry.
    internal: bool,
}

fn new_udaf(output: Output, internal: bool) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(Participants {
        output,
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
        internal,
    }))
}

pub fn participants_udaf(output: Output) -> Arc<AggregateUDF> {
    new_udaf(output, false)
}

/// Distinct count of Int64 values, for cohort plans (occurrences over distinct dates).
pub fn internal_distinct_count() -> Arc<AggregateUDF> {
    new_udaf(Output::Count, true)
}

/// `COUNT(DISTINCT k)` of Int64 values, for plans whose policy is decided (`distinct_counts`):
/// internal as the cohort plans' distinct count is, and the same type as the count it stands
/// for.
pub fn distinct_count() -> Arc<AggregateUDF> {
    new_udaf(Output::DistinctCount, true)
}

/// Whether `udaf` is one of the internal distinct counts (the cohort plans', or a decided
/// plan's `distinct_count`).
pub fn is_internal(udaf: &AggregateUDF) -> bool {
    udaf.inner()
        .downcast_ref::<Participants>()
        .is_some_and(|p| p.internal)
}

impl AggregateUDFImpl for Participants {
    fn name(&self) -> &str {
        match (self.internal, self.output) {
            (_, Output::DistinctCount) => "strata_distinct_count",
            (true, _) => "strata_internal_distinct_count",
            (false, Output::Bitmap) => PARTICIPANTS,
            (false, Output::Count) => PARTICIPANT_COUNT,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.output {
            Output::Bitmap => DataType::Binary,
            Output::Count => DataType::UInt64,
            Output::DistinctCount => DataType::Int64,
        })
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            "participants",
            DataType::Binary,
            false,
        ))])
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(BitmapAccumulator {
            set: RoaringTreemap::new(),
            output: self.output,
        }))
    }

    fn create_sliding_accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(SlidingCount::default()))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(BitmapGroups::new(self.output)))
    }

    fn default_value(&self, _data_type: &DataType) -> DfResult<ScalarValue> {
        Ok(match self.output {
            Output::Bitmap => ScalarValue::Binary(Some(serialize(&RoaringTreemap::new()))),
            Output::Count => ScalarValue::UInt64(Some(0)),
            Output::DistinctCount => ScalarValue::Int64(Some(0)),
        })
    }
}

pub fn serialize(set: &RoaringTreemap) -> Vec<u8> {
    let mut out = Vec::with_capacity(set.serialized_size());
    set.serialize_into(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}

pub fn deserialize(bytes: &[u8]) -> DfResult<RoaringTreemap> {
    RoaringTreemap::deserialize_unchecked_from(Cursor::new(bytes)).map_err(|e| {
        datafusion::error::DataFusionError::Internal(format!("bad participant bitmap: {e}"))
    })
}

/// The rows a FILTER selects, as one bitmap (a NULL condition selects none).
pub(crate) fn selection(filter: Option<&BooleanArray>) -> Option<BooleanBuffer> {
    filter.map(|f| match f.nulls() {
        Some(nulls) => f.values() & nulls.inner(),
        None => f.values().clone(),
    })
}

/// The rows of a column of `len` rows that an aggregate reads: those valid in `nulls` that
/// `selection` selects. Visiting only these (`set_indices`) instead of testing every row
/// matters: lineage columns of outer joins are mostly NULL, and filters (`FILTER (WHERE x IS
/// NOT NULL)`) run over every row of the aggregate.
pub(crate) fn visited(
    len: usize,
    nulls: Option<&NullBuffer>,
    selection: Option<&BooleanBuffer>,
) -> BooleanBuffer {
    match (nulls, selection) {
        (None, None) => BooleanBuffer::new_set(len),
        (Some(nulls), None) => nulls.inner().clone(),
        (None, Some(selected)) => selected.clone(),
        (Some(nulls), Some(selected)) => nulls.inner() & selected,
    }
}

/// Calls `add(row, person)` for each person id, `union(row, bitmap)` for each bitmap, and
/// `shared(row, key, bitmap)` for each dictionary-shared bitmap (the same set on many rows,
/// such as everyone on the right of an anti join: callers union each key once per group), of
/// every lineage column at every row that passes the filter.
fn for_each_input(
    values: &[ArrayRef],
    filter: Option<&BooleanArray>,
    mut add: impl FnMut(usize, u64),
    mut union: impl FnMut(usize, RoaringTreemap),
    mut shared: impl FnMut(usize, usize, &RoaringTreemap),
) -> DfResult<()> {
    let selected = selection(filter);
    let rows_of = |array: &dyn Array| visited(array.len(), array.nulls(), selected.as_ref());
    for array in values {
        match array.data_type() {
            DataType::Int64 => {
                let ids = array.as_primitive::<Int64Type>().values();
                for row in rows_of(array).set_indices() {
                    add(row, ids[row] as u64);
                }
            }
            DataType::Binary => {
                let sets = array.as_binary::<i32>();
                for row in rows_of(array).set_indices() {
                    union(row, deserialize(sets.value(row))?);
                }
            }
            DataType::Dictionary(_, value) if value.as_ref() == &DataType::Binary => {
                let dict = arrow::compute::cast(
                    array,
                    &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary)),
                )?;
                let dict = dict.as_dictionary::<arrow::datatypes::Int32Type>();
                let values = dict.values().as_binary::<i32>();
                let decoded: Vec<Option<RoaringTreemap>> = (0..values.len())
                    .map(|k| {
                        if values.is_null(k) {
                            Ok(None)
                        } else {
                            deserialize(values.value(k)).map(Some)
                        }
                    })
                    .collect::<DfResult<_>>()?;
                let keys = dict.keys();
                for row in rows_of(keys).set_indices() {
                    if let Some(Some(set)) = decoded.get(keys.value(row) as usize) {
                        shared(row, keys.value(row) as usize, set);
                    }
                }
            }
            DataType::Null => {}
            other => return exec_err!("{PARTICIPANTS}: unexpected lineage type {other}"),
        }
    }
    Ok(())
}

#[derive(Debug)]
struct BitmapAccumulator {
    set: RoaringTreemap,
    output: Output,
}

impl Accumulator for BitmapAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let set = &mut self.set;
        let mut unions = Vec::new();
        let mut shared = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for_each_input(
            values,
            None,
            |_, p| {
                set.insert(p);
            },
            |_, s| unions.push(s),
            |_, key, s| {
                if keys.insert(key) {
                    shared.push(s.clone());
                }
            },
        )?;
        for s in unions.into_iter().chain(shared) {
            *set |= s;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(match self.output {
            Output::Bitmap => ScalarValue::Binary(Some(serialize(&self.set))),
            Output::Count => ScalarValue::UInt64(Some(self.set.len())),
            Output::DistinctCount => ScalarValue::Int64(Some(self.set.len() as i64)),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.set.serialized_size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(serialize(&self.set)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.update_batch(states)
    }
}

/// A window frame that slides: participants counted with multiplicity, so that rows leaving
/// the frame can be taken out again.
#[derive(Debug, Default)]
struct SlidingCount {
    counts: std::collections::HashMap<u64, u32>,
}

impl SlidingCount {
    fn apply(&mut self, values: &[ArrayRef], delta: i64) -> DfResult<()> {
        let mut ids = Vec::new();
        let mut sets = Vec::new();
        for_each_input(
            values,
            None,
            |_, p| ids.push(p),
            |_, s| sets.push(s),
            |_, _, _| {},
        )?;
        if values
            .iter()
            .any(|v| matches!(v.data_type(), DataType::Dictionary(..)))
        {
            return exec_err!(
                "{PARTICIPANT_COUNT}: a sliding frame over an anti join is not supported"
            );
        }
        for p in ids.into_iter().chain(sets.iter().flat_map(|s| s.iter())) {
            let c = self.counts.entry(p).or_insert(0);
            if delta > 0 {
                *c += 1;
            } else {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.counts.remove(&p);
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for SlidingCount {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.apply(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.apply(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::UInt64(Some(self.counts.len() as u64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.capacity() * 16
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let set: RoaringTreemap = self.counts.keys().copied().collect();
        Ok(vec![ScalarValue::Binary(Some(serialize(&set)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.apply(states, 1)
    }
}

/// Person ids buffered across batches before they are built into bitmaps: a group's ids are
/// sorted and added once per this many rows in the accumulator, instead of a small bitmap
/// made and unioned per group and batch (array containers are rewritten by each union).
const PENDING_IDS: usize = 1 << 20;

/// The bitmap of `ids` (any order, duplicates allowed). Files are sorted by person, so ids
/// often arrive in order; ids out of order that are dense in their range (a cell holding a
/// good share of the participants) are set in a plain bit array, which yields them sorted in
/// one pass; only sparse ones are sorted.
fn bitmap_of(mut ids: Vec<u64>) -> RoaringTreemap {
    if !ids.is_sorted() {
        let (lo, hi) = ids
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let span = (hi - lo).saturating_add(1);
        if span / 64 <= ids.len() as u64 {
            let mut words = vec![0u64; span.div_ceil(64) as usize];
            for &x in &ids {
                let at = x - lo;
                words[(at / 64) as usize] |= 1 << (at % 64);
            }
            let sorted = words.iter().enumerate().flat_map(|(w, &bits)| {
                let base = lo + 64 * w as u64;
                BitIter(bits).map(move |b| base + b)
            });
            return RoaringTreemap::from_sorted_iter(sorted).expect("ascending");
        }
        ids.sort_unstable();
    }
    ids.dedup();
    RoaringTreemap::from_sorted_iter(ids).expect("sorted and deduplicated")
}

/// The positions of a word's set bits, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        (self.0 != 0).then(|| {
            let b = self.0.trailing_zeros() as u64;
            self.0 &= self.0 - 1;
            b
        })
    }
}

#[derive(Debug)]
struct BitmapGroups {
    sets: Vec<RoaringTreemap>,
    /// Each group's person ids not yet in its bitmap (in arrival order, duplicates kept).
    pending: Vec<Vec<u64>>,
    pending_total: usize,
    /// Each set's serialized size when last changed, and their sum: DataFusion asks for the
    /// accumulator's size after every batch, and summing thousands of sets each time costs more
    /// than the batch.
    sizes: Vec<usize>,
    total_size: usize,
    output: Output,
}

impl BitmapGroups {
    fn new(output: Output) -> Self {
        BitmapGroups {
            sets: Vec::new(),
            pending: Vec::new(),
            pending_total: 0,
            sizes: Vec::new(),
            total_size: 0,
            output,
        }
    }

    fn add(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        if self.sets.len() < total_num_groups {
            self.sets.resize_with(total_num_groups, RoaringTreemap::new);
            self.pending.resize_with(total_num_groups, Vec::new);
            self.sizes.resize(total_num_groups, 0);
        }
        let mut unions = Vec::new();
        let mut keys = std::collections::HashSet::new();
        let mut shared = Vec::new();
        let pending = &mut self.pending;
        let mut added = 0;
        for_each_input(
            values,
            filter,
            |row, p| {
                // Rows come sorted by person (files are): a person's rows in a row add one id.
                let ids = &mut pending[group_indices[row]];
                if ids.last() != Some(&p) {
                    ids.push(p);
                    added += 1;
                }
            },
            |row, s| unions.push((group_indices[row], s)),
            |row, key, s| {
                if keys.insert((group_indices[row], key)) {
                    shared.push((group_indices[row], s.clone()));
                }
            },
        )?;
        self.pending_total += added;
        for (g, s) in unions.into_iter().chain(shared) {
            self.sets[g] |= s;
            self.resized(g);
        }
        if self.pending_total > PENDING_IDS {
            self.build(0..self.sets.len());
        }
        Ok(())
    }

    /// Builds the pending ids of `groups` into their bitmaps.
    fn build(&mut self, groups: std::ops::Range<usize>) {
        for g in groups {
            if self.pending[g].is_empty() {
                continue;
            }
            let ids = std::mem::take(&mut self.pending[g]);
            self.pending_total -= ids.len();
            let members = bitmap_of(ids);
            if self.sets[g].is_empty() {
                self.sets[g] = members;
            } else {
                self.sets[g] |= members;
            }
            self.resized(g);
        }
    }

    fn resized(&mut self, g: usize) {
        let size = self.sets[g].serialized_size();
        self.total_size = self.total_size + size - self.sizes[g];
        self.sizes[g] = size;
    }

    /// Takes the sets `emit_to` names out of the accumulator.
    fn take(&mut self, emit_to: EmitTo) -> Vec<RoaringTreemap> {
        let emitted = match emit_to {
            EmitTo::All => self.sets.len(),
            EmitTo::First(n) => n,
        };
        self.build(0..emitted);
        emit_to.take_needed(&mut self.pending);
        let sizes = emit_to.take_needed(&mut self.sizes);
        self.total_size -= sizes.iter().sum::<usize>();
        emit_to.take_needed(&mut self.sets)
    }

    fn emit_bitmaps(&mut self, emit_to: EmitTo) -> ArrayRef {
        let sets = self.take(emit_to);
        let mut out = BinaryBuilder::with_capacity(sets.len(), sets.len() * 16);
        for s in &sets {
            out.append_value(serialize(s));
        }
        Arc::new(out.finish())
    }
}

impl GroupsAccumulator for BitmapGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.add(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        match self.output {
            Output::Bitmap => Ok(self.emit_bitmaps(emit_to)),
            Output::Count => {
                let sets = self.take(emit_to);
                Ok(Arc::new(
                    sets.iter().map(|s| s.len()).collect::<UInt64Array>(),
                ))
            }
            Output::DistinctCount => {
                let sets = self.take(emit_to);
                Ok(Arc::new(
                    sets.iter().map(|s| s.len() as i64).collect::<Int64Array>(),
                ))
            }
        }
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        Ok(vec![self.emit_bitmaps(emit_to)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.add(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut one_group_per_row = BitmapGroups::new(Output::Bitmap);
        let indices: Vec<usize> = (0..rows).collect();
        one_group_per_row.add(values, &indices, opt_filter, rows)?;
        Ok(vec![one_group_per_row.emit_bitmaps(EmitTo::All)])
    }

    fn size(&self) -> usize {
        self.sets.capacity() * std::mem::size_of::<RoaringTreemap>()
            + self.pending.capacity() * std::mem::size_of::<Vec<u64>>()
            + self.pending_total * std::mem::size_of::<u64>()
            + self.sizes.capacity() * std::mem::size_of::<usize>()
            + self.total_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::BinaryArray;
    use arrow::datatypes::UInt64Type;

    #[test]
    fn bitmaps_of_ids_in_any_order() {
        let mut state = 11u64;
        for (n, range) in [
            (0, 10),
            (5, 10),
            (1_000, 1_500),
            (1_000, 1 << 40),
            (70_000, 100_000),
        ] {
            let ids: Vec<u64> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    1 + (state >> 20) % range
                })
                .collect();
            let expected: RoaringTreemap = ids.iter().copied().collect();
            assert_eq!(bitmap_of(ids.clone()), expected);
            let mut sorted = ids;
            sorted.sort_unstable();
            assert_eq!(bitmap_of(sorted), expected);
        }
    }

    #[test]
    fn groups_union_ids_and_bitmaps() {
        let mut g = BitmapGroups::new(Output::Count);
        let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            Some(1),
            Some(1),
            None,
            Some(2),
        ]));
        let mut other = RoaringTreemap::new();
        other.insert(7);
        other.insert(1);
        let sets: ArrayRef = Arc::new(BinaryArray::from(vec![
            Some(serialize(&other).as_slice()),
            None,
            None,
            None,
        ]));
        g.update_batch(&[ids, sets], &[0, 0, 1, 1], None, 2)
            .unwrap();
        let out = g.evaluate(EmitTo::All).unwrap();
        let out = out.as_primitive::<UInt64Type>();
        assert_eq!(out.values().to_vec(), vec![2, 1]);

        // A filter selects rows: false and NULL conditions select none.
        let mut g = BitmapGroups::new(Output::Count);
        let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            Some(1),
            Some(2),
            None,
            Some(3),
            Some(4),
            Some(5),
        ]));
        let filter = BooleanArray::from(vec![
            Some(true),
            Some(false),
            Some(true),
            None,
            Some(true),
            Some(true),
        ]);
        g.update_batch(&[ids], &[0, 0, 0, 0, 1, 0], Some(&filter), 2)
            .unwrap();
        let out = g.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            out.as_primitive::<UInt64Type>().values().to_vec(),
            vec![2, 1]
        );
        // Without nulls in either, every row.
        let mut g = BitmapGroups::new(Output::Count);
        let ids: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 1, 2, 9, 2]));
        g.update_batch(&[ids], &[0, 0, 0, 1, 0], None, 2).unwrap();
        let out = g.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            out.as_primitive::<UInt64Type>().values().to_vec(),
            vec![2, 1]
        );
    }
}

pub const CELL_SET: &str = "strata_cell_set";

/// `strata_cell_set(lineage…)`: the participants of each output row (the union of its lineage
/// columns), for the release ledger.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellSet {
    signature: Signature,
}

pub fn cell_set_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(CellSet {
        signature: Signature::new(TypeSignature::VariadicAny, Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for CellSet {
    fn name(&self) -> &str {
        CELL_SET
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut groups = BitmapGroups::new(Output::Bitmap);
        let indices: Vec<usize> = (0..rows).collect();
        groups.add(&arrays, &indices, None, rows)?;
        Ok(ColumnarValue::Array(groups.emit_bitmaps(EmitTo::All)))
    }
}

pub const SET_SIZE: &str = "strata_set_size";

/// `strata_set_size(bitmap)`: how many participants a set holds, as an Int64 count. A
/// `COUNT(DISTINCT person)` is read off the set disclosure control builds for its cell anyway,
/// instead of a second distinct aggregation of the same ids.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SetSize {
    signature: Signature,
}

pub fn set_size_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(SetSize {
        signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
    }))
}

impl ScalarUDFImpl for SetSize {
    fn name(&self) -> &str {
        SET_SIZE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    /// Never NULL, like the COUNT it stands for.
    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(SET_SIZE, DataType::Int64, false)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let sets = arrays[0].as_binary::<i32>();
        let sizes = (0..sets.len())
            .map(|row| {
                if sets.is_null(row) {
                    return Ok(0);
                }
                Ok(deserialize(sets.value(row))?.len() as i64)
            })
            .collect::<DfResult<Int64Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(sizes)))
    }
}
