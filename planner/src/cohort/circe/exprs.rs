//! Expression helpers and Circe's value filters (numeric and date ranges, concept lists, text)
//! that domain criteria, criteria groups and the cohort's eras all build.

use std::collections::BTreeSet;

use arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, cast, lit};

use super::json::Node;
use crate::cohort::CohortError;

/// Columns of the row being filtered: `c` the domain row, `p` its person, `v` its visit.
pub(super) fn qc(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

pub(super) fn int64(e: Expr) -> Expr {
    cast(e, DataType::Int64)
}

pub(super) fn date(e: Expr) -> Expr {
    cast(e, DataType::Date32)
}

/// `e + days` for a date (`days` an integer expression).
pub(super) fn add_days(e: Expr, days: Expr) -> Expr {
    date(cast(date(e), DataType::Int32) + cast(days, DataType::Int32))
}

pub(super) fn days(n: i64) -> Expr {
    lit(n as i32)
}

/// Whole days from `a` to `b`.
pub(super) fn days_between(a: Expr, b: Expr) -> Expr {
    int64(cast(date(b), DataType::Int32)) - int64(cast(date(a), DataType::Int32))
}

pub(super) fn year(e: Expr) -> Expr {
    int64(datafusion::functions::expr_fn::date_part(
        lit("year"),
        date(e),
    ))
}

pub(super) fn in_ids(e: Expr, ids: &BTreeSet<i64>) -> Expr {
    if ids.is_empty() {
        return lit(false);
    }
    e.in_list(ids.iter().map(|&i| lit(i)).collect(), false)
}

/// A list of `{CONCEPT_ID: …}` objects.
pub(super) fn concept_list(e: Expr, v: &Node<'_>) -> Result<Expr, CohortError> {
    let mut ids = BTreeSet::new();
    for c in v.items()? {
        ids.insert(
            c.get("CONCEPT_ID")
                .ok_or_else(|| c.invalid("CONCEPT_ID is needed"))?
                .i64()?,
        );
    }
    if ids.is_empty() {
        // An empty list selects nothing in ATLAS's editor either way: no filter.
        return Ok(lit(true));
    }
    Ok(in_ids(e, &ids))
}

/// How a `NumericRange` bound is compared.
#[derive(Clone, Copy)]
pub(super) enum Precision {
    /// Its whole part (ages, counts, lengths, days).
    Whole,
    /// Rounded to 4 decimals (measured values).
    Decimal,
}

/// `NumericRange {Value, Op, Extent}`.
pub(super) fn numeric_range(
    e: Expr,
    v: &Node<'_>,
    precision: Precision,
) -> Result<Expr, CohortError> {
    let value = |key: &str| -> Result<Expr, CohortError> {
        let n = v
            .get(key)
            .ok_or_else(|| v.invalid(&format!("{key} is needed")))?;
        let x = n.f64()?;
        Ok(lit(match precision {
            Precision::Whole => x.trunc(),
            Precision::Decimal => (x * 1e4).round() / 1e4,
        }))
    };
    let e = cast(e, DataType::Float64);
    range(e, v, value)
}

/// `DateRange {Value: "YYYY-MM-DD", Op, Extent}`.
pub(super) fn date_range(e: Expr, v: &Node<'_>) -> Result<Expr, CohortError> {
    let value = |key: &str| -> Result<Expr, CohortError> {
        let n = v
            .get(key)
            .ok_or_else(|| v.invalid(&format!("{key} is needed")))?;
        date_literal(&n)
    };
    range(date(e), v, value)
}

fn range(
    e: Expr,
    v: &Node<'_>,
    value: impl Fn(&str) -> Result<Expr, CohortError>,
) -> Result<Expr, CohortError> {
    let op = v.opt_str("Op")?.ok_or_else(|| v.invalid("Op is needed"))?;
    Ok(match op {
        "lt" => e.lt(value("Value")?),
        "lte" => e.lt_eq(value("Value")?),
        "eq" => e.eq(value("Value")?),
        "!eq" => e.not_eq(value("Value")?),
        "gt" => e.gt(value("Value")?),
        "gte" => e.gt_eq(value("Value")?),
        "bt" => e
            .clone()
            .gt_eq(value("Value")?)
            .and(e.lt_eq(value("Extent")?)),
        "!bt" => !e
            .clone()
            .gt_eq(value("Value")?)
            .and(e.lt_eq(value("Extent")?)),
        other => return Err(v.invalid(&format!("unknown Op {other:?}"))),
    })
}

/// A date literal from `"YYYY-MM-DD"` (a time part, if any, is ignored).
pub(super) fn date_literal(v: &Node<'_>) -> Result<Expr, CohortError> {
    let text = v.str()?;
    let day = text.get(..10).unwrap_or(text);
    datafusion::common::ScalarValue::try_from_string(day.to_string(), &DataType::Date32)
        .ok()
        .filter(|d| !d.is_null())
        .map(lit)
        .ok_or_else(|| v.invalid("a date YYYY-MM-DD is needed"))
}

/// `TextFilter {Text, Op}`. As in Circe, the text is a LIKE pattern as given (`%` and `_` in it
/// match anything), and an op other than the six known ones compares the whole text.
pub(super) fn text_filter(e: Expr, v: &Node<'_>) -> Result<Expr, CohortError> {
    let text = v.opt_str("Text")?.unwrap_or("");
    let op = v.opt_str("Op")?.unwrap_or("");
    let negated = op.starts_with('!');
    let prefix = if op.ends_with("endsWith") || op.ends_with("contains") {
        "%"
    } else {
        ""
    };
    let suffix = if op.ends_with("startsWith") || op.ends_with("contains") {
        "%"
    } else {
        ""
    };
    Ok(Expr::Like(datafusion::logical_expr::expr::Like::new(
        negated,
        Box::new(e),
        Box::new(lit(format!("{prefix}{text}{suffix}"))),
        None,
        false,
    )))
}
