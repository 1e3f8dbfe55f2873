//! What an aggregate's value reveals besides who is non-NULL. `SUM(CASE WHEN rare THEN 1 ELSE 0
//! END)` counts the rare rows although every row "contributes" a non-NULL value, and
//! `MAX(CASE WHEN rare THEN year_of_birth ELSE 0 END)` is one participant's year in a large
//! group. Each value-dependent branch of an argument (CASE, COALESCE, NULLIF, GREATEST/LEAST, a
//! boolean turned into a number) selects rows whose participants the value is computed from on
//! their own: a sub-cell, which must hold no participant or more than T, like the cell. Sums
//! and means also depend only on their nonzero terms (`SUM(x > 5)`, `SUM(floor(v / 1e6))`).

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, lit};

/// Conditions selecting the rows each sub-cell of aggregate `name(args)` is computed from
/// (empty: the value depends on which rows are non-NULL only, as for a plain COUNT).
pub fn sub_cells(
    name: &str,
    distinct: bool,
    args: &[Expr],
    order_by: &[Expr],
    schema: &DFSchema,
) -> Vec<Expr> {
    if name == "count" && !distinct {
        // A count of rows depends on which rows are non-NULL, which the cell's own set is.
        return vec![];
    }
    let mut out = Vec::new();
    // FIRST_VALUE(x ORDER BY CASE WHEN rare THEN 0 ELSE 1 END) picks by its ordering's branches.
    for a in args.iter().chain(order_by) {
        branches(a, None, schema, &mut out);
    }
    if is_magnitude(name)
        && let Some(a) = args.first()
    {
        // The whole, and each added term on its own: `SUM(rare_part + always_nonzero)`.
        let mut terms = vec![a];
        let parts = added_terms(a);
        if parts.len() > 1 {
            terms.extend(parts);
        }
        for t in terms {
            let t = without_widening(t, schema);
            if let Ok(ty) = t.get_type(schema)
                && ty.is_numeric()
                && !matches!(t, Expr::Literal(..))
                && let Ok(zero) = ScalarValue::new_zero(&ty)
            {
                out.push(t.clone().not_eq(lit(zero)));
            }
        }
    }
    let mut unique: Vec<Expr> = Vec::with_capacity(out.len());
    for c in out {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    unique
}

/// `x` for `CAST(x AS DOUBLE)` of an integer, decimal or smaller float `x` (how AVG's argument
/// is coerced): the cast is NULL, and zero, exactly when `x` is, so a condition on it can test
/// `x` and spare a cast of every row.
pub fn without_widening<'e>(e: &'e Expr, schema: &DFSchema) -> &'e Expr {
    match e {
        Expr::Cast(c)
            if c.field.data_type() == &DataType::Float64
                && c.expr.get_type(schema).is_ok_and(|t| {
                    t.is_integer()
                        || matches!(
                            t,
                            DataType::Float16
                                | DataType::Float32
                                | DataType::Decimal32(..)
                                | DataType::Decimal64(..)
                                | DataType::Decimal128(..)
                                | DataType::Decimal256(..)
                        )
                }) =>
        {
            without_widening(&c.expr, schema)
        }
        _ => e,
    }
}

/// Aggregates whose value is a magnitude: dominance rules and nonzero terms apply.
pub fn is_magnitude(name: &str) -> bool {
    matches!(name, "sum" | "avg" | "mean")
}

/// An argument an aggregates-only principal may aggregate: each column at most once, scaled by
/// constants (`*`, division by a non-integer constant), added to or subtracted from other
/// columns — nothing that can turn a value into an indicator (a comparison, CASE, a step
/// function, integer division) or into a count (`x - x + 1`, a constant added: `SUM(x + 1)` is
/// `SUM(x)` plus the exact row count). Sums and means (`magnitude`) take no ids or concept ids:
/// `SUM(gender_concept_id)` decodes the exact count of each gender. A lone constant is allowed
/// (`SUM(1)`, rounded like a count).
pub fn plain(e: &Expr, magnitude: bool) -> bool {
    if matches!(e, Expr::Literal(v, _) if !v.is_null()) {
        return true;
    }
    let columns = e.column_refs();
    let mut names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    let ids = magnitude && names.iter().any(|c| c.ends_with("_id"));
    n > 0 && names.len() == n && !ids && sum_of_terms(e)
}

