//! Participant lineage as a plan rewrite. Every relation of the optimized plan gets hidden
//! columns that say which participants its rows came from: the person key of a scan (Int64),
//! carried through projections, filters and sorts, concatenated by joins, and unioned into a
//! roaring bitmap (Binary) by every aggregate and window aggregate. Right after each aggregate
//! the values are replaced by their protected form, so everything above — HAVING, ORDER BY,
//! LIMIT, joins on a derived table, outer aggregates, the client — sees only protected values.
//!
//! Plan shapes whose lineage is not computed exactly are refused, never run unprotected.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, JoinType, LogicalPlan, Projection, TableScan, Window, cast, lit,
};

use crate::cohort::boundary::{CohortBoundary, PERSON};

use super::participants::{Output, Protection, SuppressionCounter, participants_udaf, protect_udf};

/// Why a plan cannot be protected; becomes an "unsupported" refusal.
#[derive(Debug, Clone)]
pub struct Unprotectable(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Unprotectable> {
    Err(Unprotectable(why.into()))
}

type R<T> = Result<T, Unprotectable>;

fn df<T>(r: DfResult<T>) -> R<T> {
    r.map_err(|e| Unprotectable(format!("internal: {e}")))
}

/// A hidden lineage column: a person id or a bitmap of them.
#[derive(Debug, Clone)]
struct Hidden {
    name: String,
    bitmap: bool,
    /// For a person id: the visible column it equals on every row (the scan's person key, as
    /// named at this point of the plan), while that is known.
    origin: Option<Column>,
}

impl Hidden {
    fn expr(&self) -> Expr {
        Expr::Column(Column::new_unqualified(&self.name))
    }

    fn data_type(&self) -> DataType {
        if self.bitmap {
            DataType::Binary
        } else {
            DataType::Int64
        }
    }
}

pub struct Rewriter<'a> {
    /// Person key column of each participant table.
    person_keys: &'a HashMap<String, String>,
    protection: Protection,
    counter: Arc<SuppressionCounter>,
    next: usize,
    /// Cells the rewrite protected (aggregate and window outputs).
    pub protected_cells: usize,
    /// Names of columns holding protected values, or values computed from them.
    protected_names: std::collections::HashSet<String>,
    /// Output columns that hold protected values; the result then ends with a hidden
    /// `__strata_cell_set` column (each row's participants) for the release ledger.
    pub output_cells: Vec<usize>,
}

/// The hidden last column of a protected result: each row's participant set.
pub const CELL_SET_COLUMN: &str = "__strata_cell_set";

impl<'a> Rewriter<'a> {
    pub fn new(
        person_keys: &'a HashMap<String, String>,
        protection: Protection,
        counter: Arc<SuppressionCounter>,
    ) -> Self {
        Rewriter {
            person_keys,
            protection,
            counter,
            next: 0,
            protected_cells: 0,
            protected_names: Default::default(),
            output_cells: Vec::new(),
        }
    }

    fn hidden(&mut self, bitmap: bool) -> Hidden {
        self.next += 1;
        Hidden {
            name: format!("__strata_lineage_{}", self.next),
            bitmap,
            origin: None,
        }
    }

