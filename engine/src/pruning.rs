//! Shard pruning: which shards of a table a query's filters can possibly match, decided from the
//! filters alone before any file is touched.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use crate::layout::shard_of;

/// Largest integer range (`BETWEEN`, `>= AND <=`) enumerated person by person into shards.
const MAX_ENUMERATED_RANGE: i64 = 4096;

/// A set of shard keys, or "could be any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySet<T: Ord> {
    Any,
    Only(BTreeSet<T>),
}

impl<T: Ord + Clone> KeySet<T> {
    fn intersect(self, other: KeySet<T>) -> KeySet<T> {
        match (self, other) {
            (KeySet::Any, x) | (x, KeySet::Any) => x,
            (KeySet::Only(a), KeySet::Only(b)) => {
                KeySet::Only(a.intersection(&b).cloned().collect())
            }
        }
    }

    fn union(self, other: KeySet<T>) -> KeySet<T> {
        match (self, other) {
            (KeySet::Only(mut a), KeySet::Only(b)) => {
                a.extend(b);
                KeySet::Only(a)
            }
            _ => KeySet::Any,
        }
    }
}

/// Shards of a person-keyed table that rows matching all `filters` can live in.
pub fn person_shards(filters: &[Expr], person_key: &str, shards: u32) -> KeySet<u32> {
    match conjunction_values(&flatten(filters), person_key, &as_i64_values) {
        KeySet::Any => KeySet::Any,
        KeySet::Only(ids) => KeySet::Only(ids.into_iter().map(|id| shard_of(id, shards)).collect()),
    }
}

/// Contigs of a contig-partitioned table that rows matching all `filters` can live in.
pub fn contigs(filters: &[Expr], column: &str) -> KeySet<String> {
    conjunction_values(&flatten(filters), column, &as_string_values)
}

fn flatten(filters: &[Expr]) -> Vec<&Expr> {
    filters.iter().flat_map(split_conjunction).collect()
}

/// Values `column` can take when every conjunct holds: the intersection of what each conjunct
/// allows, narrowed further by integer bounds spread over several conjuncts.
fn conjunction_values<T: Ord + Clone>(
    conjuncts: &[&Expr],
    column: &str,
    values_of: &dyn Fn(&Expr) -> Option<Vec<T>>,
) -> KeySet<T> {
    let direct = conjuncts
        .iter()
        .map(|e| key_values(e, column, values_of))
        .fold(KeySet::Any, KeySet::intersect);
    direct.intersect(range_values(conjuncts, column, values_of))
}

fn key_values<T: Ord + Clone>(
    expr: &Expr,
    column: &str,
    values_of: &dyn Fn(&Expr) -> Option<Vec<T>>,
) -> KeySet<T> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::And, ..
        }) => conjunction_values(&split_conjunction(expr), column, values_of),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => key_values(left, column, values_of).union(key_values(right, column, values_of)),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (is_column(left, column), is_column(right, column)) {
            (true, false) => only(values_of(right)),
            (false, true) => only(values_of(left)),
            _ => KeySet::Any,
        },
        Expr::InList(list) if !list.negated && is_column(&list.expr, column) => {
            let mut all = Vec::new();
            for e in &list.list {
                match values_of(e) {
                    Some(v) => all.extend(v),
                    None => return KeySet::Any,
                }
            }
            KeySet::Only(all.into_iter().collect())
        }
        Expr::Between(_) => range_values(&[expr], column, values_of),
        _ => KeySet::Any,
    }
}

fn only<T: Ord>(values: Option<Vec<T>>) -> KeySet<T> {
    match values {
        Some(v) => KeySet::Only(v.into_iter().collect()),
        None => KeySet::Any,
    }
}

/// Small integer ranges from bounds anywhere among the conjuncts, enumerated.
fn range_values<T: Ord + Clone>(
    conjuncts: &[&Expr],
    column: &str,
    values_of: &dyn Fn(&Expr) -> Option<Vec<T>>,
) -> KeySet<T> {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    for e in conjuncts {
        let (l, h) = match e {
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_column(expr, column) => (int_literal(low), int_literal(high)),
            _ => (bound(e, column, true), bound(e, column, false)),
        };
        if let Some(l) = l {
            lo = Some(lo.map_or(l, |x| x.max(l)));
        }
        if let Some(h) = h {
            hi = Some(hi.map_or(h, |x| x.min(h)));
        }
    }
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi < lo => KeySet::Only(BTreeSet::new()),
        (Some(lo), Some(hi)) if hi - lo < MAX_ENUMERATED_RANGE => {
            let mut out = BTreeSet::new();
            for id in lo..=hi {
                match values_of(&Expr::Literal(ScalarValue::Int64(Some(id)), None)) {
                    Some(v) => out.extend(v),
                    None => return KeySet::Any,
                }
            }
            KeySet::Only(out)
        }
        _ => KeySet::Any,
    }
}