fn sum_of_terms(e: &Expr) -> bool {
    use datafusion::logical_expr::Operator;
    match e {
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            sum_of_terms(&b.left) && sum_of_terms(&b.right)
        }
        e => term(e),
    }
}

/// A column, cast or negated, scaled by constants.
fn term(e: &Expr) -> bool {
    use datafusion::logical_expr::Operator;
    let constant = |e: &Expr| matches!(e, Expr::Literal(v, _) if !v.is_null());
    // Dividing by an integer constant may be integer division: a step function.
    let fractional = |e: &Expr| {
        matches!(
            e,
            Expr::Literal(
                ScalarValue::Float32(Some(_))
                    | ScalarValue::Float64(Some(_))
                    | ScalarValue::Decimal128(Some(_), _, _)
                    | ScalarValue::Decimal256(Some(_), _, _),
                _
            )
        )
    };
    match e {
        Expr::Column(_) => true,
        Expr::Alias(a) => term(&a.expr),
        Expr::Negative(e) => term(e),
        // A cast of a column; of anything else, only into a fractional type (a cast of
        // `x / 2000.0` to an integer is a step function).
        Expr::Cast(c) => {
            matches!(c.expr.as_ref(), Expr::Column(_))
                || (term(&c.expr)
                    && matches!(
                        c.field.data_type(),
                        arrow::datatypes::DataType::Float32 | arrow::datatypes::DataType::Float64
                    ))
        }
        Expr::BinaryExpr(b) => match b.op {
            Operator::Multiply => {
                (term(&b.left) && constant(&b.right)) || (constant(&b.left) && term(&b.right))
            }
            Operator::Divide => term(&b.left) && fractional(&b.right),
            _ => false,
        },
        _ => false,
    }
}

