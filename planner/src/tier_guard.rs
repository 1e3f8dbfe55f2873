//! Tier guard: a plan may read no table and no column above the principal's tier, through any
//! path — subqueries, CTEs, views, unions, joins, EXISTS — checked on the resolved plan before
//! anything executes. Tables above the tier are not even registered in the principal's session;
//! this rule is the second wall, and it also covers columns that demand a higher tier than their
//! table.

use crate::cohort::boundary::CohortBoundary;
use crate::error::{PlannerError, TierDenied};
use crate::tiers::TierMap;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::optimizer::AnalyzerRule;
use strata_engine::Tier;

/// Columns that identify a participant, at one point of a plan.
#[derive(Debug, Default)]
struct Identifiers(std::collections::HashSet<Column>);

impl Identifiers {
    /// A column reference written without its qualifier matches by name.
    fn contains(&self, c: &Column) -> bool {
        self.0.contains(c)
            || (c.relation.is_none() && self.0.iter().any(|k| k.name == c.name))
            || self
                .0
                .iter()
                .any(|k| k.relation.is_none() && k.name == c.name)
    }
}

#[derive(Debug)]
pub struct TierGuard {
    tiers: Arc<TierMap>,
    tier: Tier,
    /// Aggregates-only egress: no participant row may reach the output unaggregated.
    aggregates_only: bool,
}

impl TierGuard {
    pub fn new(tiers: Arc<TierMap>, tier: Tier) -> Self {
        TierGuard {
            tiers,
            tier,
            aggregates_only: false,
        }
    }

    pub fn aggregates_only(mut self, yes: bool) -> Self {
        self.aggregates_only = yes;
        self
    }

    /// Every table the plan reads (subqueries included), with its tier, sorted.
    pub fn tables_touched(&self, plan: &LogicalPlan) -> Vec<(String, Tier)> {
        let mut out = std::collections::BTreeMap::new();
        every_scan(plan, &mut |scan| {
            let name = scan.table_name.table().to_string();
            let tier = self.tiers.table_tier(&name).unwrap_or(Tier::Controlled);
            out.insert(name, tier);
            true
        });
        out.into_iter().collect()
    }

    /// For aggregates-only principals: refuses a plan whose output carries participant rows
    /// that no aggregate summarized (row-level results), and any use of the person key that
    /// singles participants out.
    fn check_egress(&self, plan: &LogicalPlan) -> Result<(), TierDenied> {
        if !self.aggregates_only {
            return Ok(());
        }
        if self.emits_participant_rows(plan) {
            return Err(TierDenied(
                "row-level results are not available to an aggregates-only principal \
                 (public tier or strata_egress=aggregates): summarize with COUNT, SUM, AVG … \
                 GROUP BY"
                    .into(),
            ));
        }
        self.check_person_key_use(plan)
    }