    /// The protected plan: same output schema as `plan`.
    pub fn rewrite(&mut self, plan: &LogicalPlan) -> R<LogicalPlan> {
        if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            // Not executed for its rows; EXPLAIN ANALYZE is refused by the statement policy.
            return Ok(plan.clone());
        }
        if !self.aggregates_participants(plan) {
            // Row-level results and vocabulary aggregates: no cell to protect.
            return Ok(plan.clone());
        }
        let (rewritten, hidden) = self.node(plan)?;
        if hidden.is_empty() && self.protected_cells == 0 {
            return Ok(plan.clone());
        }
        // Back to the original columns, plus each row's participants if it holds protected
        // values.
        let mut exprs: Vec<Expr> = plan
            .schema()
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        self.output_cells = plan
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| self.protected_names.contains(f.name()))
            .map(|(i, _)| i)
            .collect();
        if !self.output_cells.is_empty() && !hidden.is_empty() {
            exprs.push(
                super::participants::cell_set_udf()
                    .call(hidden.iter().map(Hidden::expr).collect())
                    .alias(CELL_SET_COLUMN),
            );
        } else {
            self.output_cells.clear();
        }
        df(Projection::try_new(exprs, Arc::new(rewritten)).map(LogicalPlan::Projection))
    }

    fn node(&mut self, plan: &LogicalPlan) -> R<(LogicalPlan, Vec<Hidden>)> {
        self.no_participant_subqueries(plan)?;
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(p) => {
                let (input, hidden) = self.node(&p.input)?;
                for (e, f) in p.expr.iter().zip(p.schema.fields()) {
                    if self.references_protected(e) {
                        self.protected_names.insert(f.name().clone());
                    }
                }
                let mut exprs = p.expr.clone();
                exprs.extend(hidden.iter().map(Hidden::expr));
                let plan = df(Projection::try_new(exprs, Arc::new(input)))?;
                let hidden = hidden
                    .into_iter()
                    .map(|mut h| {
                        h.origin = h.origin.and_then(|o| {
                            p.expr.iter().zip(p.schema.iter()).find_map(|(e, (q, f))| {
                                let inner = match e {
                                    Expr::Alias(a) => a.expr.as_ref(),
                                    e => e,
                                };
                                matches!(inner, Expr::Column(c) if *c == o)
                                    .then(|| Column::new(q.cloned(), f.name()))
                            })
                        });
                        h
                    })
                    .collect();
                Ok((LogicalPlan::Projection(plan), hidden))
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Repartition(_) => {
                let (input, hidden) = self.node(plan.inputs()[0])?;
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![input]))?;
                Ok((plan, hidden))
            }
            LogicalPlan::SubqueryAlias(a) => {
                let (input, mut hidden) = self.node(&a.input)?;
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![input]))?;
                for h in &mut hidden {
                    h.origin = h
                        .origin
                        .take()
                        .map(|o| Column::new(Some(a.alias.clone()), o.name));
                }
                Ok((plan, hidden))
            }
            LogicalPlan::Join(join) => self.join(plan, join),
            LogicalPlan::Aggregate(agg) => self.aggregate(agg),
            LogicalPlan::Window(w) => self.window(w),
            LogicalPlan::Union(u) => self.union(plan, u),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok((plan.clone(), vec![])),
            LogicalPlan::Extension(_) if CohortBoundary::of(plan).is_some() => self.cohort(plan),
            other => {
                if self.reads_participants(other) {
                    refuse(format!(
                        "{} over participant data cannot be protected",
                        other.display()
                    ))
                } else {
                    Ok((other.clone(), vec![]))
                }
            }
        }
    }

    fn references_protected(&self, e: &Expr) -> bool {
        let mut found = false;
        let _ = e.apply(|e| {
            if let Expr::Column(c) = e
                && self.protected_names.contains(&c.name)
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    }

    fn aggregates_participants(&self, plan: &LogicalPlan) -> bool {
        super::aggregates_participants(plan, self.person_keys)
    }

    fn reads_participants(&self, plan: &LogicalPlan) -> bool {
        super::reads_participants(plan, self.person_keys)
    }

    /// Subqueries left in expressions after decorrelation are not rewritten: refuse those that
    /// read participant data.
    fn no_participant_subqueries(&self, plan: &LogicalPlan) -> R<()> {
        let bad = crate::any_subquery(plan, |sub| self.reads_participants(sub));
        if bad {
            return refuse(
                "this subquery over participant data cannot be protected; write it as a join",
            );
        }
        Ok(())
    }

    fn scan(&mut self, scan: &TableScan) -> R<(LogicalPlan, Vec<Hidden>)> {
        let plan = LogicalPlan::TableScan(scan.clone());
        let Some(key) = self.person_keys.get(scan.table_name.table()) else {
            return Ok((plan, vec![]));
        };
        let source_schema = scan.source.schema();
        let Ok(key_index) = source_schema.index_of(key) else {
            return refuse(format!("table {} has no column {key}", scan.table_name));
        };
        let mut projection = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..source_schema.fields().len()).collect());
        if !projection.contains(&key_index) {
            projection.push(key_index);
        }
        let widened = df(
            datafusion::logical_expr::logical_plan::TableScanBuilder::new(
                scan.table_name.clone(),
                scan.source.clone(),
            )
            .with_projection(Some(projection))
            .with_filters(scan.filters.clone())
            .with_fetch(scan.fetch)
            .build(),
        )?;
        let mut hidden = self.hidden(false);
        hidden.origin = scan
            .projection
            .as_ref()
            .is_none_or(|p| p.contains(&key_index))
            .then(|| Column::new(Some(scan.table_name.clone()), key));
        let mut exprs: Vec<Expr> = scan
            .projected_schema
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        exprs.push(
            cast(
                Expr::Column(Column::new(Some(scan.table_name.clone()), key)),
                DataType::Int64,
            )
            .alias(&hidden.name),
        );
        let plan = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::TableScan(widened)),
        ))?;
        Ok((LogicalPlan::Projection(plan), vec![hidden]))
    }

    /// A cohort is read like a participant table keyed by `person_id`: each of its rows is
    /// derived from that participant's own records (see `cohort::boundary`).
    fn cohort(&mut self, plan: &LogicalPlan) -> R<(LogicalPlan, Vec<Hidden>)> {
        let schema = plan.schema();
        let Some((qualifier, _)) = schema.iter().find(|(_, f)| f.name() == PERSON) else {
            return refuse("a cohort without person_id cannot be protected");
        };
        let key = Column::new(qualifier.cloned(), PERSON);
        let mut hidden = self.hidden(false);
        hidden.origin = Some(key.clone());
        let mut exprs: Vec<Expr> = schema
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        exprs.push(cast(Expr::Column(key), DataType::Int64).alias(&hidden.name));
        let plan = df(Projection::try_new(exprs, Arc::new(plan.clone())))?;
        Ok((LogicalPlan::Projection(plan), vec![hidden]))
    }

    fn join(
        &mut self,
        plan: &LogicalPlan,
        join: &datafusion::logical_expr::Join,
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        let (left, hl) = self.node(&join.left)?;
        let (right, hr) = self.node(&join.right)?;
        match join.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![left, right]))?;
                Ok((plan, [hl, hr].concat()))
            }
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark if hr.is_empty() => {
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![left, right]))?;
                Ok((plan, hl))
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark if hl.is_empty() => {
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![left, right]))?;
                Ok((plan, hr))
            }
            // Correlated on the person key (`EXISTS (… WHERE c.person_id = p.person_id …)`): the
            // right rows that can match, or whose absence decides, are the left row's own
            // participant's, so the left lineage is the whole lineage.
            JoinType::LeftSemi | JoinType::LeftAnti
                if !hl.is_empty() && self.correlated_on_person(join) =>
            {
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![left, right]))?;
                Ok((plan, hl))
            }
            JoinType::RightSemi | JoinType::RightAnti
                if !hr.is_empty() && self.correlated_on_person(join) =>
            {
                let plan = df(plan.with_new_exprs(plan.expressions(), vec![left, right]))?;
                Ok((plan, hr))
            }
            JoinType::RightAnti => {
                let anti = df(plan.with_new_exprs(plan.expressions(), vec![left.clone(), right]))?;
                self.with_all_participants_of(anti, hr, left, &hl)
            }
            JoinType::LeftSemi if join.filter.is_none() => {
                self.semi_join(join, left, hl, right, hr)
            }
            // The absence of a match is decided by every row of the right side: all its
            // participants join each surviving left row's lineage.
            JoinType::LeftAnti => {
                let anti = df(plan.with_new_exprs(plan.expressions(), vec![left, right.clone()]))?;
                self.with_all_participants_of(anti, hl, right, &hr)
            }
            other => refuse(format!(
                "a {other} join on {:?} that depends on participant data (a correlated \
                 condition not on the person key) cannot be protected yet; rewrite it as an \
                 inner or outer join",
                join.on
                    .iter()
                    .map(|(l, r)| format!("{l} = {r}"))
                    .collect::<Vec<_>>(),
            )),
        }
    }

    /// `plan` with one more lineage column: the participants of all of `side` (one bitmap,
    /// dictionary-encoded so that its rows share it rather than copy it).
    fn with_all_participants_of(
        &mut self,
        plan: LogicalPlan,
        mut hidden: Vec<Hidden>,
        side: LogicalPlan,
        side_hidden: &[Hidden],
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        let all = self.hidden(true);
        let everyone = df(Aggregate::try_new(
            Arc::new(side),
            vec![],
            vec![
                self.participants(side_hidden, None, Output::Bitmap)
                    .alias(&all.name),
            ],
        ))?;
        let shared = df(Projection::try_new(
            vec![
                cast(
                    all.expr(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary)),
                )
                .alias(&all.name),
            ],
            Arc::new(LogicalPlan::Aggregate(everyone)),
        ))?;
        let joined = df(datafusion::logical_expr::LogicalPlanBuilder::from(plan)
            .cross_join(LogicalPlan::Projection(shared))
            .and_then(|b| b.build()))?;
        hidden.push(all);
        Ok((joined, hidden))
    }

    fn correlated_on_person(&self, join: &datafusion::logical_expr::Join) -> bool {
        let is_key = |e: &Expr| {
            let e = match e {
                Expr::Cast(c) => c.expr.as_ref(),
                e => e,
            };
            matches!(e, Expr::Column(c) if self.person_keys.values().any(|k| *k == c.name))
        };
        join.on.iter().any(|(l, r)| is_key(l) && is_key(r))
    }

    /// `L SEMI JOIN R ON l = r` → `L JOIN (SELECT r, participants(R) FROM R GROUP BY r) ON l = r`:
    /// the same rows (R's side is unique per key), now carrying the participants of the right
    /// rows each left row matched.
    fn semi_join(
        &mut self,
        join: &datafusion::logical_expr::Join,
        left: LogicalPlan,
        hl: Vec<Hidden>,
        right: LogicalPlan,
        hr: Vec<Hidden>,
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        let keys: Vec<(String, Expr)> = join
            .on
            .iter()
            .enumerate()
            .map(|(i, (_, r))| (format!("__strata_key_{}_{i}", self.next + 1), r.clone()))
            .collect();
        let bitmap = self.hidden(true);
        let group: Vec<Expr> = keys.iter().map(|(n, e)| e.clone().alias(n)).collect();
        let agg = df(Aggregate::try_new(
            Arc::new(right),
            group,
            vec![
                self.participants(&hr, None, Output::Bitmap)
                    .alias(&bitmap.name),
            ],
        ))?;
        let on: Vec<(Expr, Expr)> = join
            .on
            .iter()
            .zip(&keys)
            .map(|((l, _), (n, _))| (l.clone(), Expr::Column(Column::new_unqualified(n))))
            .collect();
        let left_schema = left.schema().clone();
        let inner = df(datafusion::logical_expr::LogicalPlanBuilder::from(left)
            .join_with_expr_keys(
                LogicalPlan::Aggregate(agg),
                JoinType::Inner,
                (
                    on.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
                    on.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
                ),
                None,
            )
            .and_then(|b| b.build()))?;
        let mut exprs: Vec<Expr> = left_schema
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        exprs.push(bitmap.expr());
        let plan = df(Projection::try_new(exprs, Arc::new(inner)))?;
        let mut hidden = hl;
        hidden.push(bitmap);
        Ok((LogicalPlan::Projection(plan), hidden))
    }

    /// `strata_participants(lineage…) [FILTER (WHERE …)]`.
    fn participants(&self, hidden: &[Hidden], filter: Option<Expr>, output: Output) -> Expr {
        Expr::AggregateFunction(AggregateFunction::new_udf(
            participants_udaf(output),
            hidden.iter().map(Hidden::expr).collect(),
            false,
            filter.map(Box::new),
            vec![],
            None,
        ))
    }

    fn aggregate(&mut self, agg: &Aggregate) -> R<(LogicalPlan, Vec<Hidden>)> {
        let (input, hidden) = self.node(&agg.input)?;
        if hidden.is_empty() {
            let plan = df(Aggregate::try_new(
                Arc::new(input),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
            ))?;
            return Ok((LogicalPlan::Aggregate(plan), vec![]));
        }
        if !agg.aggr_expr.is_empty()
            && agg.aggr_expr.iter().all(|e| {
                matches!(e, Expr::AggregateFunction(f) if super::participants::is_internal(&f.func))
                    || matches!(e, Expr::Alias(a) if matches!(a.expr.as_ref(), Expr::AggregateFunction(f) if super::participants::is_internal(&f.func)))
            })
        {
            return self.internal_aggregate(agg, input, hidden);
        }
        if let Some(person) = self.person_group(agg, &hidden) {
            return self.per_person_aggregate(agg, input, person);
        }
        // One participant set per distinct contribution condition: an aggregate ignores rows
        // its FILTER rejects and rows whose arguments are NULL, so those rows did not
        // contribute to its value.
        let mut conditions: Vec<Option<Expr>> = Vec::new();
        let mut condition_of = Vec::with_capacity(agg.aggr_expr.len());
        let input_schema = agg.input.schema().clone();
        for e in &agg.aggr_expr {
            let c = contribution(e, &input_schema);
            let i = conditions.iter().position(|x| *x == c).unwrap_or_else(|| {
                conditions.push(c.clone());
                conditions.len() - 1
            });
            condition_of.push(i);
        }
        // The group's participants (all rows), carried up as the aggregate's lineage.
        let group_set = self.hidden(true);
        let mut aggr = agg.aggr_expr.clone();
        aggr.push(
            self.participants(&hidden, None, Output::Bitmap)
                .alias(&group_set.name),
        );
        let mut sets = Vec::with_capacity(conditions.len());
        for c in &conditions {
            match c {
                None => sets.push(group_set.clone()),
                Some(c) => {
                    let h = self.hidden(true);
                    aggr.push(
                        self.participants(&hidden, Some(c.clone()), Output::Bitmap)
                            .alias(&h.name),
                    );
                    sets.push(h);
                }
            }
        }
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input),
            agg.group_expr.clone(),
            aggr,
        ))?;
        let n_group = agg.schema.fields().len() - agg.aggr_expr.len();
        let mut exprs = Vec::new();
        for (i, (q, f)) in agg.schema.iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if i < n_group {
                exprs.push(column);
                continue;
            }
            let k = i - n_group;
            let is_count = is_count(&agg.aggr_expr[k]);
            let protect = protect_udf(self.protection, is_count, self.counter.clone());
            self.protected_cells += 1;
            self.protected_names.insert(f.name().clone());
            exprs.push(
                protect
                    .call(vec![column, sets[condition_of[k]].expr()])
                    .alias_qualified(q.cloned(), f.name()),
            );
        }
        exprs.push(group_set.expr());
        let plan = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::Aggregate(rebuilt)),
        ))?;
        Ok((LogicalPlan::Projection(plan), vec![group_set]))
    }

    /// Grouped by the person key every lineage column comes from: each group is one
    /// participant, the group key itself (no bitmap needed).
    fn person_group(&self, agg: &Aggregate, hidden: &[Hidden]) -> Option<Column> {
        if matches!(agg.group_expr.first(), Some(Expr::GroupingSet(_))) {
            return None;
        }
        let keys: Vec<&Column> = agg
            .group_expr
            .iter()
            .filter_map(|e| match e {
                Expr::Column(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut origin = None;
        for h in hidden {
            let o = h.origin.as_ref().filter(|_| !h.bitmap)?;
            if !keys.contains(&o) {
                return None;
            }
            origin.get_or_insert_with(|| o.clone());
        }
        origin
    }

    /// A server-built cohort intermediate (occurrence counts per participant): its values
    /// never leave the server, only decide who is in the cohort, so they are not protected; the
    /// group's participants still go up as its lineage.
    fn internal_aggregate(
        &mut self,
        agg: &Aggregate,
        input: LogicalPlan,
        hidden: Vec<Hidden>,
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        if let Some(person) = self.person_group(agg, &hidden) {
            let (plan, lineage) = self.keyed_by_person(agg, input, person)?;
            return Ok((plan, vec![lineage]));
        }
        let set = self.hidden(true);
        let mut aggr = agg.aggr_expr.clone();
        aggr.push(
            self.participants(&hidden, None, Output::Bitmap)
                .alias(&set.name),
        );
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input),
            agg.group_expr.clone(),
            aggr,
        ))?;
        Ok((LogicalPlan::Aggregate(rebuilt), vec![set]))
    }

    /// Every cell of a one-participant group is protected away; the lineage going up is the
    /// group's person id.
    fn per_person_aggregate(
        &mut self,
        agg: &Aggregate,
        input: LogicalPlan,
        person: Column,
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        let (with_key, lineage) = self.keyed_by_person(agg, input, person)?;
        let n_group = agg.schema.fields().len() - agg.aggr_expr.len();
        let mut exprs = Vec::new();
        for (i, (q, f)) in agg.schema.iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if i < n_group {
                exprs.push(column);
                continue;
            }
            let protect = protect_udf(
                self.protection,
                is_count(&agg.aggr_expr[i - n_group]),
                self.counter.clone(),
            );
            self.protected_cells += 1;
            self.protected_names.insert(f.name().clone());
            exprs.push(
                protect
                    .call(vec![column, lineage.expr()])
                    .alias_qualified(q.cloned(), f.name()),
            );
        }
        exprs.push(lineage.expr());
        let plan = df(Projection::try_new(exprs, Arc::new(with_key)))?;
        Ok((LogicalPlan::Projection(plan), vec![lineage]))
    }

    /// The aggregate, rebuilt over the rewritten input, plus its person group key as the
    /// lineage column (one participant per group: no bitmap).
    fn keyed_by_person(
        &mut self,
        agg: &Aggregate,
        input: LogicalPlan,
        person: Column,
    ) -> R<(LogicalPlan, Hidden)> {
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input),
            agg.group_expr.clone(),
            agg.aggr_expr.clone(),
        ))?;
        let mut lineage = self.hidden(false);
        let mut exprs: Vec<Expr> = agg
            .schema
            .iter()
            .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
            .collect();
        exprs.push(cast(Expr::Column(person.clone()), DataType::Int64).alias(&lineage.name));
        let plan = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::Aggregate(rebuilt)),
        ))?;
        lineage.origin = Some(person);
        Ok((LogicalPlan::Projection(plan), lineage))
    }

    fn window(&mut self, w: &Window) -> R<(LogicalPlan, Vec<Hidden>)> {
        let (input, hidden) = self.node(&w.input)?;
        if hidden.is_empty() {
            let plan = df(Window::try_new(w.window_expr.clone(), Arc::new(input)))?;
            return Ok((LogicalPlan::Window(plan), vec![]));
        }
        let n_input = w.input.schema().fields().len();
        let mut exprs = w.window_expr.clone();
        let mut counts: Vec<Option<String>> = Vec::new();
        for e in &w.window_expr {
            let Some(wf) = window_function(e) else {
                return refuse("an unrecognized window expression cannot be protected");
            };
            let is_aggregate = matches!(
                wf.fun,
                datafusion::logical_expr::WindowFunctionDefinition::AggregateUDF(_)
            );
            if !is_aggregate {
                // ROW_NUMBER, RANK, LAG, … return a position or another row's value, not a
                // statistic; the row keeps its own lineage.
                counts.push(None);
                continue;
            }
            let name = self.hidden(false).name;
            let mut params = wf.params.clone();
            params.args = hidden.iter().map(Hidden::expr).collect();
            params.distinct = false;
            params.filter = contribution_window(wf, w.input.schema()).map(Box::new);
            let count = Expr::WindowFunction(Box::new(WindowFunction {
                fun: datafusion::logical_expr::WindowFunctionDefinition::AggregateUDF(
                    participants_udaf(Output::Count),
                ),
                params,
            }))
            .alias(&name);
            exprs.push(count);
            counts.push(Some(name));
        }
        let rebuilt = df(Window::try_new(exprs, Arc::new(input)))?;
        let mut out = Vec::new();
        for (i, (q, f)) in w.schema.iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if i < n_input {
                out.push(column);
                continue;
            }
            let k = i - n_input;
            match &counts[k] {
                None => out.push(column),
                Some(count) => {
                    let is_count = window_function(&w.window_expr[k])
                        .is_some_and(|wf| wf.fun.name() == "count");
                    let protect = protect_udf(self.protection, is_count, self.counter.clone());
                    self.protected_cells += 1;
                    self.protected_names.insert(f.name().clone());
                    out.push(
                        protect
                            .call(vec![column, Expr::Column(Column::new_unqualified(count))])
                            .alias_qualified(q.cloned(), f.name()),
                    );
                }
            }
        }
        out.extend(hidden.iter().map(Hidden::expr));
        let plan = df(Projection::try_new(
            out,
            Arc::new(LogicalPlan::Window(rebuilt)),
        ))?;
        Ok((LogicalPlan::Projection(plan), hidden))
    }

    /// Each input's lineage goes to its own hidden slots (NULL in the other inputs' rows).
    fn union(
        &mut self,
        plan: &LogicalPlan,
        u: &datafusion::logical_expr::Union,
    ) -> R<(LogicalPlan, Vec<Hidden>)> {
        let mut inputs = Vec::new();
        for input in &u.inputs {
            inputs.push(self.node(input)?);
        }
        if inputs.iter().all(|(_, h)| h.is_empty()) {
            let plan =
                df(plan.with_new_exprs(vec![], inputs.into_iter().map(|(p, _)| p).collect()))?;
            return Ok((plan, vec![]));
        }
        for (k, out) in u.schema.fields().iter().enumerate() {
            if u.inputs
                .iter()
                .any(|i| self.protected_names.contains(i.schema().field(k).name()))
            {
                self.protected_names.insert(out.name().clone());
            }
        }
        let slots: Vec<(usize, Hidden)> = inputs
            .iter()
            .enumerate()
            .flat_map(|(i, (_, h))| h.iter().map(move |h| (i, h.clone())))
            .collect();
        let names: Vec<Hidden> = slots.iter().map(|(_, h)| self.hidden(h.bitmap)).collect();
        let mut projected = Vec::new();
        for (i, (input, _)) in inputs.into_iter().enumerate() {
            let original = &u.inputs[i];
            let mut exprs: Vec<Expr> = original
                .schema()
                .iter()
                .zip(u.schema.iter())
                .map(|((q, f), (_, out))| {
                    Expr::Column(Column::new(q.cloned(), f.name())).alias(out.name())
                })
                .collect();
            for ((owner, h), name) in slots.iter().zip(&names) {
                let e = if *owner == i {
                    h.expr()
                } else {
                    cast(lit(ScalarValue::Null), h.data_type())
                };
                exprs.push(e.alias(&name.name));
            }
            projected.push(Arc::new(LogicalPlan::Projection(df(Projection::try_new(
                exprs,
                Arc::new(input),
            ))?)));
        }
        let union = df(datafusion::logical_expr::Union::try_new_with_loose_types(
            projected,
        ))?;
        let _: &DFSchema = &union.schema;
        Ok((LogicalPlan::Union(union), names))
    }
}