/// `e` (over `plan`'s output) with each column replaced by the expression that defines it
/// below — through projections, subquery aliases, filters, sorts, joins and group keys — down
/// to the columns of scans (and of aggregates the principal may compute: their values are
/// opaque). `None`: a column whose definition cannot be followed.
pub fn unfold(e: &Expr, plan: &LogicalPlan) -> Option<Expr> {
    use datafusion::common::tree_node::Transformed;
    let mut lost = false;
    let out = e
        .clone()
        .transform_up(|e| match e {
            Expr::Column(c) => match define(&c, plan) {
                Some(d) => Ok(Transformed::yes(d)),
                None => {
                    lost = true;
                    Ok(Transformed::no(Expr::Column(c)))
                }
            },
            e => Ok(Transformed::no(e)),
        })
        .ok()?
        .data;
    (!lost).then_some(out)
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

/// The expression that defines column `c` of `plan`'s output.
fn define(c: &Column, plan: &LogicalPlan) -> Option<Expr> {
    let index = || plan.schema().maybe_index_of_column(c);
    let input_column = |input: &LogicalPlan, i: usize| {
        let (q, f) = input.schema().qualified_field(i);
        Column::new(q.cloned(), f.name())
    };
    match plan {
        LogicalPlan::Projection(p) => unfold(unalias(&p.expr[index()?]), &p.input),
        LogicalPlan::SubqueryAlias(a) => define(&input_column(&a.input, index()?), &a.input),
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(_) => define(c, plan.inputs()[0]),
        LogicalPlan::Join(j) => {
            if j.left.schema().has_column(c) {
                define(c, &j.left)
            } else {
                define(c, &j.right)
            }
        }
        LogicalPlan::Window(w) => {
            if w.input.schema().has_column(c) {
                define(c, &w.input)
            } else {
                // A window's value is no column: not plain.
                Some(w.window_expr[index()? - w.input.schema().fields().len()].clone())
            }
        }
        LogicalPlan::Aggregate(agg) => {
            if matches!(agg.group_expr.first(), Some(Expr::GroupingSet(_))) {
                return None;
            }
            let i = index()?;
            let n_group = agg.group_expr.len();
            if i < n_group {
                return unfold(unalias(&agg.group_expr[i]), &agg.input);
            }
            // An inner aggregate's value (per participant, say) is plain if it aggregates a
            // plain argument.
            let f = unalias(&agg.aggr_expr[i - n_group]);
            let Expr::AggregateFunction(af) = f else {
                return Some(f.clone());
            };
            let magnitude = is_magnitude(af.func.name());
            let plain_args = af.params.filter.is_none()
                && af.params.order_by.is_empty()
                && af
                    .params
                    .args
                    .iter()
                    .all(|a| unfold(a, &agg.input).is_some_and(|a| plain(&a, magnitude)));
            match (plain_args, af.func.name()) {
                // The participant's own value of the column (`_id` rules see the column).
                (true, "min" | "max" | "first_value" | "last_value" | "median") => {
                    unfold(&af.params.args[0], &agg.input)
                }
                (true, _) => Some(Expr::Column(c.clone())),
                _ => Some(f.clone()),
            }
        }
        LogicalPlan::Union(u) => {
            // The same definition in every input, or the union picks between them like a CASE.
            let i = index()?;
            let mut definitions = u
                .inputs
                .iter()
                .map(|input| define(&input_column(input, i), input));
            let first = definitions.next()??;
            definitions
                .all(|d| d.as_ref() == Some(&first))
                .then_some(first)
        }
        LogicalPlan::TableScan(_)
        | LogicalPlan::Values(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Extension(_) => Some(Expr::Column(c.clone())),
        _ => None,
    }
}

/// The terms of a sum (`a + b - c` → a, b, c; anything else → itself).
fn added_terms(e: &Expr) -> Vec<&Expr> {
    use datafusion::logical_expr::Operator;
    match e {
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            let mut out = added_terms(&b.left);
            out.extend(added_terms(&b.right));
            out
        }
        Expr::Alias(a) => added_terms(&a.expr),
        e => vec![e],
    }
}

/// The conditions under which each value-dependent branch inside `e` gives its value.
pub fn conditions(e: &Expr, schema: &DFSchema) -> Vec<Expr> {
    let mut out = Vec::new();
    branches(e, None, schema, &mut out);
    out
}

/// `c` where `path` holds, else false, evaluated as CASE does: `c` never runs on a row `path`
/// rejects (`CASE WHEN d = 0 THEN NULL WHEN n / d > 1 …` must not divide by zero).
fn guarded(path: &Option<Expr>, c: Expr) -> Expr {
    match path {
        Some(p) => datafusion::logical_expr::when(p.clone(), c)
            .otherwise(lit(false))
            .unwrap_or_else(|_| p.clone().and(lit(false))),
        None => c,
    }
}

fn is_null_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(v, _) if v.is_null())
}

