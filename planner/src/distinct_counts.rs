//! `COUNT(DISTINCT k)` of integers counted in a roaring bitmap per group.
//!
//! DataFusion plans `COUNT(DISTINCT k) … GROUP BY g` as a group by `g, k` under a group by `g`
//! (its single-distinct rule): a hash table of every distinct `(g, k)` pair, then a second
//! aggregation. Other distinct counts (next to a SUM, say) go through its row-at-a-time
//! accumulator, a hash set per group. Research SQL counts participants this way everywhere
//! (`COUNT(DISTINCT person_id) … GROUP BY concept, year`): a bitmap per group, filled from
//! ids that arrive mostly in order, is the same count at a fraction of the work — the
//! participant sets disclosure control builds are those bitmaps.
//!
//! Applied to the plan the policy rules produced, just before physical planning: a count
//! computed another way is the same count, so nothing they decided changes, and they never see
//! the function (it is internal: no caller can name it).

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, LogicalPlan};

use crate::disclosure::lineage::{aggregate_of, distinct_count_parts};
use crate::participants::distinct_count;

/// `plan` with its integer distinct counts counted in bitmaps.
pub fn in_bitmaps(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Aggregate(agg) = &node else {
            return Ok(Transformed::no(node));
        };
        // The single-distinct rule's pair of aggregates, as the one aggregate it stands for.
        let fused = distinct_count_parts(agg).map(|(_, f)| f);
        let rewritten = fused
            .as_ref()
            .and_then(|f| counted_in_bitmaps(f, &agg.schema))
            .or_else(|| counted_in_bitmaps(agg, &agg.schema));
        Ok(match rewritten {
            Some(rewritten) => Transformed::yes(LogicalPlan::Aggregate(rewritten)),
            None => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// `agg` with each `COUNT(DISTINCT k)` of an integer `k` counted in a bitmap, or `None` if it
/// has none, with the output schema `output` (the same columns as `agg`'s).
fn counted_in_bitmaps(agg: &Aggregate, output: &DFSchemaRef) -> Option<Aggregate> {
    let schema = agg.input.schema();
    let n_group = output.fields().len() - agg.aggr_expr.len();
    let mut changed = false;
    let aggr: Vec<Expr> = agg
        .aggr_expr
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let Some(f) = aggregate_of(e) else {
                return e.clone();
            };
            let [k] = f.params.args.as_slice() else {
                return e.clone();
            };
            let integer = k.get_type(schema).is_ok_and(|t| one_to_one_in_int64(&t));
            if f.func.name() != "count"
                || !f.params.distinct
                || !f.params.order_by.is_empty()
                || !integer
            {
                return e.clone();
            }
            let Ok(k) = k.clone().cast_to(&DataType::Int64, schema) else {
                return e.clone();
            };
            changed = true;
            let counted = Expr::AggregateFunction(AggregateFunction::new_udf(
                distinct_count(),
                vec![k],
                false,
                f.params.filter.clone(),
                vec![],
                None,
            ));
            // The output keeps the name (and qualifier) the plan above reads it by.
            let (qualifier, field) = output.qualified_field(n_group + i);
            counted.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    if !changed {
        return None;
    }
    Aggregate::try_new_with_schema(
        agg.input.clone(),
        agg.group_expr.clone(),
        aggr,
        Arc::clone(output),
    )
    .ok()
}

/// Integer types whose every value is a distinct Int64 (UInt64's upper half is not).
fn one_to_one_in_int64(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::cohort::boundary::PlainQueryPlanner;

    /// Ids with repeats, negatives and NULLs, in three integer types, over a few groups.
    fn table() -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, true),
            Field::new("k", DataType::Int64, true),
            Field::new("k32", DataType::Int32, true),
            Field::new("u32", DataType::UInt32, true),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = |seed: i64| {
            let n = 3_000;
            let k: Int64Array = (0..n)
                .map(|i| ((i * 7919 + seed) % 11 != 0).then_some((i * 31 + seed) % 997 - 300))
                .collect();
            let k32: Int32Array = (0..n)
                .map(|i| ((i + seed) % 13 != 0).then_some(((i * 17) % 401 - 200) as i32))
                .collect();
            let u32s: UInt32Array = (0..n)
                .map(|i| ((i + seed) % 5 != 0).then_some(u32::MAX - (i * 3 % 1_000) as u32))
                .collect();
            let g: StringArray = (0..n)
                .map(|i| ((i + seed) % 17 != 0).then(|| format!("g{}", i % 7)))
                .collect();
            let v: Int64Array = (0..n).map(|i| (i % 9) - 4).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(g),
                    Arc::new(k),
                    Arc::new(k32),
                    Arc::new(u32s),
                    Arc::new(v),
                ],
            )
            .unwrap()
        };
        // Two partitions, so that partial bitmaps are merged.
        Arc::new(MemTable::try_new(schema.clone(), vec![vec![batch(1)], vec![batch(2)]]).unwrap())
    }

    async fn answers(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn bitmap_counts_equal_datafusion_counts() {
        let stock = SessionContext::new();
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_query_planner(Arc::new(PlainQueryPlanner))
            .build();
        let strata = SessionContext::new_with_state(state);
        for ctx in [&stock, &strata] {
            ctx.register_table("t", table()).unwrap();
            ctx.sql("CREATE TABLE empty AS SELECT * FROM t WHERE v > 100")
                .await
                .unwrap();
        }
        let queries = [
            // The single-distinct pair of aggregates, fused.
            (
                "SELECT g, COUNT(DISTINCT k) AS n FROM t GROUP BY g ORDER BY g",
                true,
            ),
            (
                "SELECT g, COUNT(DISTINCT k32) FROM t GROUP BY g ORDER BY g",
                true,
            ),
            ("SELECT COUNT(DISTINCT u32) FROM t", true),
            // Next to other aggregates, with a filter, without groups, over no rows.
            (
                "SELECT g, COUNT(DISTINCT k), SUM(v), COUNT(*) FROM t GROUP BY g ORDER BY g",
                true,
            ),
            (
                "SELECT g, COUNT(DISTINCT k) FILTER (WHERE v > 0), COUNT(DISTINCT k32) \
                 FROM t GROUP BY g ORDER BY g",
                true,
            ),
            // The single-distinct rule's pair with an inner aggregate: left as planned.
            ("SELECT COUNT(DISTINCT k), MAX(v) FROM t", false),
            ("SELECT COUNT(DISTINCT k) FROM empty", true),
            // Grouping sets: the grouping id sits between the keys and the aggregates.
            (
                "SELECT g, v, COUNT(DISTINCT k), COUNT(DISTINCT u32) FROM t \
                 GROUP BY ROLLUP(g, v) ORDER BY g, v",
                true,
            ),
            ("SELECT g, COUNT(DISTINCT k) FROM empty GROUP BY g", true),
            // Inside a subquery; over a computed key (the pair is fused for column keys only).
            (
                "SELECT g FROM t WHERE v = (SELECT COUNT(DISTINCT k) - 1296 FROM t) \
                 GROUP BY g ORDER BY g",
                true,
            ),
            (
                "SELECT v, COUNT(DISTINCT k % 10) FROM t GROUP BY v ORDER BY v",
                false,
            ),
            // Not integers: left to DataFusion.
            (
                "SELECT v, COUNT(DISTINCT g) FROM t GROUP BY v ORDER BY v",
                false,
            ),
        ];
        for (sql, rewritten) in queries {
            assert_eq!(
                answers(&strata, sql).await,
                answers(&stock, sql).await,
                "{sql}"
            );
            let optimized = strata
                .sql(sql)
                .await
                .unwrap()
                .into_optimized_plan()
                .unwrap();
            let plan = in_bitmaps(optimized).unwrap().display_indent().to_string();
            assert_eq!(
                plan.contains("strata_distinct_count"),
                rewritten,
                "{sql}\n{plan}"
            );
        }
    }
}
