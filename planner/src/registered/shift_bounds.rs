//! Keeps date filters on registered views prunable. A caller filters on the shifted value,
//! `shift(person, d) >= X`, which no Parquet statistic can answer. Since the offset is 1..=365
//! days, the real value is bounded: `d >= X + 1 day` follows (and `shift(..) <= X` gives
//! `d <= X + 365 days`). This rule adds those implied bounds to the filter, where the Parquet
//! row-group statistics and page index see them; the original condition still decides each
//! row.

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::udfs;

const MIN_OFFSET_DAYS: i64 = 1;
const MAX_OFFSET_DAYS: i64 = 365;

#[derive(Debug, Default)]
pub struct ShiftBounds;

impl ShiftBounds {
    /// Adds the rule to a session's optimizer ahead of common subexpression elimination, which
    /// would otherwise move `shift(person, d)` out of a filter that uses it twice (BETWEEN)
    /// before the rule sees it.
    pub fn install(ctx: &datafusion::prelude::SessionContext) {
        let rules = ctx.state().optimizers().to_vec();
        let at = rules
            .iter()
            .position(|r| r.name() == "common_sub_expression_eliminate")
            .unwrap_or(rules.len());
        for r in &rules[at..] {
            ctx.remove_optimizer_rule(r.name());
        }
        ctx.add_optimizer_rule(std::sync::Arc::new(ShiftBounds));
        for r in &rules[at..] {
            ctx.add_optimizer_rule(r.clone());
        }
    }
}

impl OptimizerRule for ShiftBounds {
    fn name(&self) -> &str {
        "strata_shift_bounds"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        // The Filter, not the scan's own filter list: Strata's scan hands the Filter's predicate
        // to the Parquet reader (physical filter pushdown), which builds its pruning from it.
        let LogicalPlan::Filter(filter) = plan else {
            return Ok(Transformed::no(plan));
        };
        let conjuncts = split_conjunction(&filter.predicate);
        let mut implied: Vec<Expr> = Vec::new();
        for conjunct in &conjuncts {
            for bound in real_bounds(conjunct) {
                if !conjuncts.contains(&&bound) && !implied.contains(&bound) {
                    implied.push(bound);
                }
            }
        }
        if implied.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        }
        let predicate = conjunction(std::iter::once(filter.predicate.clone()).chain(implied))
            .expect("at least one conjunct");
        let filter = Filter::try_new(predicate, filter.input.clone())?;
        Ok(Transformed::yes(LogicalPlan::Filter(filter)))
    }
}

/// Bounds on the real column implied by a comparison of its shifted value with a literal.
fn real_bounds(expr: &Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let (Some(real), Some(value)) = (shifted_column(left), literal(right)) {
                bounds(real, *op, value)
            } else if let (Some(value), Some(real)) = (literal(left), shifted_column(right)) {
                op.swap().map_or(Vec::new(), |op| bounds(real, op, value))
            } else {
                Vec::new()
            }
        }
        Expr::Between(b) if !b.negated => {
            let (Some(real), Some(low), Some(high)) =
                (shifted_column(&b.expr), literal(&b.low), literal(&b.high))
            else {
                return Vec::new();
            };
            let mut out = bounds(real.clone(), Operator::GtEq, low);
            out.extend(bounds(real, Operator::LtEq, high));
            out
        }
        _ => Vec::new(),
    }
}

/// `shift(person, c)`, possibly under casts → `c` under the same casts.
fn shifted_column(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::ScalarFunction(f) if udfs::is_shift(&f.func) => match &f.args[1] {
            c @ Expr::Column(_) => Some(c.clone()),
            _ => None,
        },
        Expr::Cast(c) => shifted_column(&c.expr).map(|inner| {
            Expr::Cast(datafusion::logical_expr::Cast {
                expr: Box::new(inner),
                field: c.field.clone(),
            })
        }),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v, _) if !v.is_null() => Some(v),
        _ => None,
    }
}

/// real = shifted + offset with offset in [1, 365] days.
fn bounds(real: Expr, op: Operator, value: &ScalarValue) -> Vec<Expr> {
    let plus = |days: i64| add_days(value, days).map(|v| Expr::Literal(v, None));
    let cmp = |op: Operator, v: Expr| {
        Expr::BinaryExpr(BinaryExpr::new(Box::new(real.clone()), op, Box::new(v)))
    };
    match op {
        Operator::GtEq | Operator::Gt => plus(MIN_OFFSET_DAYS).map(|v| vec![cmp(op, v)]),
        Operator::LtEq | Operator::Lt => plus(MAX_OFFSET_DAYS).map(|v| vec![cmp(op, v)]),
        Operator::Eq => plus(MIN_OFFSET_DAYS)
            .zip(plus(MAX_OFFSET_DAYS))
            .map(|(lo, hi)| vec![cmp(Operator::GtEq, lo), cmp(Operator::LtEq, hi)]),
        _ => None,
    }
    .unwrap_or_default()
}

fn add_days(value: &ScalarValue, days: i64) -> Option<ScalarValue> {
    use ScalarValue::*;
    Some(match value {
        Date32(Some(d)) => Date32(Some(d.checked_add(i32::try_from(days).ok()?)?)),
        Date64(Some(ms)) => Date64(Some(ms.checked_add(days.checked_mul(86_400_000)?)?)),
        TimestampSecond(Some(v), tz) => {
            TimestampSecond(Some(v.checked_add(days.checked_mul(86_400)?)?), tz.clone())
        }
        TimestampMillisecond(Some(v), tz) => TimestampMillisecond(
            Some(v.checked_add(days.checked_mul(86_400_000)?)?),
            tz.clone(),
        ),
        TimestampMicrosecond(Some(v), tz) => TimestampMicrosecond(
            Some(v.checked_add(days.checked_mul(86_400_000_000)?)?),
            tz.clone(),
        ),
        TimestampNanosecond(Some(v), tz) => TimestampNanosecond(
            Some(v.checked_add(days.checked_mul(86_400_000_000_000)?)?),
            tz.clone(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_the_offset_range() {
        let real = datafusion::logical_expr::col("d");
        let x = ScalarValue::Date32(Some(100));
        let ge = bounds(real.clone(), Operator::GtEq, &x);
        assert_eq!(
            ge,
            vec![
                real.clone()
                    .gt_eq(Expr::Literal(ScalarValue::Date32(Some(101)), None))
            ]
        );
        let lt = bounds(real.clone(), Operator::Lt, &x);
        assert_eq!(
            lt,
            vec![
                real.clone()
                    .lt(Expr::Literal(ScalarValue::Date32(Some(465)), None))
            ]
        );
        assert_eq!(bounds(real.clone(), Operator::Eq, &x).len(), 2);
        assert!(bounds(real, Operator::NotEq, &x).is_empty());
        assert_eq!(
            add_days(&ScalarValue::TimestampMicrosecond(Some(0), None), 1),
            Some(ScalarValue::TimestampMicrosecond(
                Some(86_400_000_000),
                None
            ))
        );
    }
}