/// Appends to `out` the condition under which each value-dependent branch inside `e` gives the
/// value (`path`: the condition for reaching `e` itself).
fn branches(e: &Expr, path: Option<Expr>, schema: &DFSchema, out: &mut Vec<Expr>) {
    match e {
        Expr::Case(case) => {
            let mut before = path;
            for (when, then) in &case.when_then_expr {
                let condition = match &case.expr {
                    Some(base) => base.as_ref().clone().eq(when.as_ref().clone()),
                    None => when.as_ref().clone(),
                };
                let taken = guarded(&before, condition.clone().is_true());
                if !is_null_literal(then) {
                    out.push(taken.clone());
                }
                branches(then, Some(taken), schema, out);
                before = Some(guarded(&before, condition.is_not_true()));
            }
            if let Some(otherwise) = &case.else_expr
                && !is_null_literal(otherwise)
                && let Some(taken) = before
            {
                out.push(taken.clone());
                branches(otherwise, Some(taken), schema, out);
            }
        }
        Expr::ScalarFunction(f) => match f.func.name() {
            "coalesce" | "nvl" | "ifnull" => {
                let mut before = path;
                for a in &f.args {
                    let taken = guarded(&before, a.clone().is_not_null());
                    if !is_null_literal(a) {
                        out.push(taken.clone());
                    }
                    branches(a, Some(taken), schema, out);
                    before = Some(guarded(&before, a.clone().is_null()));
                }
            }
            "nullif" if f.args.len() == 2 => {
                let (a, b) = (&f.args[0], &f.args[1]);
                out.push(guarded(&path, a.clone().eq(b.clone()).is_not_true()));
                branches(a, path, schema, out);
            }
            name @ ("greatest" | "least") => {
                for (k, a) in f.args.iter().enumerate() {
                    let mut taken = guarded(&path, a.clone().is_not_null());
                    for (j, other) in f.args.iter().enumerate() {
                        if j != k {
                            let wins = if name == "greatest" {
                                a.clone().gt_eq(other.clone())
                            } else {
                                a.clone().lt_eq(other.clone())
                            };
                            taken = taken.and(wins.or(other.clone().is_null()));
                        }
                    }
                    out.push(taken.clone());
                    branches(a, Some(taken), schema, out);
                }
            }
            _ => children(e, path, schema, out),
        },
        Expr::Cast(c) if boolean(&c.expr, schema) => {
            out.push(guarded(&path, c.expr.as_ref().clone().is_true()));
            out.push(guarded(&path, c.expr.as_ref().clone().is_false()));
        }
        Expr::TryCast(c) if boolean(&c.expr, schema) => {
            out.push(guarded(&path, c.expr.as_ref().clone().is_true()));
            out.push(guarded(&path, c.expr.as_ref().clone().is_false()));
        }
        _ => children(e, path, schema, out),
    }
}

fn boolean(e: &Expr, schema: &DFSchema) -> bool {
    e.get_type(schema)
        .is_ok_and(|t| t == arrow::datatypes::DataType::Boolean)
}

fn children(e: &Expr, path: Option<Expr>, schema: &DFSchema, out: &mut Vec<Expr>) {
    let _ = e.apply_children(|child| {
        branches(child, path.clone(), schema, out);
        Ok(TreeNodeRecursion::Continue)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions_aggregate::expr_fn::{count, max, sum};
    use datafusion::logical_expr::{col, when};

    fn schema() -> DFSchema {
        DFSchema::try_from(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]))
        .unwrap()
    }

    fn of(e: Expr) -> Vec<Expr> {
        let Expr::AggregateFunction(f) = e else {
            panic!("an aggregate")
        };
        sub_cells(
            f.func.name(),
            f.params.distinct,
            &f.params.args,
            &[],
            &schema(),
        )
    }

    #[test]
    fn a_case_inside_a_sum_has_one_sub_cell_per_branch_and_the_nonzero_terms() {
        let arg = when(col("x").gt(lit(5i64)), lit(1i64))
            .otherwise(lit(0i64))
            .unwrap();
        let cells = of(sum(arg));
        assert_eq!(cells.len(), 3, "{cells:?}");
        assert_eq!(cells[0], col("x").gt(lit(5i64)).is_true());
        assert_eq!(cells[1], col("x").gt(lit(5i64)).is_not_true());
    }

    #[test]
    fn a_plain_count_has_none_and_max_of_a_column_has_none() {
        let arg = when(col("x").gt(lit(5i64)), lit(1i64))
            .otherwise(lit(0i64))
            .unwrap();
        assert!(of(count(arg)).is_empty());
        assert!(of(max(col("v"))).is_empty());
    }

    #[test]
    fn nested_branches_carry_their_path_and_null_branches_are_no_cell() {
        let inner = when(col("v").eq(lit(1i64)), col("v")).end().unwrap();
        let arg = when(col("x").gt(lit(5i64)), inner).end().unwrap();
        let cells = of(max(arg));
        // Outer branch, then the inner branch under it; no ELSE (NULL) anywhere.
        assert_eq!(
            cells,
            vec![
                col("x").gt(lit(5i64)).is_true(),
                // Evaluated as CASE does: the inner condition only where the outer holds.
                when(
                    col("x").gt(lit(5i64)).is_true(),
                    col("v").eq(lit(1i64)).is_true()
                )
                .otherwise(lit(false))
                .unwrap(),
            ]
        );
    }
}