fn is_count(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => is_count(&a.expr),
        Expr::AggregateFunction(f) => f.func.name() == "count",
        _ => false,
    }
}

fn window_function(e: &Expr) -> Option<&WindowFunction> {
    match e {
        Expr::Alias(a) => window_function(&a.expr),
        Expr::WindowFunction(w) => Some(w),
        _ => None,
    }
}

/// The rows an aggregate takes its value from: those its FILTER keeps whose arguments are not
/// NULL (`None`: every row).
fn contribution(e: &Expr, schema: &DFSchema) -> Option<Expr> {
    match e {
        Expr::Alias(a) => contribution(&a.expr, schema),
        Expr::AggregateFunction(f) => condition(f.params.filter.as_deref(), &f.params.args, schema),
        _ => None,
    }
}

fn contribution_window(wf: &WindowFunction, schema: &DFSchema) -> Option<Expr> {
    condition(wf.params.filter.as_deref(), &wf.params.args, schema)
}

fn condition(filter: Option<&Expr>, args: &[Expr], schema: &DFSchema) -> Option<Expr> {
    let mut parts: Vec<Expr> = filter.cloned().into_iter().collect();
    for a in args {
        // COUNT(*) arrives as COUNT(1); literals and non-nullable columns are never NULL.
        let never_null = matches!(a, Expr::Literal(v, _) if !v.is_null())
            || matches!(a.nullable(schema), Ok(false));
        if !never_null {
            parts.push(a.clone().is_not_null());
        }
    }
    parts.into_iter().reduce(|a, b| a.and(b))
}
