//! What an aggregate's value reveals besides who is non-NULL. `SUM(CASE WHEN rare THEN 1 ELSE 0
//! END)` counts the rare rows although every row "contributes" a non-NULL value, and
//! `MAX(CASE WHEN rare THEN year_of_birth ELSE 0 END)` is one participant's year in a large
//! group. Each value-dependent branch of an argument (CASE, COALESCE, NULLIF, GREATEST/LEAST, a
//! boolean turned into a number) selects rows whose participants the value is computed from on
//! their own: a sub-cell, which must hold no participant or more than T, like the cell. Sums
//! and means also depend only on their nonzero terms (`SUM(x > 5)`, `SUM(floor(v / 1e6))`).

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable, lit};

/// Conditions selecting the rows each sub-cell of aggregate `name(args)` is computed from
/// (empty: the value depends on which rows are non-NULL only, as for a plain COUNT).
pub fn sub_cells(name: &str, distinct: bool, args: &[Expr], schema: &DFSchema) -> Vec<Expr> {
    if name == "count" && !distinct {
        // A count of rows depends on which rows are non-NULL, which the cell's own set is.
        return vec![];
    }
    let mut out = Vec::new();
    for a in args {
        branches(a, None, schema, &mut out);
    }
    if matches!(name, "sum" | "avg" | "mean")
        && let Some(a) = args.first()
        && let Ok(t) = a.get_type(schema)
        && t.is_numeric()
        && let Ok(zero) = ScalarValue::new_zero(&t)
    {
        out.push(a.clone().not_eq(lit(zero)));
    }
    let mut unique: Vec<Expr> = Vec::with_capacity(out.len());
    for c in out {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    unique
}

/// An argument made of columns, literals and arithmetic that cannot turn a value into an
/// indicator: `+ - *`, division by a constant into a non-integer, numeric casts. What an
/// aggregates-only principal may aggregate.
pub fn plain(e: &Expr, schema: &DFSchema) -> bool {
    use datafusion::logical_expr::Operator;
    match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Alias(a) => plain(&a.expr, schema),
        Expr::Negative(e) => plain(e, schema),
        Expr::Cast(c) => !boolean(&c.expr, schema) && plain(&c.expr, schema),
        Expr::BinaryExpr(b) => {
            let arithmetic = match b.op {
                Operator::Plus | Operator::Minus | Operator::Multiply => true,
                // By a constant, into a non-integer: integer division is a step function, and
                // a column below the line makes bumps (1.0 / (1 + 1e9 * (x - c) * (x - c))).
                Operator::Divide => {
                    matches!(b.right.as_ref(), Expr::Literal(..))
                        && e.get_type(schema).is_ok_and(|t| {
                            matches!(
                                t,
                                arrow::datatypes::DataType::Float16
                                    | arrow::datatypes::DataType::Float32
                                    | arrow::datatypes::DataType::Float64
                                    | arrow::datatypes::DataType::Decimal128(..)
                                    | arrow::datatypes::DataType::Decimal256(..)
                            )
                        })
                }
                _ => false,
            };
            arithmetic && plain(&b.left, schema) && plain(&b.right, schema)
        }
        _ => false,
    }
}

fn and(path: &Option<Expr>, c: Expr) -> Expr {
    match path {
        Some(p) => p.clone().and(c),
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
                let taken = and(&before, condition.clone().is_true());
                if !is_null_literal(then) {
                    out.push(taken.clone());
                }
                branches(then, Some(taken), schema, out);
                before = Some(and(&before, condition.is_not_true()));
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
                    let taken = and(&before, a.clone().is_not_null());
                    if !is_null_literal(a) {
                        out.push(taken.clone());
                    }
                    branches(a, Some(taken), schema, out);
                    before = Some(and(&before, a.clone().is_null()));
                }
            }
            "nullif" if f.args.len() == 2 => {
                let (a, b) = (&f.args[0], &f.args[1]);
                out.push(and(&path, a.clone().eq(b.clone()).is_not_true()));
                branches(a, path, schema, out);
            }
            name @ ("greatest" | "least") => {
                for (k, a) in f.args.iter().enumerate() {
                    let mut taken = and(&path, a.clone().is_not_null());
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
            out.push(and(&path, c.expr.as_ref().clone().is_true()));
            out.push(and(&path, c.expr.as_ref().clone().is_false()));
        }
        Expr::TryCast(c) if boolean(&c.expr, schema) => {
            out.push(and(&path, c.expr.as_ref().clone().is_true()));
            out.push(and(&path, c.expr.as_ref().clone().is_false()));
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
        sub_cells(f.func.name(), f.params.distinct, &f.params.args, &schema())
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
                col("x")
                    .gt(lit(5i64))
                    .is_true()
                    .and(col("v").eq(lit(1i64)).is_true()),
            ]
        );
    }
}
