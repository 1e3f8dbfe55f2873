//! The row-wise functions of the registered views. They are never registered in a session's
//! function registry: only the view plans hold them, so a caller cannot apply the date shift to
//! a value of their choosing (which would reveal a participant's offset) or test who was left out.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Int64Array, PrimitiveArray,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::common::{Result as DfResult, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::policy::{Attribute, Decision, RegisteredPolicy};

pub const SHIFT: &str = "strata_shift_date";
pub const SHIFT_TEXT: &str = "strata_shift_date_text";
pub const VISIBLE: &str = "strata_registered_participant";
pub const GENERALIZE: &str = "strata_generalize";
pub const KEEP_ANSWER: &str = "strata_keep_answer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `(person_id, date_or_timestamp)` → the value shifted back by the person's offset.
    Shift,
    /// `(person_id)` → false for participants left out of the registered tier (aged 89+).
    Visible,
    /// `(person_id, decision_concept, value)` → the value, or the generalized code or label.
    Generalize(Attribute),
    /// The same for a source column: also generalized when the participant's source value is
    /// rare.
    GeneralizeSource(Attribute),
    /// `(person_id, text)` → a date or datetime written as text, shifted like a date column;
    /// a time of day unchanged; anything else NULL (it cannot be told apart from a date).
    ShiftText,
    /// `(person_id, question_concept, answer_concept)` → false for the duplicate race answers
    /// of a participant whose answers were generalized to one "More than one population".
    KeepAnswer,
}

#[derive(Debug)]
pub struct PolicyUdf {
    kind: Kind,
    name: String,
    signature: Signature,
    policy: Arc<RegisteredPolicy>,
}

impl PartialEq for PolicyUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.policy, &other.policy)
    }
}

impl Eq for PolicyUdf {}

impl Hash for PolicyUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        Arc::as_ptr(&self.policy).hash(state);
    }
}

pub fn udf(kind: Kind, policy: Arc<RegisteredPolicy>) -> Arc<ScalarUDF> {
    let (name, arity) = match kind {
        Kind::Shift => (SHIFT.to_string(), 2),
        Kind::Visible => (VISIBLE.to_string(), 1),
        Kind::Generalize(a) => (format!("{GENERALIZE}_{}", a.name()), 3),
        Kind::GeneralizeSource(a) => (format!("{GENERALIZE}_{}_source", a.name()), 3),
        Kind::ShiftText => (SHIFT_TEXT.to_string(), 2),
        Kind::KeepAnswer => (KEEP_ANSWER.to_string(), 3),
    };
    Arc::new(ScalarUDF::new_from_impl(PolicyUdf {
        kind,
        name,
        signature: Signature::new(TypeSignature::Any(arity), Volatility::Immutable),
        policy,
    }))
}

/// Whether `udf` is the date shift of a registered view.
pub fn is_shift(udf: &ScalarUDF) -> bool {
    udf.name() == SHIFT && udf.inner().is::<PolicyUdf>()
}

