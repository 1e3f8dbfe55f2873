//! Whether a scan's filters keep few enough rows for Parquet late materialization to pay off.
//!
//! With `pushdown_filters` the Parquet reader decodes the filter columns first and the other
//! columns only for the rows that pass. That pays when the passing rows bunch together — a person
//! in files sorted by person, a gene region in files sorted by position — and costs when they are
//! spread through every page: a 3 % concept filter on `measurement` took 2.3x the decoding time
//! of a plain scan and filter (benchmark at 100k persons), and DataFusion pushes a join's dynamic
//! filters into every scan that has late materialization on. So each scan chooses from its own
//! filters, the column its files are sorted by, and the statistics read from their footers.

use arrow::datatypes::Schema;
use datafusion::common::stats::Precision;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// Largest fraction of a column's value range a filter may keep and still count as selective.
const SELECTIVE_FRACTION: f64 = 0.2;

/// Longest IN list treated as a point lookup.
const MAX_IN_LIST: usize = 256;

/// Whether the conjunction of `filters` is selective on a column the files are sorted by
/// (`sorted_by`): an equality or short IN list on it, or a range covering at most a fifth of its
/// min..max.
pub fn selective(
    filters: &[Expr],
    sorted_by: Option<&str>,
    schema: &Schema,
    statistics: &Statistics,
) -> bool {
    let Some(key) = sorted_by else {
        return false;
    };
    let on_key = |e: &Expr| column(e) == Some(key);
    let mut range = Range::default();
    for conjunct in filters.iter().flat_map(split_conjunction) {
        // `key = v`, or a short IN list as DataFusion writes it: equalities joined by OR.
        if points(conjunct, &on_key).is_some_and(|n| n <= MAX_IN_LIST) {
            return true;
        }
        match conjunct {
            Expr::InList(list)
                if on_key(&list.expr) && !list.negated && list.list.len() <= MAX_IN_LIST =>
            {
                return true;
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if on_key(expr) => {
                if let (Some(lo), Some(hi)) = (number(low), number(high)) {
                    range.narrow(Some(lo), Some(hi));
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (value, op) = match (on_key(left), on_key(right)) {
                    (true, false) => (right.as_ref(), *op),
                    (false, true) => match op.swap() {
                        Some(swapped) => (left.as_ref(), swapped),
                        None => continue,
                    },
                    _ => continue,
                };
                let Some(v) = number(value) else { continue };
                match op {
                    Operator::Lt | Operator::LtEq => range.narrow(None, Some(v)),
                    Operator::Gt | Operator::GtEq => range.narrow(Some(v), None),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // No bounds: the whole span, never selective.
    column_span(key, schema, statistics)
        .is_some_and(|(min, max)| range.fraction_of(min, max) <= SELECTIVE_FRACTION)
}

/// How many values `e` picks on the key if it is `key = v` or such equalities joined by OR.
fn points(e: &Expr, on_key: &impl Fn(&Expr) -> bool) -> Option<usize> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(points(left, on_key)? + points(right, on_key)?),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let literal = |x: &Expr| matches!(x, Expr::Literal(v, _) if !v.is_null());
            ((on_key(left) && literal(right)) || (on_key(right) && literal(left))).then_some(1)
        }
        _ => None,
    }
}

/// Bounds on the sort key that every conjunct imposes (None: unbounded on that side).
#[derive(Default)]
struct Range {
    low: Option<f64>,
    high: Option<f64>,
}

impl Range {
    fn narrow(&mut self, low: Option<f64>, high: Option<f64>) {
        if let Some(l) = low {
            self.low = Some(self.low.map_or(l, |x| x.max(l)));
        }
        if let Some(h) = high {
            self.high = Some(self.high.map_or(h, |x| x.min(h)));
        }
    }

    /// The share of `min..max` inside the bounds, the column's values taken as spread evenly.
    fn fraction_of(&self, min: f64, max: f64) -> f64 {
        let span = max - min;
        if span <= 0.0 {
            return 1.0;
        }
        let low = self.low.unwrap_or(min).max(min);
        let high = self.high.unwrap_or(max).min(max);
        ((high - low) / span).clamp(0.0, 1.0)
    }
}

/// The column an expression reads, seeing through casts the type coercion added.
fn column(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column(&c.expr),
        Expr::TryCast(c) => column(&c.expr),
        _ => None,
    }
}

/// A literal's value on a number line (integers, floats, dates, timestamps).
fn number(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Literal(v, _) => scalar_number(v),
        Expr::Cast(c) => number(&c.expr),
        _ => None,
    }
}

fn scalar_number(v: &ScalarValue) -> Option<f64> {
    Some(match v {
        ScalarValue::Int8(Some(x)) => *x as f64,
        ScalarValue::Int16(Some(x)) => *x as f64,
        ScalarValue::Int32(Some(x)) => *x as f64,
        ScalarValue::Int64(Some(x)) => *x as f64,
        ScalarValue::UInt8(Some(x)) => *x as f64,
        ScalarValue::UInt16(Some(x)) => *x as f64,
        ScalarValue::UInt32(Some(x)) => *x as f64,
        ScalarValue::UInt64(Some(x)) => *x as f64,
        ScalarValue::Float32(Some(x)) => *x as f64,
        ScalarValue::Float64(Some(x)) => *x,
        ScalarValue::Date32(Some(x)) => *x as f64,
        ScalarValue::Date64(Some(x)) => *x as f64 / 86_400_000.0,
        ScalarValue::TimestampSecond(Some(x), _) => *x as f64 / 86_400.0,
        ScalarValue::TimestampMillisecond(Some(x), _) => *x as f64 / 86_400_000.0,
        ScalarValue::TimestampMicrosecond(Some(x), _) => *x as f64 / 86_400_000_000.0,
        ScalarValue::TimestampNanosecond(Some(x), _) => *x as f64 / 86_400_000_000_000.0,
        _ => return None,
    })
}

/// A column's min and max over the files, when their footers recorded them.
fn column_span(name: &str, schema: &Schema, statistics: &Statistics) -> Option<(f64, f64)> {
    let index = schema.index_of(name).ok()?;
    let stats = statistics.column_statistics.get(index)?;
    let value = |p: &Precision<ScalarValue>| p.get_value().and_then(scalar_number);
    Some((value(&stats.min_value)?, value(&stats.max_value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};
    use datafusion::common::ColumnStatistics;
    use datafusion::prelude::{col, lit};

    fn table() -> (Schema, Statistics) {
        let schema = Schema::new(vec![
            Field::new("person_id", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
        ]);
        let span = |min: ScalarValue, max: ScalarValue| ColumnStatistics {
            min_value: Precision::Exact(min),
            max_value: Precision::Exact(max),
            ..ColumnStatistics::new_unknown()
        };
        let mut statistics = Statistics::new_unknown(&schema);
        statistics.column_statistics = vec![
            span(
                ScalarValue::Int64(Some(1)),
                ScalarValue::Int64(Some(100_000)),
            ),
            span(
                ScalarValue::Float64(Some(0.0)),
                ScalarValue::Float64(Some(10.0)),
            ),
            span(
                ScalarValue::Date32(Some(0)),
                ScalarValue::Date32(Some(1000)),
            ),
        ];
        (schema, statistics)
    }

    /// Files sorted by `key`.
    fn selective_on(key: &str, filters: Vec<Expr>) -> bool {
        let (schema, statistics) = table();
        selective(&filters, Some(key), &schema, &statistics)
    }

    fn is_selective(filters: Vec<Expr>) -> bool {
        let column = filters
            .first()
            .and_then(|f| f.column_refs().into_iter().next().map(|c| c.name.clone()))
            .unwrap_or_default();
        selective_on(&column, filters)
    }

    #[test]
    fn only_filters_on_the_sort_key_count() {
        // Matching rows of a selective filter on another column are spread through every page.
        assert!(!selective_on(
            "day",
            vec![col("person_id").eq(lit(4242i64))]
        ));
        assert!(selective_on(
            "day",
            vec![
                col("person_id").eq(lit(4242i64)),
                col("day").gt(lit(ScalarValue::Date32(Some(950))))
            ]
        ));
        let (schema, statistics) = table();
        assert!(!selective(
            &[col("person_id").eq(lit(4242i64))],
            None,
            &schema,
            &statistics
        ));
    }

    #[test]
    fn points_are_selective() {
        assert!(is_selective(vec![col("person_id").eq(lit(4242i64))]));
        // A short IN list as DataFusion rewrites it.
        assert!(is_selective(vec![
            col("person_id")
                .eq(lit(7i64))
                .or(col("person_id").eq(lit(8i64)))
                .or(lit(9i64).eq(col("person_id")))
        ]));
        assert!(!selective_on(
            "person_id",
            vec![
                col("person_id")
                    .eq(lit(7i64))
                    .or(col("day").eq(lit(ScalarValue::Date32(Some(9)))))
            ]
        ));
        assert!(is_selective(vec![lit(4242i64).eq(col("person_id"))]));
        assert!(selective_on(
            "person_id",
            vec![
                col("value")
                    .is_not_null()
                    .and(col("person_id").in_list(vec![lit(1i64), lit(2i64)], false))
            ]
        ));
        assert!(!is_selective(vec![
            col("person_id").in_list(vec![lit(1i64)], true)
        ]));
        assert!(!is_selective(vec![
            col("person_id").eq(lit(ScalarValue::Int64(None)))
        ]));
    }

    #[test]
    fn ranges_are_selective_when_narrow() {
        assert!(is_selective(vec![
            col("person_id").between(lit(10i64), lit(5000i64))
        ]));
        assert!(!is_selective(vec![
            col("person_id").between(lit(10i64), lit(90_000i64))
        ]));
        // Two one-sided conjuncts make one range.
        assert!(is_selective(vec![
            col("value").gt_eq(lit(9.0)),
            col("value").lt(lit(9.5))
        ]));
        assert!(!is_selective(vec![col("value").gt(lit(1.0))]));
        assert!(is_selective(vec![
            lit(ScalarValue::Date32(Some(900))).lt(col("day"))
        ]));
    }

    #[test]
    fn other_filters_are_not() {
        assert!(!is_selective(vec![]));
        assert!(!is_selective(vec![col("value").is_not_null()]));
        assert!(!is_selective(vec![col("person_id").not_eq(lit(3i64))]));
        // A column without recorded min/max gives no estimate.
        let (schema, _) = table();
        let unknown = Statistics::new_unknown(&schema);
        assert!(!selective(
            &[col("person_id").lt(lit(10i64))],
            Some("person_id"),
            &schema,
            &unknown
        ));
    }
}