/// Inclusive lower (`lower = true`) or upper bound on `column` from `col >= x`, `col > x`, …
fn bound(expr: &Expr, column: &str, lower: bool) -> Option<i64> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let (op, value) = if is_column(left, column) {
        (*op, int_literal(right)?)
    } else if is_column(right, column) {
        (op.swap()?, int_literal(left)?)
    } else {
        return None;
    };
    match (op, lower) {
        (Operator::GtEq, true) => Some(value),
        (Operator::Gt, true) => value.checked_add(1),
        (Operator::LtEq, false) => Some(value),
        (Operator::Lt, false) => value.checked_sub(1),
        _ => None,
    }
}

fn is_column(expr: &Expr, column: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == column,
        // Casts that keep integer identity (Int32 key compared as Int64) still name the column.
        Expr::Cast(c) => is_column(&c.expr, column),
        Expr::TryCast(c) => is_column(&c.expr, column),
        _ => false,
    }
}

fn int_literal(expr: &Expr) -> Option<i64> {
    as_i64_values(expr).and_then(|v| v.into_iter().next())
}

fn as_i64_values(expr: &Expr) -> Option<Vec<i64>> {
    let v = match expr {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return as_i64_values(&c.expr),
        _ => return None,
    };
    let n = match v {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => *n as i64,
        ScalarValue::Int16(Some(n)) => *n as i64,
        ScalarValue::Int8(Some(n)) => *n as i64,
        ScalarValue::UInt32(Some(n)) => *n as i64,
        ScalarValue::UInt16(Some(n)) => *n as i64,
        ScalarValue::UInt8(Some(n)) => *n as i64,
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok()?,
        // `person_id = NULL` matches nothing.
        v if v.is_null() => return Some(vec![]),
        _ => return None,
    };
    Some(vec![n])
}

fn as_string_values(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(vec![s.clone()]),
        Expr::Literal(v, _) if v.is_null() => Some(vec![]),
        Expr::Cast(c) => as_string_values(&c.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn shards(filters: &[Expr]) -> KeySet<u32> {
        person_shards(filters, "person_id", 8)
    }

    #[test]
    fn equality_picks_one_shard() {
        assert_eq!(
            shards(&[col("person_id").eq(lit(42i64))]),
            KeySet::Only([shard_of(42, 8)].into())
        );
        assert_eq!(
            shards(&[lit(42i64).eq(col("person_id"))]),
            KeySet::Only([shard_of(42, 8)].into())
        );
    }

    #[test]
    fn in_list_and_or_pick_their_shards() {
        let want: BTreeSet<u32> = [shard_of(1, 8), shard_of(2, 8)].into();
        assert_eq!(
            shards(&[col("person_id").in_list(vec![lit(1i64), lit(2i64)], false)]),
            KeySet::Only(want.clone())
        );
        assert_eq!(
            shards(&[col("person_id")
                .eq(lit(1i64))
                .or(col("person_id").eq(lit(2i64)))]),
            KeySet::Only(want)
        );
    }

    #[test]
    fn negations_and_other_columns_scan_everything() {
        assert_eq!(
            shards(&[col("person_id").in_list(vec![lit(1i64)], true)]),
            KeySet::Any
        );
        assert_eq!(shards(&[col("person_id").not_eq(lit(1i64))]), KeySet::Any);
        assert_eq!(shards(&[col("visit_id").eq(lit(1i64))]), KeySet::Any);
        assert_eq!(
            shards(&[col("person_id").eq(lit(1i64)).or(col("x").eq(lit(2i64)))]),
            KeySet::Any
        );
    }

    #[test]
    fn conjunctions_intersect_and_small_ranges_enumerate() {
        let none = shards(&[
            col("person_id").eq(lit(1i64)),
            col("person_id").eq(lit(2i64)),
        ]);
        if shard_of(1, 8) != shard_of(2, 8) {
            assert_eq!(none, KeySet::Only(BTreeSet::new()));
        }
        let range = shards(&[col("person_id").between(lit(10i64), lit(12i64))]);
        let want: BTreeSet<u32> = (10..=12).map(|p| shard_of(p, 8)).collect();
        assert_eq!(range, KeySet::Only(want.clone()));
        let split = shards(&[col("person_id")
            .gt_eq(lit(10i64))
            .and(col("person_id").lt(lit(13i64)))]);
        assert_eq!(split, KeySet::Only(want));
        assert_eq!(shards(&[col("person_id").gt(lit(10i64))]), KeySet::Any);
    }

    #[test]
    fn contig_filters_pick_contigs() {
        let want: BTreeSet<String> = ["chr17".to_string()].into();
        assert_eq!(
            contigs(&[col("contig").eq(lit("chr17"))], "contig"),
            KeySet::Only(want)
        );
        assert_eq!(
            contigs(&[col("position").eq(lit(5i64))], "contig"),
            KeySet::Any
        );
    }
}