    /// The person key may join tables and be counted; it may not be grouped on, sliced with
    /// (`person_id = 42`, ranges, CASE), or aggregated into a value (MIN, MAX, …), and no
    /// LIMIT/OFFSET may cut participant rows before an aggregate.
    fn check_person_key_use(&self, plan: &LogicalPlan) -> Result<(), TierDenied> {
        let mut denied = None;
        let _ = plan.apply_with_subqueries(|node| {
            // A cohort's own plan ranks and counts each participant's events by design; what
            // callers compute over the cohort is checked like any table.
            if CohortBoundary::of(node).is_some() {
                return Ok(TreeNodeRecursion::Jump);
            }
            if let Err(e) = self.check_node_key_use(node) {
                denied = Some(e);
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        denied.map_or(Ok(()), Err)
    }

    fn check_node_key_use(&self, node: &LogicalPlan) -> Result<(), TierDenied> {
        let ids = self.input_identifiers(node);
        let deny = |what: &str| {
            Err(TierDenied(format!(
                "an aggregates-only principal may not {what} the person key"
            )))
        };
        match node {
            LogicalPlan::Aggregate(agg) => {
                // Grouping by the bare key makes per-participant groups: their rows may only
                // reach the result through an outer aggregate (`emits_participant_rows`).
                if agg
                    .group_expr
                    .iter()
                    .any(|e| self.uses_person_key(e, &ids) && !is_bare_column(e))
                {
                    return deny("group on");
                }
                for e in &agg.aggr_expr {
                    if let Some(f) = aggregate_function(e)
                        && (f.params.args.iter().any(|a| self.uses_person_key(a, &ids))
                            || f.params
                                .order_by
                                .iter()
                                .any(|o| self.uses_person_key(&o.expr, &ids)))
                        && !(f.func.name() == "count" && f.params.args.iter().all(is_bare_column))
                    {
                        return deny("aggregate a value of");
                    }
                }
                if self.limits_participants(&agg.input) {
                    return Err(TierDenied(
                        "an aggregates-only principal may not LIMIT or OFFSET participant rows \
                         before aggregating them"
                            .into(),
                    ));
                }
            }
            LogicalPlan::Filter(f) if self.slices(&f.predicate, &ids) => return deny("filter on"),
            LogicalPlan::Join(j) if j.filter.as_ref().is_some_and(|f| self.slices(f, &ids)) => {
                return deny("filter on");
            }
            LogicalPlan::Projection(p)
                if p.expr
                    .iter()
                    .any(|e| self.uses_person_key(e, &ids) && !is_bare_column(e)) =>
            {
                return deny("compute with");
            }
            LogicalPlan::Sort(s) if s.expr.iter().any(|e| self.uses_person_key(&e.expr, &ids)) => {
                return deny("sort on");
            }
            LogicalPlan::Window(w) => {
                for e in &w.window_expr {
                    let e = match e {
                        Expr::Alias(a) => a.expr.as_ref(),
                        e => e,
                    };
                    let Expr::WindowFunction(wf) = e else {
                        continue;
                    };
                    let p = &wf.params;
                    // Partitioned by the bare key: one participant's rows (allowed, as grouping).
                    if p.partition_by
                        .iter()
                        .any(|e| self.uses_person_key(e, &ids) && !is_bare_column(e))
                    {
                        return deny("partition on");
                    }
                    // Within one participant's rows, any order (a row id breaking ties) is theirs.
                    let per_participant = p
                        .partition_by
                        .iter()
                        .any(|e| is_bare_column(e) && self.uses_person_key(e, &ids));
                    if !per_participant
                        && p.order_by
                            .iter()
                            .any(|s| self.uses_person_key(&s.expr, &ids))
                    {
                        return deny("sort on");
                    }
                    if p.args.iter().any(|a| self.uses_person_key(a, &ids)) {
                        return deny("compute with");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A condition that uses the person key other than to equate two columns.
    fn slices(&self, predicate: &Expr, ids: &Identifiers) -> bool {
        // A NULL test (the outer-join anti-join idiom) singles no one out.
        let null_test =
            |c: &Expr| matches!(c, Expr::IsNull(e) | Expr::IsNotNull(e) if is_bare_column(e));
        split_conjunction(predicate)
            .into_iter()
            .any(|c| self.uses_person_key(c, ids) && !is_column_equality(c) && !null_test(c))
    }

    /// Whether `e` reads a column that identifies a participant (`ids`: those of the node's
    /// inputs, found by lineage, whatever they are called there).
    fn uses_person_key(&self, e: &Expr, ids: &Identifiers) -> bool {
        use crate::registered::udfs::{GENERALIZE, KEEP_ANSWER, SHIFT, SHIFT_TEXT, VISIBLE};
        let mut found = false;
        let _ = e.apply(|e| {
            // The registered views' own functions take the person key (the date offset, the
            // 89+ filter, generalization); callers cannot name them, so what they compute is
            // the view's, not a caller's use of the key.
            if let Expr::ScalarFunction(f) = e
                && ([SHIFT, SHIFT_TEXT, VISIBLE, KEEP_ANSWER].contains(&f.func.name())
                    || f.func.name().starts_with(GENERALIZE))
            {
                return Ok(TreeNodeRecursion::Jump);
            }
            if let Expr::Column(c) = e
                && ids.contains(c)
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    }

    /// Adds the columns of `schema` (output `i` for expression `i` over `input`) that pass an
    /// identifying column on, bare, renamed or cast.
    fn renamed(
        &self,
        exprs: &[Expr],
        input: &LogicalPlan,
        schema: &DFSchema,
        out: &mut Identifiers,
    ) {
        let inner = self.identifiers(input);
        for (i, e) in exprs.iter().enumerate() {
            if is_bare_column(e) && self.uses_person_key(e, &inner) {
                out.0.insert(qualified(schema, i));
            }
        }
    }

    /// Adds the columns of `schema` at the positions of `input`'s identifying columns.
    fn by_position(&self, input: &LogicalPlan, schema: &DFSchema, out: &mut Identifiers) {
        let inner = self.identifiers(input);
        let input_schema = input.schema();
        for i in 0..schema.fields().len().min(input_schema.fields().len()) {
            if inner.contains(&qualified(input_schema, i)) {
                out.0.insert(qualified(schema, i));
            }
        }
    }

    /// The identifying columns of `node`'s inputs.
    fn input_identifiers(&self, node: &LogicalPlan) -> Identifiers {
        let mut ids = Identifiers::default();
        for input in node.inputs() {
            ids.0.extend(self.identifiers(input).0);
        }
        ids
    }

    /// The output columns of `plan` that identify a participant: a participant table's
    /// identifying columns (`TierMap::identifies`), followed through renames, casts,
    /// subquery aliases, group keys, joins and unions — by lineage, not by name.
    fn identifiers(&self, plan: &LogicalPlan) -> Identifiers {
        let schema = plan.schema();
        let mut out = Identifiers::default();
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !matches!(
                    scan.table_name.schema(),
                    Some("information_schema" | "pg_catalog")
                ) {
                    let table = scan.table_name.table();
                    for (i, f) in schema.fields().iter().enumerate() {
                        if self.tiers.identifies(table, f.name()) {
                            out.0.insert(qualified(schema, i));
                        }
                    }
                }
            }
            LogicalPlan::Extension(_) if CohortBoundary::of(plan).is_some() => {
                for (i, f) in schema.fields().iter().enumerate() {
                    if f.name() == crate::cohort::boundary::PERSON {
                        out.0.insert(qualified(schema, i));
                    }
                }
            }
            LogicalPlan::Projection(p) => self.renamed(&p.expr, &p.input, schema, &mut out),
            LogicalPlan::Aggregate(agg) => {
                self.renamed(&agg.group_expr, &agg.input, schema, &mut out);
            }
            // The same columns under new names: by position.
            LogicalPlan::Union(u) => {
                for input in &u.inputs {
                    self.by_position(input, schema, &mut out);
                }
            }
            LogicalPlan::SubqueryAlias(a) => self.by_position(&a.input, schema, &mut out),
            _ => {
                // Nodes that pass their inputs' columns through as they are: filters, sorts,
                // limits, joins, windows, DISTINCT.
                for input in plan.inputs() {
                    for c in self.identifiers(input).0 {
                        if schema.has_column(&c) {
                            out.0.insert(c);
                        }
                    }
                }
            }
        }
        out
    }

    /// A Limit (or a Sort with a fetch) over participant rows below this point.
    fn limits_participants(&self, plan: &LogicalPlan) -> bool {
        let mut found = false;
        let _ = plan.apply(|node| {
            if CohortBoundary::of(node).is_some() {
                return Ok(TreeNodeRecursion::Jump);
            }
            let limited = match node {
                LogicalPlan::Limit(_) => true,
                LogicalPlan::Sort(s) => s.fetch.is_some(),
                _ => false,
            };
            if limited && self.emits_participant_rows(node) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    }

    fn emits_participant_rows(&self, plan: &LogicalPlan) -> bool {
        match plan {
            // Per-participant groups are participants' rows.
            LogicalPlan::Aggregate(agg) => {
                let ids = self.identifiers(&agg.input);
                agg.group_expr.iter().any(|e| self.uses_person_key(e, &ids))
                    && self.emits_participant_rows(&agg.input)
            }
            // A cohort's rows are participants, whatever its plan aggregates inside.
            LogicalPlan::Extension(_) if CohortBoundary::of(plan).is_some() => true,
            LogicalPlan::TableScan(scan) => {
                !matches!(
                    scan.table_name.schema(),
                    Some("information_schema" | "pg_catalog")
                ) && self.tiers.is_participant_table(scan.table_name.table())
            }
            _ => {
                // A subquery above every aggregate decides, row by row, what is emitted
                // (`concept_id IN (SELECT … WHERE person_id = 42)` lists a person's rows).
                let emits =
                    crate::subqueries::any_subquery(plan, |sub| self.emits_participant_rows(sub));
                emits || plan.inputs().iter().any(|i| self.emits_participant_rows(i))
            }
        }
    }

    /// A table or column that did not resolve, explained for this principal: a table above the
    /// tier becomes a refusal naming the tier needed; a table that does not exist at all gets
    /// the same refusal class for principals below the top tier, so refusals do not reveal
    /// which names exist beyond the published catalog; a column the registered views leave out
    /// is a refusal, not a typo. Other errors pass unchanged.
    pub fn explain(&self, error: PlannerError) -> PlannerError {
        match error {
            PlannerError::MissingColumn { column, message } => match self.hidden_column(&column) {
                Some((table, needed)) => PlannerError::NotPermitted(format!(
                    "column {table}.{column} requires the {needed} tier (yours: {})",
                    self.tier
                )),
                None => PlannerError::InvalidQuery(message),
            },
            PlannerError::MissingTable(name) => {
                let (message, denied) = match self.tiers.table_tier(&name) {
                    Some(needed) if needed > self.tier => {
                        (denied_table(&name, needed, self.tier).0, true)
                    }
                    None if self.tier < Tier::Controlled => (
                        format!("table '{name}' is not available at the {} tier", self.tier),
                        true,
                    ),
                    _ => (format!("table '{name}' not found"), false),
                };
                PlannerError::UnavailableTable {
                    table: name,
                    message,
                    denied,
                }
            }
            other => other,
        }
    }

    /// A column above the tier of a table the principal can read, by its bare name.
    fn hidden_column(&self, column: &str) -> Option<(String, Tier)> {
        let mut found: Vec<(String, Tier)> = self
            .tiers
            .tables
            .iter()
            .filter(|(_, t)| t.tier <= self.tier)
            .filter_map(|(name, t)| {
                let needed = *t.columns.get(column)?;
                (needed > self.tier).then(|| (name.clone(), needed))
            })
            .collect();
        found.sort();
        found.into_iter().next()
    }

    /// Walks every node, subqueries included, and refuses the first read above the tier.
    pub fn check(&self, plan: &LogicalPlan) -> Result<(), TierDenied> {
        self.check_tiers(plan)?;
        self.check_egress(plan)
    }

    fn check_tiers(&self, plan: &LogicalPlan) -> Result<(), TierDenied> {
        let mut denied = None;
        every_scan(plan, &mut |scan| match self.check_scan(scan) {
            Ok(()) => true,
            Err(e) => {
                denied = Some(e);
                false
            }
        });
        denied.map_or(Ok(()), Err)
    }

    fn check_scan(&self, scan: &TableScan) -> Result<(), TierDenied> {
        let table = scan.table_name.table();
        if matches!(
            scan.table_name.schema(),
            Some("information_schema" | "pg_catalog")
        ) {
            // Built from the principal's own session catalog, which holds only permitted tables.
            return Ok(());
        }
        let Some(tier) = self.tiers.table_tier(table) else {
            return Err(TierDenied(format!("table '{table}' is not available")));
        };
        if tier > self.tier {
            return Err(denied_table(table, tier, self.tier));
        }
        if crate::registered::is_registered_base(scan) {
            // The real table under a registered view: the view exposes only registered-tier
            // columns, shifted and generalized; the view's own columns were checked above it.
            return Ok(());
        }
        let schema = scan.source.schema();
        let projected: Vec<String> = match &scan.projection {
            Some(p) => p.iter().map(|i| schema.field(*i).name().clone()).collect(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let mut columns = projected;
        for filter in &scan.filters {
            columns.extend(filter_columns(filter));
        }
        for column in columns {
            let needed = self.tiers.column_tier(table, &column).unwrap_or(tier);
            if needed > self.tier {
                return Err(TierDenied(format!(
                    "column {table}.{column} requires the {needed} tier (yours: {})",
                    self.tier
                )));
            }
        }
        Ok(())
    }
}

/// Calls `f` on every table scan of `plan` — subqueries and the inputs cohort spools keep out
/// of the plan tree included — until it returns false.
fn every_scan(plan: &LogicalPlan, f: &mut dyn FnMut(&TableScan) -> bool) -> bool {
    let mut go_on = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            go_on = f(scan);
        } else if let Some(hidden) = crate::cohort::spool::Spool::hidden_input(node) {
            go_on = every_scan(hidden, f);
        }
        Ok(if go_on {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    go_on
}

pub fn denied_table(table: &str, needed: Tier, yours: Tier) -> TierDenied {
    TierDenied(format!(
        "table '{table}' requires the {needed} tier (yours: {yours})"
    ))
}

/// Column `i` of `schema`, with its qualifier.
fn qualified(schema: &DFSchema, i: usize) -> Column {
    let (q, f) = schema.qualified_field(i);
    Column::new(q.cloned(), f.name())
}

fn aggregate_function(e: &Expr) -> Option<&datafusion::logical_expr::expr::AggregateFunction> {
    match e {
        Expr::Alias(a) => aggregate_function(&a.expr),
        Expr::AggregateFunction(f) => Some(f),
        _ => None,
    }
}

fn is_bare_column(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => is_bare_column(&a.expr),
        Expr::Cast(c) => is_bare_column(&c.expr),
        Expr::Column(_) => true,
        _ => false,
    }
}

/// `a.person_id = b.person_id`, or the same against the outer query's column in a correlated
/// subquery: a join condition, not a slice.
fn is_column_equality(e: &Expr) -> bool {
    let side = |e: &Expr| is_bare_column(e) || matches!(e, Expr::OuterReferenceColumn(..));
    matches!(e, Expr::BinaryExpr(b) if b.op == datafusion::logical_expr::Operator::Eq
        && side(&b.left) && side(&b.right))
}

fn filter_columns(expr: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let _ = expr.apply(|e| {
        if let Expr::Column(c) = e {
            out.push(c.name.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

impl AnalyzerRule for TierGuard {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let _policy = tracing::info_span!("policy", rule = "tier_guard").entered();
        self.check(&plan)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "strata_tier_guard"
    }
}
