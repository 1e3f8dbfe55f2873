//! Walks into the subqueries of a plan node's expressions, which `LogicalPlan::inputs` does not
//! list.

use datafusion::logical_expr::LogicalPlan;

/// Whether any subquery in the expressions of `node` (scalar, EXISTS, IN) satisfies `pred`.
pub(crate) fn any_subquery(node: &LogicalPlan, pred: impl Fn(&LogicalPlan) -> bool) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = false;
    let _ = node.apply_expressions(|e| {
        e.apply(|e| {
            let sub = match e {
                Expr::ScalarSubquery(s) => Some(&s.subquery),
                Expr::Exists(x) => Some(&x.subquery.subquery),
                Expr::InSubquery(x) => Some(&x.subquery.subquery),
                _ => None,
            };
            if sub.is_some_and(|s| pred(s)) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}