impl ScalarUDFImpl for PolicyUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match self.kind {
            Kind::Shift => match &arg_types[1] {
                t @ (DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)) => {
                    Ok(t.clone())
                }
                other => plan_err!("{SHIFT} cannot shift a value of type {other}"),
            },
            Kind::Visible | Kind::KeepAnswer => Ok(DataType::Boolean),
            Kind::Generalize(_) | Kind::GeneralizeSource(_) => Ok(arg_types[2].clone()),
            Kind::ShiftText => Ok(DataType::Utf8),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let persons = person_ids(&arrays[0])?;
        let out: ArrayRef = match self.kind {
            Kind::Shift => shift(&self.policy, &persons, &arrays[1])?,
            Kind::Visible => Arc::new(
                persons
                    .iter()
                    .map(|p| Some(p.is_none_or(|p| self.policy.is_visible(p))))
                    .collect::<BooleanArray>(),
            ),
            Kind::Generalize(attribute) => {
                let concepts = concept_ids(&arrays[1])?;
                generalize(&persons, &concepts, &arrays[2], |p, c| {
                    self.policy.decide(attribute, p, c)
                })?
            }
            Kind::GeneralizeSource(attribute) => {
                let concepts = concept_ids(&arrays[1])?;
                generalize(&persons, &concepts, &arrays[2], |p, c| {
                    self.policy.decide_source(attribute, p, c)
                })?
            }
            Kind::ShiftText => shift_text(&self.policy, &persons, &arrays[1])?,
            Kind::KeepAnswer => {
                let questions = concept_ids(&arrays[1])?;
                let answers = concept_ids(&arrays[2])?;
                let mut keep = BooleanBuilder::with_capacity(rows);
                for i in 0..rows {
                    keep.append_value(self.policy.keep_answer(
                        persons.is_valid(i).then(|| persons.value(i)),
                        questions.is_valid(i).then(|| questions.value(i)),
                        answers.is_valid(i).then(|| answers.value(i)),
                    ));
                }
                Arc::new(keep.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn person_ids(array: &ArrayRef) -> DfResult<Int64Array> {
    concept_ids(array)
}

fn concept_ids(array: &ArrayRef) -> DfResult<Int64Array> {
    match array.data_type() {
        DataType::Int64 => Ok(array.as_primitive::<Int64Type>().clone()),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::Null => Ok(cast(array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone()),
        other => exec_err!("expected an integer key, found {other}"),
    }
}

/// Subtracts each row's person offset (in days) from the value, in the value's own unit. A row
/// without a person keeps no date: the offset cannot be known, and the real value must not leak.
fn shift(policy: &RegisteredPolicy, persons: &Int64Array, values: &ArrayRef) -> DfResult<ArrayRef> {
    let mut last: Option<(i64, i64)> = None;
    let mut offset_days = |pid: i64| -> i64 {
        // Rows come clustered by person; one keyed hash per run of rows.
        match last {
            Some((p, o)) if p == pid => o,
            _ => {
                let o = policy.offset_days(pid);
                last = Some((pid, o));
                o
            }
        }
    };
    let day_units: i64 = match values.data_type() {
        DataType::Date32 => 1,
        DataType::Date64 => 86_400_000,
        DataType::Timestamp(TimeUnit::Second, _) => 86_400,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 86_400_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 86_400_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 86_400_000_000_000,
        other => return exec_err!("{SHIFT} cannot shift a value of type {other}"),
    };
    Ok(match values.data_type() {
        DataType::Date32 => {
            shift_primitive::<Date32Type>(persons, values, |v, pid| v - offset_days(pid) as i32)
        }
        DataType::Date64 => shift_primitive::<Date64Type>(persons, values, |v, pid| {
            v - offset_days(pid) * day_units
        }),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => shift_primitive::<TimestampSecondType>(persons, values, |v, p| {
                v - offset_days(p) * day_units
            }),
            TimeUnit::Millisecond => {
                shift_primitive::<TimestampMillisecondType>(persons, values, |v, p| {
                    v - offset_days(p) * day_units
                })
            }
            TimeUnit::Microsecond => {
                shift_primitive::<TimestampMicrosecondType>(persons, values, |v, p| {
                    v - offset_days(p) * day_units
                })
            }
            TimeUnit::Nanosecond => {
                shift_primitive::<TimestampNanosecondType>(persons, values, |v, p| {
                    v - offset_days(p) * day_units
                })
            }
        },
        _ => unreachable!("checked above"),
    })
}

fn shift_primitive<T: ArrowPrimitiveType>(
    persons: &Int64Array,
    values: &ArrayRef,
    mut f: impl FnMut(T::Native, i64) -> T::Native,
) -> ArrayRef {
    let values = values.as_primitive::<T>();
    let shifted: PrimitiveArray<T> = values
        .iter()
        .zip(persons.iter())
        .map(|(v, p)| match (v, p) {
            (Some(v), Some(p)) => Some(f(v, p)),
            _ => None,
        })
        .collect();
    // Keep the timezone of timestamp columns.
    Arc::new(shifted.with_data_type(values.data_type().clone()))
}

fn generalize(
    persons: &Int64Array,
    concepts: &Int64Array,
    values: &ArrayRef,
    decision: impl Fn(Option<i64>, Option<i64>) -> Decision,
) -> DfResult<ArrayRef> {
    let decide = |i: usize| -> Decision {
        decision(
            persons.is_valid(i).then(|| persons.value(i)),
            concepts.is_valid(i).then(|| concepts.value(i)),
        )
    };
    match values.data_type() {
        DataType::Int32 => {
            let v = values.as_primitive::<Int32Type>();
            let out: PrimitiveArray<Int32Type> = (0..v.len())
                .map(|i| match decide(i) {
                    Decision::Keep => v.is_valid(i).then(|| v.value(i)),
                    Decision::Replace { code, .. } => Some(code as i32),
                })
                .collect();
            Ok(Arc::new(out))
        }
        DataType::Int64 => {
            let v = values.as_primitive::<Int64Type>();
            let out: PrimitiveArray<Int64Type> = (0..v.len())
                .map(|i| match decide(i) {
                    Decision::Keep => v.is_valid(i).then(|| v.value(i)),
                    Decision::Replace { code, .. } => Some(code),
                })
                .collect();
            Ok(Arc::new(out))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let as_utf8 = cast(values, &DataType::Utf8)?;
            let v = as_utf8.as_string::<i32>();
            let mut out = StringBuilder::with_capacity(v.len(), v.value_data().len());
            for i in 0..v.len() {
                match decide(i) {
                    Decision::Keep if v.is_valid(i) => out.append_value(v.value(i)),
                    Decision::Keep => out.append_null(),
                    Decision::Replace { label, .. } => out.append_value(label),
                }
            }
            let out: ArrayRef = Arc::new(out.finish());
            Ok(cast(&out, values.data_type())?)
        }
        other => exec_err!("cannot generalize a value of type {other}"),
    }
}

/// Dates and datetimes held as text (OMOP 5.3's `measurement_time` holds `1993-07-08`), shifted
/// back by the participant's offset and written in the same shape.
fn shift_text(
    policy: &RegisteredPolicy,
    persons: &Int64Array,
    values: &ArrayRef,
) -> DfResult<ArrayRef> {
    use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
    let as_utf8 = cast(values, &DataType::Utf8)?;
    let v = as_utf8.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(v.len(), v.value_data().len());
    for i in 0..v.len() {
        let (Some(text), true) = (
            v.is_valid(i).then(|| v.value(i).trim()),
            persons.is_valid(i),
        ) else {
            out.append_null();
            continue;
        };
        let back = Duration::days(policy.offset_days(persons.value(i)));
        let shifted = if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Some((d - back).format("%Y-%m-%d").to_string())
        } else if let Some(t) = [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        {
            Some((t - back).format("%Y-%m-%d %H:%M:%S").to_string())
        } else if ["%H:%M:%S%.f", "%H:%M"]
            .iter()
            .any(|f| NaiveTime::parse_from_str(text, f).is_ok())
        {
            Some(text.to_string())
        } else {
            None
        };
        out.append_option(shifted);
    }
    Ok(Arc::new(out.finish()))
}
