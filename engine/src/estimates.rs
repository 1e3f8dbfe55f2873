//! What the optimizer assumes of a filter it cannot analyse.
//!
//! Scans tell the optimizer row counts and sizes only: column statistics stay out of plans (see
//! `table::planning_statistics`). Without a column's bounds DataFusion's interval analysis finds
//! no selectivity for `concept = 201826` and assumes the filter keeps every row, so the filtered
//! side of a join looks as large as its whole table and the join builds its hash table on the
//! other, larger side (2-5x slower joins in `bench/`). Where the analysis found nothing, the
//! filter is taken to keep DataFusion's default share of rows
//! (`optimizer.default_filter_selectivity`), the guess it makes for predicates it cannot analyse
//! at all. The guess depends on no data, so plans still tell nothing of any column's values.
//! A grouping keeps that estimate (it never makes more rows than it reads): DataFusion's own
//! estimate for it is taken from its input's built-in statistics and would lose it.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::Statistics;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::operator_statistics::{
    ExtendedStatistics, FilterStatisticsProvider, StatisticsProvider, StatisticsRegistry,
    StatisticsResult,
};

/// DataFusion's providers, with unanalysable filters given the default selectivity.
pub fn registry() -> StatisticsRegistry {
    let mut registry = StatisticsRegistry::default_with_builtin_providers();
    registry.register(Arc::new(UnboundedFilters));
    registry
}

#[derive(Debug, Default)]
struct UnboundedFilters;

impl StatisticsProvider for UnboundedFilters {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
            return Ok(grouping(aggregate, child_stats));
        }
        let Some(filter) = plan.downcast_ref::<FilterExec>() else {
            return Ok(StatisticsResult::Delegate);
        };
        let StatisticsResult::Computed(computed) =
            FilterStatisticsProvider.compute_statistics(plan, child_stats)?
        else {
            return Ok(StatisticsResult::Delegate);
        };
        let input_rows = child_stats.first().map(|c| c.base().num_rows);
        let kept_all = input_rows.is_some_and(|rows| {
            rows.get_value().is_some() && computed.base().num_rows.get_value() == rows.get_value()
        });
        if !kept_all {
            return Ok(StatisticsResult::Computed(computed));
        }
        let selectivity = f64::from(filter.default_selectivity()) / 100.0;
        let mut stats = computed.base().clone();
        stats.num_rows = stats.num_rows.with_estimated_selectivity(selectivity);
        stats.total_byte_size = stats
            .total_byte_size
            .with_estimated_selectivity(selectivity);
        Ok(StatisticsResult::Computed(ExtendedStatistics::new(stats)))
    }
}

/// At most as many groups as input rows, of unknown width: the input's estimate of rows.
fn grouping(aggregate: &AggregateExec, child_stats: &[ExtendedStatistics]) -> StatisticsResult {
    let Some(input) = child_stats.first() else {
        return StatisticsResult::Delegate;
    };
    if aggregate.group_expr().is_empty() || input.base().num_rows.get_value().is_none() {
        return StatisticsResult::Delegate;
    }
    let mut stats = Statistics::new_unknown(&aggregate.schema());
    stats.num_rows = input.base().num_rows.to_inexact();
    StatisticsResult::Computed(ExtendedStatistics::new(stats))
}
