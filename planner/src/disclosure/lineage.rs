//! Participant lineage as a plan rewrite. Every relation of the optimized plan gets hidden
//! columns that say which participants its rows came from: the person key of a scan (Int64),
//! carried through projections, filters and sorts, concatenated by joins, and unioned into a
//! roaring bitmap (Binary) by every aggregate and window aggregate.
//!
//! Each statistical cell (an aggregate over more than one participant's rows, or a window
//! aggregate whose partition is not one participant) gets a hidden reason code right where it
//! is computed: its own participant count is 1..=T, or a few participants dominate its
//! magnitude. Every visible column knows the codes of the cells its value is computed from.
//! What happens to a cell with a code depends on the principal (DESIGN.md):
//! - row-level principals: nothing inside the query — HAVING, ORDER BY, LIMIT, joins, outer
//!   aggregates see true values — and the result's own cells are masked at the output;
//! - aggregates-only principals: the cell is replaced by its protected form where it is
//!   computed, so every later use sees only what could be released.
//!
//! Per-participant groups (grouped by, or a window partitioned by, the person key every row
//! comes from) are one participant's own rows: row-level data, exact for every principal.
//!
//! Plan shapes whose lineage is not computed exactly are refused, never run unprotected.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue};
use datafusion::functions_aggregate::bit_and_or_xor::bit_or_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, JoinType, LogicalPlan, Projection, TableScan, Window,
    WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, cast, lit, when,
};

use crate::cohort::boundary::{CohortBoundary, PERSON};

use super::branches::{self, is_magnitude};
use super::cells::{
    Level, Protection, SuppressionCounter, cell_check_udf, dominance_udaf, mask_udf, protect_udf,
    reason,
};
use crate::participants::{Output, participants_udaf, set_size_udf};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A person id (Int64).
    Person,
    /// A roaring bitmap of person ids (Binary).
    Bitmap,
    /// A statistical cell's reason code (UInt8, 0: releasable).
    Code,
    /// The participants a cell's value is computed from, when fewer than its row's (a FILTER,
    /// a nullable argument): a roaring bitmap (Binary), what the release step decides on.
    CellSet,
    /// Whether a row's value of a visible column (its `origin`) was given by one branch of a
    /// CASE, COALESCE … (Boolean): a sub-cell of any aggregate of that column, however far up.
    Branch,
}

/// A hidden column of the rewrite.
#[derive(Debug, Clone)]
struct Hidden {
    name: String,
    kind: Kind,
    /// For a person id: the visible column it equals on every row (the scan's person key, as
    /// named at this point of the plan), while that is known. For a branch: the visible column
    /// whose value it decides.
    origin: Option<Column>,
}

impl Hidden {
    fn expr(&self) -> Expr {
        Expr::Column(Column::new_unqualified(&self.name))
    }

    fn data_type(&self) -> DataType {
        match self.kind {
            Kind::Person => DataType::Int64,
            Kind::Bitmap | Kind::CellSet => DataType::Binary,
            Kind::Code => DataType::UInt8,
            Kind::Branch => DataType::Boolean,
        }
    }
}

/// Code columns an output inherits from the cells it is computed from: its position and, per
/// inherited code, the aggregate that combines it over the group with its new column.
type Inherited = (usize, Vec<(Expr, Hidden)>);

/// A relation of the rewritten plan.
struct Rel {
    plan: LogicalPlan,
    /// Lineage and code columns, after the visible ones.
    hidden: Vec<Hidden>,
    /// For each visible column (by position in the original node's schema), the code columns
    /// of the statistical cells its value is computed from.
    cells: Vec<Vec<String>>,
    /// For each visible column, the `CellSet` columns of the participants its value is computed
    /// from (at most one holds a value per row: UNION inputs have slots); empty: the row's
    /// lineage.
    sets: Vec<Vec<String>>,
    /// Its rows are participants' rows (of a table, or per-participant groups), not
    /// statistics.
    rows: bool,
}

impl Rel {
    fn plain(plan: LogicalPlan) -> Self {
        let n = plan.schema().fields().len();
        Rel {
            plan,
            hidden: vec![],
            cells: vec![vec![]; n],
            sets: vec![vec![]; n],
            rows: false,
        }
    }

    fn lineage(&self) -> Vec<Hidden> {
        lineage_of(&self.hidden)
    }

    fn has_lineage(&self) -> bool {
        self.hidden.iter().any(|h| is_lineage(h.kind))
    }
}

/// A column name of the plan (subqueries included) in disclosure control's own namespace: a
/// caller's `AS __strata_cell_set_0` would be read as a participant set by the release.
fn reserved_name(plan: &LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if CohortBoundary::of(node).is_some() {
            return Ok(TreeNodeRecursion::Jump);
        }
        if let Some(f) = node
            .schema()
            .fields()
            .iter()
            .find(|f| f.name().starts_with("__strata"))
        {
            found = Some(f.name().clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Hidden columns naming a row's participants (not codes, not cells' own sets).
fn is_lineage(kind: Kind) -> bool {
    matches!(kind, Kind::Person | Kind::Bitmap)
}

fn lineage_of(hidden: &[Hidden]) -> Vec<Hidden> {
    hidden
        .iter()
        .filter(|h| is_lineage(h.kind))
        .cloned()
        .collect()
}

/// The column a join key reads, bare or cast to an integer type (as type coercion writes it).
/// Other casts can equate different ids (`CAST(person_id AS REAL)` above 2^24).
fn key_column(e: &Expr) -> Option<Column> {
    match e {
        Expr::Cast(c) if c.field.data_type().is_integer() => match c.expr.as_ref() {
            Expr::Column(c) => Some(c.clone()),
            _ => None,
        },
        Expr::Column(c) => Some(c.clone()),
        _ => None,
    }
}

fn columns_of(schema: &DFSchema) -> Vec<Expr> {
    schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect()
}

fn union_into(out: &mut Vec<String>, codes: &[String]) {
    for c in codes {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
}

pub struct Rewriter<'a> {
    /// Person key column of each participant table.
    person_keys: &'a HashMap<String, String>,
    protection: Protection,
    counter: Arc<SuppressionCounter>,
    next: usize,
    /// Statistical cells the rewrite found (aggregate and window outputs).
    pub protected_cells: usize,
    /// Output columns that hold statistical cells; the result then ends with hidden
    /// `__strata_cell_set_<j>` columns (the participants of each row's cells) for the release
    /// step.
    pub output_cells: Vec<usize>,
    /// For each of `output_cells`, the `j` of its participant-set column.
    pub cell_sets: Vec<usize>,
}

/// The hidden last columns of a protected result (`__strata_cell_set_<j>`): the participants
/// each row's cells are computed from.
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
            output_cells: Vec::new(),
            cell_sets: Vec::new(),
        }
    }

    fn hidden(&mut self, kind: Kind) -> Hidden {
        self.next += 1;
        let prefix = match kind {
            Kind::Code => "__strata_code",
            Kind::CellSet => "__strata_set",
            Kind::Branch => "__strata_branch",
            _ => "__strata_lineage",
        };
        Hidden {
            name: format!("{prefix}_{}", self.next),
            kind,
            origin: None,
        }
    }

    fn aggregates_only(&self) -> bool {
        self.protection.level == Level::AggregatesOnly
    }

    /// The protected plan: same output schema as `plan` (plus, when it holds statistical
    /// cells, the hidden participant-set column last).
    pub fn rewrite(&mut self, plan: &LogicalPlan) -> R<LogicalPlan> {
        if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            // Not executed for its rows; EXPLAIN ANALYZE is refused by the statement policy.
            return Ok(plan.clone());
        }
        if !self.aggregates_participants(plan) {
            // Row-level results and vocabulary aggregates: no cell to protect.
            return Ok(plan.clone());
        }
        if let Some(name) = reserved_name(plan) {
            return refuse(format!(
                "the name {name} is reserved for disclosure control's own columns"
            ));
        }
        let rel = self.node(plan)?;
        if self.aggregates_only() && rel.rows {
            // The tier guard refuses row-level results by their shape; this is the same rule
            // by lineage (per-participant groups are exact, so they must not reach the result).
            return refuse(
                "row-level results are not available to an aggregates-only principal: \
                 summarize the per-participant rows with an outer aggregate",
            );
        }
        if !rel.has_lineage() && self.protected_cells == 0 {
            return Ok(plan.clone());
        }
        // Back to the original columns, each result cell masked by its codes, plus each row's
        // participants if it holds statistical cells.
        let mask = mask_udf(self.counter.clone());
        let mut exprs = Vec::new();
        self.output_cells.clear();
        for (i, (q, f)) in plan.schema().iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if rel.cells[i].is_empty() {
                exprs.push(column);
                continue;
            }
            self.output_cells.push(i);
            let mut args = vec![column];
            args.extend(rel.cells[i].iter().map(|c| col(c)));
            exprs.push(mask.call(args).alias_qualified(q.cloned(), f.name()));
        }
        // One participant-set column per distinct set the result's cells are computed from:
        // the row's lineage, or a cell's own (a FILTER, a nullable argument).
        let lineage = rel.lineage();
        let mut distinct: Vec<&Vec<String>> = Vec::new();
        self.cell_sets.clear();
        for &i in &self.output_cells {
            let j = distinct
                .iter()
                .position(|d| **d == rel.sets[i])
                .unwrap_or_else(|| {
                    distinct.push(&rel.sets[i]);
                    distinct.len() - 1
                });
            self.cell_sets.push(j);
        }
        if !self.output_cells.is_empty() && !lineage.is_empty() {
            for (j, set) in distinct.iter().enumerate() {
                let args = if set.is_empty() {
                    lineage.iter().map(Hidden::expr).collect()
                } else {
                    set.iter().map(|c| col(c)).collect()
                };
                exprs.push(
                    crate::participants::cell_set_udf()
                        .call(args)
                        .alias(format!("{CELL_SET_COLUMN}_{j}")),
                );
            }
        } else {
            self.output_cells.clear();
            self.cell_sets.clear();
        }
        df(Projection::try_new(exprs, Arc::new(rel.plan)).map(LogicalPlan::Projection))
    }

    fn node(&mut self, plan: &LogicalPlan) -> R<Rel> {
        if let Some(joined) = self.lift_scalar_subqueries(plan)? {
            return self.node(&joined);
        }
        self.no_participant_subqueries(plan)?;
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(p) => self.projection(p),
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Repartition(_) => {
                let input = self.node(plan.inputs()[0])?;
                let rewritten = df(plan.with_new_exprs(plan.expressions(), vec![input.plan]))?;
                Ok(Rel {
                    plan: rewritten,
                    ..input
                })
            }
            LogicalPlan::SubqueryAlias(a) => {
                let mut input = self.node(&a.input)?;
                input.plan = df(plan.with_new_exprs(plan.expressions(), vec![input.plan]))?;
                for h in &mut input.hidden {
                    h.origin = h
                        .origin
                        .take()
                        .map(|o| Column::new(Some(a.alias.clone()), o.name));
                }
                Ok(input)
            }
            LogicalPlan::Join(join) => self.join(plan, join),
            LogicalPlan::Aggregate(agg) => self.aggregate(agg),
            LogicalPlan::Window(w) => self.window(w),
            LogicalPlan::Union(u) => self.union(plan, u),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok(Rel::plain(plan.clone())),
            LogicalPlan::Extension(_) if CohortBoundary::of(plan).is_some() => self.cohort(plan),
            other => {
                if self.reads_participants(other) {
                    refuse(format!(
                        "{} over participant data cannot be protected",
                        other.display()
                    ))
                } else {
                    Ok(Rel::plain(other.clone()))
                }
            }
        }
    }

    /// The participant-set columns a value computed by `e` takes: those of the cells it reads,
    /// when they all have the same ones; else (no cell, or cells of different sets) the row's
    /// lineage (empty).
    fn sets_of(
        e: &Expr,
        schema: &DFSchema,
        cells: &[Vec<String>],
        sets: &[Vec<String>],
    ) -> Vec<String> {
        let mut out: Option<&Vec<String>> = None;
        for c in e.column_refs() {
            let Some(i) = schema.maybe_index_of_column(c) else {
                continue;
            };
            if cells[i].is_empty() {
                continue;
            }
            match out {
                None => out = Some(&sets[i]),
                Some(o) if *o == sets[i] => {}
                Some(_) => return vec![],
            }
        }
        out.cloned().unwrap_or_default()
    }

    /// The code columns of the cells `e` is computed from (columns of `schema`, the input).
    fn codes_of(e: &Expr, schema: &DFSchema, cells: &[Vec<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for c in e.column_refs() {
            if let Some(i) = schema.maybe_index_of_column(c) {
                union_into(&mut out, &cells[i]);
            }
        }
        out
    }

    /// A projection or filter with uncorrelated scalar subqueries over participant data
    /// (`SELECT (SELECT COUNT(*) FROM person) AS n, …`), written as cross joins with those
    /// one-row aggregates, so that their values carry their cells' lineage and codes like any
    /// joined column. `None`: nothing to lift.
    fn lift_scalar_subqueries(&mut self, plan: &LogicalPlan) -> R<Option<LogicalPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        let (exprs, input) = match plan {
            LogicalPlan::Projection(p) => (p.expr.clone(), p.input.clone()),
            LogicalPlan::Filter(f) => (vec![f.predicate.clone()], f.input.clone()),
            _ => return Ok(None),
        };
        let mut lifted: Vec<(String, LogicalPlan)> = Vec::new();
        let mut rewritten = Vec::with_capacity(exprs.len());
        for e in exprs {
            let t = df(e.transform_up(|e| match e {
                Expr::ScalarSubquery(s)
                    if s.outer_ref_columns.is_empty()
                        && one_row(&s.subquery)
                        && self.reads_participants(&s.subquery) =>
                {
                    self.next += 1;
                    let alias = format!("__strata_subquery_{}", self.next);
                    let field = s.subquery.schema().qualified_field(0).1.name().clone();
                    lifted.push((alias.clone(), s.subquery.as_ref().clone()));
                    Ok(Transformed::yes(Expr::Column(Column::new(
                        Some(alias.as_str()),
                        field,
                    ))))
                }
                e => Ok(Transformed::no(e)),
            }))?;
            rewritten.push(t.data);
        }
        if lifted.is_empty() {
            return Ok(None);
        }
        let mut joined = datafusion::logical_expr::LogicalPlanBuilder::from(input.as_ref().clone());
        for (alias, sub) in lifted {
            let aliased = df(datafusion::logical_expr::LogicalPlanBuilder::from(sub)
                .alias(alias.as_str())
                .and_then(|b| b.build()))?;
            joined = df(joined.cross_join(aliased))?;
        }
        let joined = df(joined.build())?;
        let original = columns_of(plan.schema());
        Ok(Some(match plan {
            LogicalPlan::Projection(p) => {
                let exprs = rewritten
                    .into_iter()
                    .zip(p.schema.iter())
                    .map(|(e, (q, f))| e.alias_qualified(q.cloned(), f.name()))
                    .collect();
                LogicalPlan::Projection(df(Projection::try_new(exprs, Arc::new(joined)))?)
            }
            _ => {
                let predicate = rewritten.into_iter().next().expect("one predicate");
                let filter = df(datafusion::logical_expr::Filter::try_new(
                    predicate,
                    Arc::new(joined),
                ))?;
                LogicalPlan::Projection(df(Projection::try_new(
                    original,
                    Arc::new(LogicalPlan::Filter(filter)),
                ))?)
            }
        }))
    }

    fn projection(&mut self, p: &Projection) -> R<Rel> {
        let input = self.node(&p.input)?;
        let schema = p.input.schema();
        let cells = p
            .expr
            .iter()
            .map(|e| Self::codes_of(e, schema, &input.cells))
            .collect();
        let sets = p
            .expr
            .iter()
            .map(|e| Self::sets_of(e, schema, &input.cells, &input.sets))
            .collect();
        let mut exprs = p.expr.clone();
        exprs.extend(input.hidden.iter().map(Hidden::expr));
        let output = |k: usize| {
            let (q, f) = p.schema.qualified_field(k);
            Column::new(q.cloned(), f.name())
        };
        let mut hidden: Vec<Hidden> = Vec::with_capacity(input.hidden.len());
        let mut branches_of = Vec::new();
        for mut h in input.hidden {
            if h.kind == Kind::Branch {
                // A branch goes with every output computed from its column.
                let readers: Vec<usize> = h.origin.as_ref().map_or_else(Vec::new, |o| {
                    (0..p.expr.len())
                        .filter(|&k| p.expr[k].column_refs().contains(o))
                        .collect()
                });
                for &k in readers.iter().skip(1) {
                    let mut copy = self.hidden(Kind::Branch);
                    copy.origin = Some(output(k));
                    branches_of.push(h.expr().alias(&copy.name));
                    hidden.push(copy);
                }
                h.origin = readers.first().map(|&k| output(k));
                hidden.push(h);
                continue;
            }
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
            hidden.push(h);
        }
        if input.rows || hidden.iter().any(|h| is_lineage(h.kind)) {
            // Values this projection computes by branches over participant data.
            for (k, e) in p.expr.iter().enumerate() {
                let conditions = branches::conditions(e, schema);
                if conditions.len() > MAX_SUB_CELLS {
                    return refuse(format!(
                        "a value that depends on more than {MAX_SUB_CELLS} conditions cannot \
                         be protected"
                    ));
                }
                for condition in conditions {
                    let mut b = self.hidden(Kind::Branch);
                    b.origin = Some(output(k));
                    branches_of.push(condition.alias(&b.name));
                    hidden.push(b);
                }
            }
        }
        exprs.extend(branches_of);
        let plan = df(Projection::try_new(exprs, Arc::new(input.plan)))?;
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden,
            cells,
            sets,
            rows: input.rows,
        })
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
        let bad = crate::subqueries::any_subquery(plan, |sub| self.reads_participants(sub));
        if bad {
            return refuse(
                "this subquery over participant data cannot be protected; write it as a join",
            );
        }
        Ok(())
    }

    fn scan(&mut self, scan: &TableScan) -> R<Rel> {
        let plan = LogicalPlan::TableScan(scan.clone());
        let Some(key) = self.person_keys.get(scan.table_name.table()) else {
            return Ok(Rel::plain(plan));
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
        let mut hidden = self.hidden(Kind::Person);
        hidden.origin = scan
            .projection
            .as_ref()
            .is_none_or(|p| p.contains(&key_index))
            .then(|| Column::new(Some(scan.table_name.clone()), key));
        let mut exprs = columns_of(&scan.projected_schema);
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
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden: vec![hidden],
            cells: vec![vec![]; scan.projected_schema.fields().len()],
            sets: vec![vec![]; scan.projected_schema.fields().len()],
            rows: true,
        })
    }

    /// A cohort is read like a participant table keyed by `person_id`: each of its rows is
    /// derived from that participant's own records (see `cohort::boundary`).
    fn cohort(&mut self, plan: &LogicalPlan) -> R<Rel> {
        let schema = plan.schema();
        let Some((qualifier, _)) = schema.iter().find(|(_, f)| f.name() == PERSON) else {
            return refuse("a cohort without person_id cannot be protected");
        };
        let key = Column::new(qualifier.cloned(), PERSON);
        let mut hidden = self.hidden(Kind::Person);
        hidden.origin = Some(key.clone());
        let mut exprs = columns_of(schema);
        exprs.push(cast(Expr::Column(key), DataType::Int64).alias(&hidden.name));
        let plan = df(Projection::try_new(exprs, Arc::new(plan.clone())))?;
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden: vec![hidden],
            cells: vec![vec![]; schema.fields().len()],
            sets: vec![vec![]; schema.fields().len()],
            rows: true,
        })
    }

    fn join(&mut self, plan: &LogicalPlan, join: &datafusion::logical_expr::Join) -> R<Rel> {
        let left = self.node(&join.left)?;
        let right = self.node(&join.right)?;
        let rows = left.rows || right.rows;
        let rebuild = |l: &LogicalPlan, r: &LogicalPlan| {
            df(plan.with_new_exprs(plan.expressions(), vec![l.clone(), r.clone()]))
        };
        // Semi, anti and mark joins output one side's rows (and the mark column).
        let keep = |side: Rel, joined: LogicalPlan| {
            let (mut cells, mut sets) = (side.cells, side.sets);
            if matches!(join.join_type, JoinType::LeftMark | JoinType::RightMark) {
                cells.push(vec![]);
                sets.push(vec![]);
            }
            Rel {
                plan: joined,
                hidden: side.hidden,
                cells,
                sets,
                rows: side.rows,
            }
        };
        let (hl, hr) = (left.has_lineage(), right.has_lineage());
        match join.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => Ok(Rel {
                plan: rebuild(&left.plan, &right.plan)?,
                hidden: Self::joined_lineage(join, left.hidden, right.hidden),
                cells: [left.cells, right.cells].concat(),
                sets: [left.sets, right.sets].concat(),
                rows,
            }),
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark if !hr => {
                let joined = rebuild(&left.plan, &right.plan)?;
                Ok(keep(left, joined))
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark if !hl => {
                let joined = rebuild(&left.plan, &right.plan)?;
                Ok(keep(right, joined))
            }
            // Correlated on the person key (`EXISTS (… WHERE c.person_id = p.person_id …)`): the
            // right rows that can match, or whose absence decides, are the left row's own
            // participant's, so the left lineage is the whole lineage.
            JoinType::LeftSemi | JoinType::LeftAnti
                if hl && Self::correlated_on_person(join, &left, &right, true) =>
            {
                let joined = rebuild(&left.plan, &right.plan)?;
                Ok(keep(left, joined))
            }
            JoinType::RightSemi | JoinType::RightAnti
                if hr && Self::correlated_on_person(join, &right, &left, false) =>
            {
                let joined = rebuild(&left.plan, &right.plan)?;
                Ok(keep(right, joined))
            }
            JoinType::RightAnti => {
                let anti = rebuild(&left.plan, &right.plan)?;
                let everyone = left.lineage();
                self.with_all_participants_of(anti, right, left.plan, &everyone)
            }
            JoinType::LeftSemi if join.filter.is_none() => self.semi_join(join, left, right),
            // The absence of a match is decided by every row of the right side: all its
            // participants join each surviving left row's lineage.
            JoinType::LeftAnti => {
                let anti = rebuild(&left.plan, &right.plan)?;
                let everyone = right.lineage();
                self.with_all_participants_of(anti, left, right.plan, &everyone)
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

    /// `plan` (the kept side's rows, described by `kept`) with one more lineage column: the
    /// participants of all of `side` (one bitmap, dictionary-encoded so that its rows share it
    /// rather than copy it).
    fn with_all_participants_of(
        &mut self,
        plan: LogicalPlan,
        kept: Rel,
        side: LogicalPlan,
        side_lineage: &[Hidden],
    ) -> R<Rel> {
        let all = self.hidden(Kind::Bitmap);
        let everyone = df(Aggregate::try_new(
            Arc::new(side),
            vec![],
            vec![
                self.participants(side_lineage, None, Output::Bitmap)
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
        let mut hidden = kept.hidden;
        hidden.push(all);
        Ok(Rel {
            plan: joined,
            hidden,
            cells: kept.cells,
            sets: kept.sets,
            rows: kept.rows,
        })
    }

    /// The hidden columns of an inner or outer join's rows. A join equating two person keys
    /// matches a row only with the same participant's rows, and an unmatched row has the other
    /// side's id NULL: the padded side's person id adds no one, so it is dropped (each set the
    /// rows feed then costs one insert per row, not two, and `COUNT(DISTINCT person_id)` is read
    /// off the set). A full join pads both sides: both are kept.
    fn joined_lineage(
        join: &datafusion::logical_expr::Join,
        left: Vec<Hidden>,
        right: Vec<Hidden>,
    ) -> Vec<Hidden> {
        let equated = |kept: &[Hidden], other: Vec<Hidden>, kept_left: bool| -> Vec<Hidden> {
            other
                .into_iter()
                .filter(|h| !Self::same_person(join, kept, h, kept_left))
                .collect()
        };
        match join.join_type {
            JoinType::Inner | JoinType::Left => {
                let right = equated(&left, right, true);
                [left, right].concat()
            }
            JoinType::Right => {
                let left = equated(&right, left, false);
                [left, right].concat()
            }
            _ => [left, right].concat(),
        }
    }

    /// Whether `other` (a person id of one side) is equated by the join with a person id of
    /// `kept`, through their integer key columns: equal integers are the same id once cast to
    /// Int64 (a text or decimal key compared after coercion might not be).
    fn same_person(
        join: &datafusion::logical_expr::Join,
        kept: &[Hidden],
        other: &Hidden,
        kept_left: bool,
    ) -> bool {
        let Some(other_key) = other.origin.as_ref().filter(|_| other.kind == Kind::Person) else {
            return false;
        };
        // The inputs' schemas: a semi join's output has one side's columns only.
        let integer = |c: &Column| {
            [join.left.schema(), join.right.schema()].iter().any(|s| {
                s.qualified_field_from_column(c)
                    .is_ok_and(|(_, f)| f.data_type().is_integer())
            })
        };
        let kept_keys: Vec<&Column> = kept
            .iter()
            .filter(|h| h.kind == Kind::Person)
            .filter_map(|h| h.origin.as_ref())
            .collect();
        join.on.iter().any(|(l, r)| {
            let (k, o) = if kept_left { (l, r) } else { (r, l) };
            matches!((key_column(k), key_column(o)), (Some(k), Some(o))
                if kept_keys.contains(&&k) && o == *other_key && integer(&k) && integer(&o))
        })
    }

    /// Whether a semi or anti join matches each row of `kept` only with rows of `other` that
    /// are the same participant's: `other` has one person lineage, and the join equates it
    /// with a person lineage of `kept` — by lineage (the columns each person id was read
    /// from), not by column names.
    fn correlated_on_person(
        join: &datafusion::logical_expr::Join,
        kept: &Rel,
        other: &Rel,
        kept_left: bool,
    ) -> bool {
        let other_lineage = other.lineage();
        let [only] = other_lineage.as_slice() else {
            return false;
        };
        Self::same_person(join, &kept.hidden, only, kept_left)
    }

    /// `L SEMI JOIN R ON l = r` → `L JOIN (SELECT r, participants(R) FROM R GROUP BY r) ON l = r`:
    /// the same rows (R's side is unique per key), now carrying the participants of the right
    /// rows each left row matched.
    fn semi_join(
        &mut self,
        join: &datafusion::logical_expr::Join,
        left: Rel,
        right: Rel,
    ) -> R<Rel> {
        let keys: Vec<(String, Expr)> = join
            .on
            .iter()
            .enumerate()
            .map(|(i, (_, r))| (format!("__strata_key_{}_{i}", self.next + 1), r.clone()))
            .collect();
        let bitmap = self.hidden(Kind::Bitmap);
        let group: Vec<Expr> = keys.iter().map(|(n, e)| e.clone().alias(n)).collect();
        let agg = df(Aggregate::try_new(
            Arc::new(right.plan),
            group,
            vec![
                self.participants(&lineage_of(&right.hidden), None, Output::Bitmap)
                    .alias(&bitmap.name),
            ],
        ))?;
        let on: Vec<(Expr, Expr)> = join
            .on
            .iter()
            .zip(&keys)
            .map(|((l, _), (n, _))| (l.clone(), Expr::Column(Column::new_unqualified(n))))
            .collect();
        let left_schema = left.plan.schema().clone();
        let inner = df(
            datafusion::logical_expr::LogicalPlanBuilder::from(left.plan)
                .join_with_expr_keys(
                    LogicalPlan::Aggregate(agg),
                    JoinType::Inner,
                    (
                        on.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
                        on.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
                    ),
                    None,
                )
                .and_then(|b| b.build()),
        )?;
        let mut exprs = columns_of(&left_schema);
        exprs.push(bitmap.expr());
        let plan = df(Projection::try_new(exprs, Arc::new(inner)))?;
        let mut hidden = left.hidden;
        hidden.push(bitmap);
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden,
            cells: left.cells,
            sets: left.sets,
            rows: left.rows,
        })
    }

    /// `strata_participants(lineage…) [FILTER (WHERE …)]`.
    fn participants(&self, lineage: &[Hidden], filter: Option<Expr>, output: Output) -> Expr {
        Expr::AggregateFunction(AggregateFunction::new_udf(
            participants_udaf(output),
            lineage.iter().map(Hidden::expr).collect(),
            false,
            filter.map(Box::new),
            vec![],
            None,
        ))
    }

    /// `bit_or(code)`: the codes of a group's (or frame's) rows, combined.
    fn any_code(code: &str) -> Expr {
        Expr::AggregateFunction(AggregateFunction::new_udf(
            bit_or_udaf(),
            vec![col(code)],
            false,
            None,
            vec![],
            None,
        ))
    }

    /// New code columns, aggregated over each group, for the outputs of an aggregate computed
    /// from cells (group keys and per-participant values, which are not statistics of their
    /// own): `(output position, aggregate expression, its code column)`.
    fn inherited_codes(
        &mut self,
        agg: &Aggregate,
        outputs: impl Iterator<Item = (usize, Expr)>,
        input_cells: &[Vec<String>],
    ) -> Vec<Inherited> {
        let mut out = Vec::new();
        if self.aggregates_only() {
            // Every value inside is already protected: nothing to inherit.
            return out;
        }
        for (position, e) in outputs {
            let codes = Self::codes_of(&e, agg.input.schema(), input_cells);
            if codes.is_empty() {
                continue;
            }
            let columns = codes
                .iter()
                .map(|c| (Self::any_code(c), self.hidden(Kind::Code)))
                .collect();
            out.push((position, columns));
        }
        out
    }

    /// What an aggregates-only principal's statistical cells may be: aggregates of columns and
    /// arithmetic over them. A FILTER, a condition (CASE, COALESCE, NULLIF, a comparison turned
    /// into a number) or a step function (SIGN, FLOOR, integer division …) inside the aggregate
    /// makes its value count or pick rows the release never sees as the cell's participants —
    /// the cross-query ledger would remember the group, not those rows; a collection aggregate
    /// puts every member's value into one cell.
    fn aggregates_only_cells<'e>(
        cells: impl Iterator<Item = (&'e str, bool, &'e [Expr])>,
        input: &LogicalPlan,
    ) -> R<()> {
        for (name, filtered, args) in cells {
            if collects_values(name) {
                return refuse(format!(
                    "{name} over participant data is not available to an aggregates-only \
                     principal: it puts every member's value into one cell"
                ));
            }
            if !AGGREGATES_ONLY_FUNCTIONS.contains(&name) {
                return refuse(format!(
                    "{name} over participant data is not available to an aggregates-only \
                     principal (allowed: {})",
                    AGGREGATES_ONLY_FUNCTIONS.join(", ")
                ));
            }
            // Each argument as defined where its columns come from, through the projections
            // and subqueries below (a CASE in a subquery is still inside the aggregate).
            let magnitude = is_magnitude(name);
            let plain = args.iter().all(|a| {
                branches::unfold(a, input).is_some_and(|a| branches::plain(&a, magnitude))
            });
            if filtered || !plain {
                return refuse(format!(
                    "an aggregates-only principal may aggregate columns (each once, scaled by a \
                     constant; SUM and AVG not of ids or concept ids), not a condition or \
                     function inside {name} (FILTER, CASE, COALESCE, a comparison, SIGN, a \
                     constant added …): choose the rows with WHERE and the groups with GROUP BY"
                ));
            }
        }
        Ok(())
    }

    fn aggregate(&mut self, agg: &Aggregate) -> R<Rel> {
        if let Some((inner, fused)) = distinct_count_parts(agg) {
            self.no_participant_subqueries(&agg.input)?;
            let input = self.node(&inner.input)?;
            let lineage = input.lineage();
            if fused
                .aggr_expr
                .iter()
                .all(|e| counts_participants(e, &lineage, inner.input.schema()))
            {
                return self.aggregate_over(&fused, input);
            }
            let inner = self.aggregate_over(inner, input)?;
            return self.aggregate_over(agg, inner);
        }
        let input = self.node(&agg.input)?;
        self.aggregate_over(agg, input)
    }

    /// The aggregate `agg`, rebuilt over its rewritten input.
    fn aggregate_over(&mut self, agg: &Aggregate, input: Rel) -> R<Rel> {
        if !input.has_lineage() {
            let plan = df(Aggregate::try_new(
                Arc::new(input.plan),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
            ))?;
            return Ok(Rel::plain(LogicalPlan::Aggregate(plan)));
        }
        let lineage = input.lineage();
        if !agg.aggr_expr.is_empty()
            && agg
                .aggr_expr
                .iter()
                .all(|e| aggregate_of(e).is_some_and(|f| crate::participants::is_internal(&f.func)))
        {
            return self.internal_aggregate(agg, input.plan, lineage);
        }
        let grouping_sets = matches!(agg.group_expr.first(), Some(Expr::GroupingSet(_)));
        let n_group = agg.schema.fields().len() - agg.aggr_expr.len();
        if grouping_sets
            && agg
                .group_expr
                .iter()
                .any(|e| !Self::codes_of(e, agg.input.schema(), &input.cells).is_empty())
        {
            return refuse("grouping sets over statistical values cannot be protected");
        }
        if let Some(person) = self.person_group(agg, &lineage) {
            return self.per_person_aggregate(agg, input, person);
        }
        if self.aggregates_only() {
            Self::aggregates_only_cells(
                agg.aggr_expr.iter().filter_map(aggregate_of).map(|f| {
                    // An aggregate's own ORDER BY picks a row like a condition does.
                    (
                        f.func.name(),
                        f.params.filter.is_some() || !f.params.order_by.is_empty(),
                        f.params.args.as_slice(),
                    )
                }),
                &agg.input,
            )?;
        }
        // Group keys computed from cells keep those cells' codes.
        let key_codes = if grouping_sets {
            vec![]
        } else {
            self.inherited_codes(
                agg,
                agg.group_expr.iter().cloned().enumerate(),
                &input.cells,
            )
        };
        // One participant set per distinct contribution condition: an aggregate ignores rows
        // its FILTER rejects and rows whose arguments are NULL, so those rows did not
        // contribute to its value.
        let mut conditions: Vec<Option<Expr>> = Vec::new();
        let mut condition_of = Vec::with_capacity(agg.aggr_expr.len());
        let input_schema = agg.input.schema().clone();
        for e in &agg.aggr_expr {
            let c = contribution(e, &input_schema, &lineage);
            let i = conditions.iter().position(|x| *x == c).unwrap_or_else(|| {
                conditions.push(c.clone());
                conditions.len() - 1
            });
            condition_of.push(i);
        }
        // COUNT(DISTINCT person) is the size of the set its cell is released on: read off that
        // set instead of a second distinct aggregation of the same ids.
        let from_set: Vec<bool> = agg
            .aggr_expr
            .iter()
            .map(|e| counts_participants(e, &lineage, agg.input.schema()))
            .collect();
        // The group's participants (all rows), carried up as the aggregate's lineage.
        let group_set = self.hidden(Kind::Bitmap);
        let mut aggr: Vec<Expr> = agg
            .aggr_expr
            .iter()
            .zip(&from_set)
            .filter(|(_, from_set)| !**from_set)
            .map(|(e, _)| e.clone())
            .collect();
        aggr.push(
            self.participants(&lineage, None, Output::Bitmap)
                .alias(&group_set.name),
        );
        let mut sets = Vec::with_capacity(conditions.len());
        for c in &conditions {
            match c {
                None => sets.push(group_set.clone()),
                Some(c) => {
                    let h = self.hidden(Kind::CellSet);
                    aggr.push(
                        self.participants(&lineage, Some(c.clone()), Output::Bitmap)
                            .alias(&h.name),
                    );
                    sets.push(h);
                }
            }
        }
        // Sub-cells: the rows each value-dependent part of a value comes from.
        let mut seen: Vec<(Expr, Hidden)> = Vec::new();
        let mut subs_of: Vec<Vec<Hidden>> = Vec::with_capacity(agg.aggr_expr.len());
        for (k, e) in agg.aggr_expr.iter().enumerate() {
            let mut mine = Vec::new();
            let Some(f) = aggregate_of(e) else {
                subs_of.push(mine);
                continue;
            };
            let base = conditions[condition_of[k]].as_ref();
            let order_by: Vec<Expr> = f.params.order_by.iter().map(|s| s.expr.clone()).collect();
            let args = (
                f.func.name(),
                f.params.distinct,
                f.params.args.as_slice(),
                order_by.as_slice(),
            );
            for c in sub_cell_conditions(args, &input_schema, base, &input.hidden)? {
                let h = match seen.iter().find(|(x, _)| *x == c) {
                    Some((_, h)) => h.clone(),
                    None => {
                        let h = self.hidden(Kind::Bitmap);
                        aggr.push(
                            self.participants(&lineage, Some(c.clone()), Output::Count)
                                .alias(&h.name),
                        );
                        seen.push((c, h.clone()));
                        h
                    }
                };
                mine.push(h);
            }
            subs_of.push(mine);
        }
        // Magnitude cells: whether a few contributors dominate them.
        let dominance = self.dominance_checks(agg, &lineage, &mut aggr);
        for (_, columns) in &key_codes {
            for (e, h) in columns {
                aggr.push(e.clone().alias(&h.name));
            }
        }
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input.plan),
            agg.group_expr.clone(),
            aggr,
        ))?;
        // Each cell's code, next to its value.
        let check = cell_check_udf(self.protection.threshold);
        let mut codes = Vec::with_capacity(agg.aggr_expr.len());
        let mut exprs = columns_of(&agg.schema);
        for (k, _) in from_set.iter().enumerate().filter(|(_, f)| **f) {
            let (q, field) = agg.schema.qualified_field(n_group + k);
            exprs[n_group + k] = set_size_udf()
                .call(vec![sets[condition_of[k]].expr()])
                .alias_qualified(q.cloned(), field.name());
        }
        exprs.push(group_set.expr());
        // The contribution sets of cells that take fewer rows than the group, for the release.
        let cell_sets: Vec<Hidden> = sets
            .iter()
            .filter(|h| h.kind == Kind::CellSet)
            .cloned()
            .collect();
        exprs.extend(cell_sets.iter().map(Hidden::expr));
        for k in 0..agg.aggr_expr.len() {
            let code = self.hidden(Kind::Code);
            let mut args = vec![sets[condition_of[k]].expr()];
            args.extend(subs_of[k].iter().map(Hidden::expr));
            args.extend(dominance[k].as_ref().map(Hidden::expr));
            exprs.push(check.call(args).alias(&code.name));
            codes.push(code);
        }
        let key_hidden: Vec<Hidden> = key_codes
            .iter()
            .flat_map(|(_, c)| c.iter().map(|(_, h)| h.clone()))
            .collect();
        exprs.extend(key_hidden.iter().map(Hidden::expr));
        let checked = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::Aggregate(rebuilt)),
        ))?;
        // The values as the rest of the plan sees them.
        let mut exprs = Vec::new();
        for (i, (q, f)) in agg.schema.iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            if i < n_group || !self.aggregates_only() {
                exprs.push(column);
                continue;
            }
            let k = i - n_group;
            let protect = protect_udf(self.protection, counts_rows(&agg.aggr_expr[k]));
            exprs.push(
                protect
                    .call(vec![column, codes[k].expr()])
                    .alias_qualified(q.cloned(), f.name()),
            );
        }
        self.protected_cells += agg.aggr_expr.len();
        let mut hidden = vec![group_set];
        hidden.extend(codes.iter().cloned());
        hidden.extend(key_hidden);
        hidden.extend(cell_sets);
        exprs.extend(hidden.iter().map(Hidden::expr));
        let plan = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::Projection(checked)),
        ))?;
        let mut cells = vec![vec![]; agg.schema.fields().len()];
        for (k, code) in codes.iter().enumerate() {
            cells[n_group + k] = vec![code.name.clone()];
        }
        for (position, columns) in key_codes {
            cells[position] = columns.into_iter().map(|(_, h)| h.name).collect();
        }
        // Each cell is released on its own contributors (the group's, or those its condition
        // keeps), wherever its row goes: a join with padding does not widen them.
        let mut cell_sets = vec![vec![]; agg.schema.fields().len()];
        for k in 0..agg.aggr_expr.len() {
            cell_sets[n_group + k] = vec![sets[condition_of[k]].name.clone()];
        }
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden,
            cells,
            sets: cell_sets,
            rows: false,
        })
    }

    /// Grouped by the person key every lineage column comes from: each group is one
    /// participant, the group key itself (no bitmap needed). Returns the key's column in the
    /// aggregate's output.
    fn person_group(&self, agg: &Aggregate, lineage: &[Hidden]) -> Option<Column> {
        if matches!(agg.group_expr.first(), Some(Expr::GroupingSet(_))) {
            return None;
        }
        // Group keys that are a column, bare or renamed (`person_id AS alias1`, as DataFusion
        // writes COUNT(DISTINCT person_id) as a group by).
        let keys: Vec<(usize, &Column)> = agg
            .group_expr
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Expr::Column(c) => Some((i, c)),
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Column(c) => Some((i, c)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        let mut output = None;
        for h in lineage {
            let o = h.origin.as_ref().filter(|_| h.kind == Kind::Person)?;
            let &(i, _) = keys.iter().find(|(_, c)| *c == o)?;
            output.get_or_insert(i);
        }
        let (q, f) = agg.schema.qualified_field(output?);
        Some(Column::new(q.cloned(), f.name()))
    }

    /// A server-built cohort intermediate (occurrence counts per participant): its values
    /// never leave the server, only decide who is in the cohort, so they are not protected; the
    /// group's participants still go up as its lineage.
    fn internal_aggregate(
        &mut self,
        agg: &Aggregate,
        input: LogicalPlan,
        lineage: Vec<Hidden>,
    ) -> R<Rel> {
        if let Some(person) = self.person_group(agg, &lineage) {
            return self.keyed_by_person(agg, input, person, vec![], vec![]);
        }
        let set = self.hidden(Kind::Bitmap);
        let mut aggr = agg.aggr_expr.clone();
        aggr.push(
            self.participants(&lineage, None, Output::Bitmap)
                .alias(&set.name),
        );
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input),
            agg.group_expr.clone(),
            aggr,
        ))?;
        Ok(Rel {
            plan: LogicalPlan::Aggregate(rebuilt),
            hidden: vec![set],
            cells: vec![vec![]; agg.schema.fields().len()],
            sets: vec![vec![]; agg.schema.fields().len()],
            rows: false,
        })
    }

    /// A per-participant group is that participant's own row: its values are exact, and keep
    /// the codes of any statistical cell they are computed from.
    fn per_person_aggregate(&mut self, agg: &Aggregate, input: Rel, person: Column) -> R<Rel> {
        let n_group = agg.schema.fields().len() - agg.aggr_expr.len();
        let outputs = agg.group_expr.iter().cloned().enumerate().chain(
            agg.aggr_expr
                .iter()
                .cloned()
                .enumerate()
                .map(|(k, e)| (n_group + k, e)),
        );
        let inherited = self.inherited_codes(agg, outputs, &input.cells);
        // A participant's value computed from branches (`MAX(CASE WHEN rare THEN …)`) is
        // decided by whether any of their rows took each branch.
        let mut branches = Vec::new();
        let bool_or = |condition: Expr| {
            Expr::AggregateFunction(AggregateFunction::new_udf(
                datafusion::functions_aggregate::bool_and_or::bool_or_udaf(),
                vec![condition],
                false,
                None,
                vec![],
                None,
            ))
        };
        let output = |k: usize| {
            let (q, field) = agg.schema.qualified_field(k);
            Column::new(q.cloned(), field.name())
        };
        for (j, key) in agg.group_expr.iter().enumerate() {
            for b in branches_read(std::slice::from_ref(key), &input.hidden) {
                let mut any = self.hidden(Kind::Branch);
                any.origin = Some(output(j));
                branches.push((bool_or(b.expr()), any));
            }
        }
        for (k, e) in agg.aggr_expr.iter().enumerate() {
            let Some(f) = aggregate_of(e) else { continue };
            // Its own branches (`MAX(CASE WHEN rare …)`), and those computed below.
            let order_by: Vec<Expr> = f.params.order_by.iter().map(|s| s.expr.clone()).collect();
            let own = branches::sub_cells(
                f.func.name(),
                f.params.distinct,
                &f.params.args,
                &order_by,
                agg.input.schema(),
            );
            let below = branches_read(&f.params.args, &input.hidden)
                .into_iter()
                .map(Hidden::expr);
            for condition in own.into_iter().chain(below) {
                let mut any = self.hidden(Kind::Branch);
                any.origin = Some(output(n_group + k));
                branches.push((bool_or(condition), any));
            }
        }
        self.keyed_by_person(agg, input.plan, person, inherited, branches)
    }

    /// The aggregate, rebuilt over the rewritten input, plus its person group key as the
    /// lineage column (one participant per group: no bitmap) and the inherited code columns.
    fn keyed_by_person(
        &mut self,
        agg: &Aggregate,
        input: LogicalPlan,
        person: Column,
        inherited: Vec<Inherited>,
        branches: Vec<(Expr, Hidden)>,
    ) -> R<Rel> {
        let mut aggr = agg.aggr_expr.clone();
        for (_, columns) in &inherited {
            for (e, h) in columns {
                aggr.push(e.clone().alias(&h.name));
            }
        }
        for (e, h) in &branches {
            aggr.push(e.clone().alias(&h.name));
        }
        let rebuilt = df(Aggregate::try_new(
            Arc::new(input),
            agg.group_expr.clone(),
            aggr,
        ))?;
        let mut lineage = self.hidden(Kind::Person);
        let mut exprs = columns_of(&agg.schema);
        exprs.push(cast(Expr::Column(person.clone()), DataType::Int64).alias(&lineage.name));
        let mut hidden = Vec::new();
        let mut cells = vec![vec![]; agg.schema.fields().len()];
        for (position, columns) in inherited {
            for (_, h) in columns {
                exprs.push(h.expr());
                cells[position].push(h.name.clone());
                hidden.push(h);
            }
        }
        for (_, h) in branches {
            exprs.push(h.expr());
            hidden.push(h);
        }
        let plan = df(Projection::try_new(
            exprs,
            Arc::new(LogicalPlan::Aggregate(rebuilt)),
        ))?;
        lineage.origin = Some(person);
        hidden.insert(0, lineage);
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden,
            cells,
            sets: vec![vec![]; agg.schema.fields().len()],
            rows: true,
        })
    }

    /// Whether a window function's partition is one participant: partitioned by the person
    /// key every lineage column comes from.
    fn per_person_window(&self, wf: &WindowFunction, lineage: &[Hidden]) -> bool {
        !lineage.is_empty()
            && lineage.iter().all(|h| {
                h.kind == Kind::Person
                    && h.origin.as_ref().is_some_and(|o| {
                        wf.params
                            .partition_by
                            .iter()
                            .any(|p| matches!(p, Expr::Column(c) if c == o))
                    })
            })
    }

    /// For each aggregate of `agg` that is a magnitude (SUM, AVG … of numbers), a hidden
    /// column of the dominance aggregate over the same rows, added to `aggr`.
    fn dominance_checks(
        &mut self,
        agg: &Aggregate,
        lineage: &[Hidden],
        aggr: &mut Vec<Expr>,
    ) -> Vec<Option<Hidden>> {
        let mut dominance: Vec<Option<Hidden>> = Vec::with_capacity(agg.aggr_expr.len());
        for e in &agg.aggr_expr {
            // Magnitudes are numbers; a SUM of intervals has no contributions to rank.
            let numeric = |f: &AggregateFunction| {
                f.params
                    .args
                    .first()
                    .is_some_and(|a| a.get_type(agg.input.schema()).is_ok_and(|t| t.is_numeric()))
            };
            let Some(f) = aggregate_of(e).filter(|f| is_magnitude(f.func.name()) && numeric(f))
            else {
                dominance.push(None);
                continue;
            };
            let h = self.hidden(Kind::Bitmap);
            let mut args = vec![f.params.args[0].clone()];
            args.extend(lineage.iter().map(Hidden::expr));
            aggr.push(
                Expr::AggregateFunction(AggregateFunction::new_udf(
                    dominance_udaf(self.protection.dominance),
                    args,
                    false,
                    f.params.filter.clone(),
                    vec![],
                    None,
                ))
                .alias(&h.name),
            );
            dominance.push(Some(h));
        }
        dominance
    }

    fn window(&mut self, w: &Window) -> R<Rel> {
        let input = self.node(&w.input)?;
        if !input.has_lineage() {
            let plan = df(Window::try_new(w.window_expr.clone(), Arc::new(input.plan)))?;
            return Ok(Rel::plain(LogicalPlan::Window(plan)));
        }
        let lineage = input.lineage();
        let n_input = w.input.schema().fields().len();
        let mut exprs = w.window_expr.clone();
        /// What the rewrite adds for one window expression.
        struct Added {
            /// The frame's participant count, for a statistical cell, and its sub-cells'.
            counts: Vec<String>,
            /// `bit_or` of each code the expression reads, over its frame or partition.
            inherited: Vec<String>,
            /// The lineage of the row whose value it returns (LAG, LEAD, FIRST_VALUE …).
            read_lineage: Vec<Hidden>,
        }
        let mut added = Vec::with_capacity(w.window_expr.len());
        for e in &w.window_expr {
            let Some(wf) = window_function(e) else {
                return refuse("an unrecognized window expression cannot be protected");
            };
            let name = wf.fun.name().to_string();
            let is_aggregate = matches!(wf.fun, WindowFunctionDefinition::AggregateUDF(_));
            let per_person = self.per_person_window(wf, &lineage);
            if self.aggregates_only() && input.rows && !per_person {
                // Its frames are groups of participants the release ledger never sees, and a
                // rank or LAG reads other participants' rows one by one.
                return refuse(format!(
                    "{name} over participants' rows is not available to an aggregates-only \
                     principal unless partitioned by the person key: aggregate with GROUP BY \
                     first"
                ));
            }
            let statistical = !per_person && (is_aggregate || ranks_rows(&name));
            let mut counts = Vec::new();
            if statistical {
                let base = if is_aggregate {
                    contribution_window(wf, w.input.schema())
                } else {
                    None
                };
                let mut conditions = vec![base.clone()];
                if is_aggregate {
                    let args = (
                        name.as_str(),
                        wf.params.distinct,
                        wf.params.args.as_slice(),
                        &[][..],
                    );
                    let own =
                        sub_cell_conditions(args, w.input.schema(), base.as_ref(), &input.hidden)?;
                    conditions.extend(own.into_iter().map(Some));
                }
                for condition in conditions {
                    let count = self.hidden(Kind::Bitmap).name;
                    let mut params = wf.params.clone();
                    params.args = lineage.iter().map(Hidden::expr).collect();
                    params.distinct = false;
                    params.filter = condition.map(Box::new);
                    params.null_treatment = None;
                    if !is_aggregate {
                        // A rank counts the partition's rows before it: the partition decides.
                        params.window_frame = whole_partition();
                    }
                    exprs.push(
                        Expr::WindowFunction(Box::new(WindowFunction {
                            fun: WindowFunctionDefinition::AggregateUDF(participants_udaf(
                                Output::Count,
                            )),
                            params,
                        }))
                        .alias(&count),
                    );
                    counts.push(count);
                }
            }
            // Over participants' rows, the value read is another participant's. (Over cells,
            // the code of the cell read goes with it: `code_window`.)
            let mut read_lineage = Vec::new();
            if !per_person && input.rows && reads_another_row(&name) {
                for h in &lineage {
                    let mut read = self.hidden(h.kind);
                    read.origin = None;
                    let mut params = wf.params.clone();
                    // The lineage of the row whose value is returned: under IGNORE NULLS, the
                    // nearest row whose argument is not NULL.
                    params.args[0] = when(wf.params.args[0].clone().is_not_null(), h.expr())
                        .end()
                        .map_err(|e| Unprotectable(format!("internal: {e}")))?;
                    if matches!(name.as_str(), "lag" | "lead") && params.args.len() > 2 {
                        params.args[2] = cast(lit(ScalarValue::Null), h.data_type());
                    }
                    exprs.push(
                        Expr::WindowFunction(Box::new(WindowFunction {
                            fun: wf.fun.clone(),
                            params,
                        }))
                        .alias(&read.name),
                    );
                    read_lineage.push(read);
                }
            }
            // A window over cells is computed from them: over its frame for an aggregate, from
            // the row it reads for LAG and the like, over the whole partition for a rank.
            let mut inherited = Vec::new();
            let read = if self.aggregates_only() {
                // Over protected values: nothing to inherit.
                vec![]
            } else {
                Self::codes_of(e, w.input.schema(), &input.cells)
            };
            for code in read {
                let name = self.hidden(Kind::Code).name;
                let (fun, params) = code_window(wf, &code, is_aggregate);
                exprs.push(
                    Expr::WindowFunction(Box::new(WindowFunction { fun, params })).alias(&name),
                );
                inherited.push(name);
            }
            added.push(Added {
                counts,
                inherited,
                read_lineage,
            });
        }
        let rebuilt = df(Window::try_new(exprs, Arc::new(input.plan)))?;
        // Codes next to the values, then the values as the rest of the plan sees them.
        let check = cell_check_udf(self.protection.threshold);
        let mut checked = columns_of(&w.schema);
        checked.extend(input.hidden.iter().map(Hidden::expr));
        let mut hidden = input.hidden.clone();
        let mut cells = input.cells.clone();
        let mut sets = input.sets.clone();
        let mut own_codes: Vec<Option<Hidden>> = Vec::new();
        for a in &added {
            let mut codes = Vec::new();
            let own = (!a.counts.is_empty()).then(|| {
                let code = self.hidden(Kind::Code);
                let counts = a.counts.iter().map(|c| col(c)).collect();
                checked.push(check.call(counts).alias(&code.name));
                code
            });
            checked.extend(a.read_lineage.iter().map(Hidden::expr));
            hidden.extend(a.read_lineage.iter().cloned());
            if let Some(code) = &own {
                codes.push(code.name.clone());
                hidden.push(code.clone());
            }
            for inherited in &a.inherited {
                // Derived from suppressed cells: complementary.
                let code = self.hidden(Kind::Code);
                checked.push(
                    cast(
                        when(
                            col(inherited).gt(lit(0u8)),
                            lit(reason::COMPLEMENTARY as i64),
                        )
                        .otherwise(lit(0i64))
                        .map_err(|e| Unprotectable(format!("internal: {e}")))?,
                        DataType::UInt8,
                    )
                    .alias(&code.name),
                );
                codes.push(code.name.clone());
                hidden.push(code);
            }
            cells.push(codes);
            sets.push(vec![]);
            own_codes.push(own);
        }
        let checked = df(Projection::try_new(
            checked,
            Arc::new(LogicalPlan::Window(rebuilt)),
        ))?;
        let mut out = Vec::new();
        for (i, (q, f)) in w.schema.iter().enumerate() {
            let column = Expr::Column(Column::new(q.cloned(), f.name()));
            let own = i
                .checked_sub(n_input)
                .and_then(|k| own_codes[k].as_ref().map(|c| (k, c)));
            match own {
                Some((k, code)) => {
                    self.protected_cells += 1;
                    if self.aggregates_only() {
                        let is_count = window_function(&w.window_expr[k])
                            .is_some_and(|wf| wf.fun.name() == "count");
                        out.push(
                            protect_udf(self.protection, is_count)
                                .call(vec![column, code.expr()])
                                .alias_qualified(q.cloned(), f.name()),
                        );
                    } else {
                        out.push(column);
                    }
                }
                None => out.push(column),
            }
        }
        out.extend(hidden.iter().map(Hidden::expr));
        let plan = df(Projection::try_new(
            out,
            Arc::new(LogicalPlan::Projection(checked)),
        ))?;
        Ok(Rel {
            plan: LogicalPlan::Projection(plan),
            hidden,
            cells,
            sets,
            rows: input.rows,
        })
    }

    /// Each input's hidden columns go to their own slots (NULL in the other inputs' rows).
    fn union(&mut self, plan: &LogicalPlan, u: &datafusion::logical_expr::Union) -> R<Rel> {
        let mut inputs = Vec::new();
        for input in &u.inputs {
            inputs.push(self.node(input)?);
        }
        if inputs.iter().all(|r| r.hidden.is_empty()) {
            let plan =
                df(plan.with_new_exprs(vec![], inputs.into_iter().map(|r| r.plan).collect()))?;
            return Ok(Rel::plain(plan));
        }
        let rows = inputs.iter().any(|r| r.rows);
        let slots: Vec<(usize, Hidden)> = inputs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.hidden.iter().map(move |h| (i, h.clone())))
            .collect();
        let mut names: Vec<Hidden> = slots.iter().map(|(_, h)| self.hidden(h.kind)).collect();
        // A branch stays with its column: the union's column at the same position.
        for ((owner, h), name) in slots.iter().zip(names.iter_mut()) {
            if h.kind == Kind::Branch
                && let Some(k) = h
                    .origin
                    .as_ref()
                    .and_then(|o| u.inputs[*owner].schema().maybe_index_of_column(o))
            {
                let (q, f) = u.schema.qualified_field(k);
                name.origin = Some(Column::new(q.cloned(), f.name()));
            }
        }
        let renamed = |input: usize, code: &String| {
            slots
                .iter()
                .zip(&names)
                .find(|((owner, h), _)| *owner == input && h.name == *code)
                .map(|(_, n)| n.name.clone())
        };
        let mut cells = vec![vec![]; u.schema.fields().len()];
        let mut sets = vec![vec![]; u.schema.fields().len()];
        // A column whose set is its row's lineage in some input has no set of its own.
        let mut row_lineage = vec![false; u.schema.fields().len()];
        for (i, r) in inputs.iter().enumerate() {
            for (k, codes) in r.cells.iter().enumerate() {
                let codes: Vec<String> = codes.iter().filter_map(|c| renamed(i, c)).collect();
                union_into(&mut cells[k], &codes);
                let own: Vec<String> = r.sets[k].iter().filter_map(|c| renamed(i, c)).collect();
                row_lineage[k] |= own.is_empty() && !r.cells[k].is_empty();
                union_into(&mut sets[k], &own);
            }
        }
        for (k, lineage) in row_lineage.into_iter().enumerate() {
            if lineage {
                sets[k].clear();
            }
        }
        // Which input a row came from decides its values like a CASE branch (`SELECT y … WHERE
        // rare UNION ALL SELECT 0 …`): one branch column per input and column, for aggregates
        // above.
        let n_inputs = inputs.len();
        let mut from_input: Vec<(usize, Hidden)> = Vec::new();
        if n_inputs > 1 && inputs.iter().any(Rel::has_lineage) {
            for i in 0..n_inputs {
                for (q, f) in u.schema.iter() {
                    let mut b = self.hidden(Kind::Branch);
                    b.origin = Some(Column::new(q.cloned(), f.name()));
                    from_input.push((i, b));
                }
            }
        }
        let mut projected = Vec::new();
        for (i, r) in inputs.into_iter().enumerate() {
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
            for (owner, b) in &from_input {
                exprs.push(lit(*owner == i).alias(&b.name));
            }
            projected.push(Arc::new(LogicalPlan::Projection(df(Projection::try_new(
                exprs,
                Arc::new(r.plan),
            ))?)));
        }
        let union = df(datafusion::logical_expr::Union::try_new_with_loose_types(
            projected,
        ))?;
        names.extend(from_input.into_iter().map(|(_, b)| b));
        Ok(Rel {
            plan: LogicalPlan::Union(union),
            hidden: names,
            cells,
            sets,
            rows,
        })
    }
}

/// DataFusion plans `COUNT(DISTINCT k) … GROUP BY g` as a group by `g, k` under a group by `g`
/// that counts `k` (its single-distinct rule). Returns that inner aggregate and the one
/// aggregate the pair stands for, `COUNT(DISTINCT k) … GROUP BY g` with `agg`'s output, so that
/// a count of participants can be read off the set each group builds anyway.
pub(crate) fn distinct_count_parts(agg: &Aggregate) -> Option<(&Aggregate, Aggregate)> {
    let LogicalPlan::Aggregate(inner) = agg.input.as_ref() else {
        return None;
    };
    let grouping_sets = |a: &Aggregate| matches!(a.group_expr.first(), Some(Expr::GroupingSet(_)));
    if !inner.aggr_expr.is_empty()
        || agg.aggr_expr.is_empty()
        || grouping_sets(inner)
        || grouping_sets(agg)
    {
        return None;
    }
    // The inner key each outer key is; the one left over is the counted key.
    let mut used = vec![false; inner.group_expr.len()];
    let mut groups = Vec::with_capacity(agg.group_expr.len());
    for e in &agg.group_expr {
        let Expr::Column(c) = e else { return None };
        let i = inner.schema.index_of_column(c).ok()?;
        if i >= used.len() || used[i] {
            return None;
        }
        used[i] = true;
        groups.push(inner.group_expr[i].clone());
    }
    let mut unused = used
        .iter()
        .enumerate()
        .filter(|(_, u)| !**u)
        .map(|(i, _)| i);
    let (Some(k), None) = (unused.next(), unused.next()) else {
        return None;
    };
    let (q, f) = inner.schema.qualified_field(k);
    let counted = Column::new(q.cloned(), f.name());
    let key = match &inner.group_expr[k] {
        Expr::Alias(a) => a.expr.as_ref().clone(),
        e => e.clone(),
    };
    if !matches!(key, Expr::Column(_)) {
        return None;
    }
    let n_group = agg.group_expr.len();
    let mut aggr = Vec::with_capacity(agg.aggr_expr.len());
    for (e, (q, field)) in agg.aggr_expr.iter().zip(agg.schema.iter().skip(n_group)) {
        let f = aggregate_of(e)?;
        let counts_key = f.func.name() == "count"
            && f.params.filter.is_none()
            && f.params.order_by.is_empty()
            && matches!(f.params.args.as_slice(), [Expr::Column(c)] if *c == counted);
        if !counts_key {
            return None;
        }
        let distinct =
            AggregateFunction::new_udf(f.func.clone(), vec![key.clone()], true, None, vec![], None);
        aggr.push(Expr::AggregateFunction(distinct).alias_qualified(q.cloned(), field.name()));
    }
    let fused = Aggregate::try_new(inner.input.clone(), groups, aggr).ok()?;
    let same_output = fused.schema.fields().len() == agg.schema.fields().len()
        && fused
            .schema
            .iter()
            .zip(agg.schema.iter())
            .all(|((q1, f1), (q2, f2))| {
                q1 == q2 && f1.name() == f2.name() && f1.data_type() == f2.data_type()
            });
    same_output.then_some((inner, fused))
}

/// `COUNT(DISTINCT k)` where `k` is the person key all of the rows' lineage is: the number of
/// the cell's participants. Integer keys only: the participant sets hold the key cast to
/// Int64, one to one for integers (a cast of text or decimals could merge two keys).
fn counts_participants(e: &Expr, lineage: &[Hidden], schema: &DFSchema) -> bool {
    aggregate_of(e).is_some_and(|f| {
        f.func.name() == "count"
            && f.params.distinct
            && f.params.order_by.is_empty()
            && matches!((f.params.args.as_slice(), lineage), ([Expr::Column(c)], [only])
                if only.kind == Kind::Person
                    && only.origin.as_ref() == Some(c)
                    && schema.qualified_field_from_column(c).is_ok_and(|(_, f)| f.data_type().is_integer()))
    })
}

/// Whether a plan yields exactly one row: an aggregate without groups, under projections.
fn one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => one_row(plan.inputs()[0]),
        _ => false,
    }
}

fn col(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

pub(crate) fn aggregate_of(e: &Expr) -> Option<&AggregateFunction> {
    match e {
        Expr::Alias(a) => aggregate_of(&a.expr),
        Expr::AggregateFunction(f) => Some(f),
        _ => None,
    }
}

/// A count of rows or participants: COUNT, APPROX_DISTINCT, or a SUM of a constant (`SUM(1)`),
/// rounded like one.
fn counts_rows(e: &Expr) -> bool {
    aggregate_of(e).is_some_and(|f| {
        matches!(f.func.name(), "count" | "approx_distinct")
            || (f.func.name() == "sum"
                && matches!(f.params.args.first(), Some(Expr::Literal(v, _)) if !v.is_null()))
    })
}

/// The branch columns (of `hidden`) deciding the columns `args` read.
fn branches_read<'h>(args: &[Expr], hidden: &'h [Hidden]) -> Vec<&'h Hidden> {
    let read: Vec<&Column> = args.iter().flat_map(|a| a.column_refs()).collect();
    hidden
        .iter()
        .filter(|h| h.kind == Kind::Branch && h.origin.as_ref().is_some_and(|o| read.contains(&o)))
        .collect()
}

/// More sub-cells than this in one aggregate is refused rather than counted.
const MAX_SUB_CELLS: usize = 64;

/// The sub-cells of aggregate `(name, distinct, args)` (see `branches`) — its own branches and
/// those computed below of the columns it reads (`hidden`'s branch columns) — each within the
/// rows the aggregate takes its value from (`base`).
fn sub_cell_conditions(
    (name, distinct, args, order_by): (&str, bool, &[Expr], &[Expr]),
    schema: &DFSchema,
    base: Option<&Expr>,
    hidden: &[Hidden],
) -> R<Vec<Expr>> {
    let mut conditions = branches::sub_cells(name, distinct, args, order_by, schema);
    if conditions.len() > MAX_SUB_CELLS {
        return refuse(format!(
            "an aggregate whose value depends on more than {MAX_SUB_CELLS} conditions cannot \
             be protected"
        ));
    }
    if name != "count" || distinct {
        conditions.extend(
            branches_read(args, hidden)
                .into_iter()
                .map(|b| b.expr().is_true()),
        );
    }
    Ok(conditions
        .into_iter()
        .map(|c| match base {
            Some(b) => b.clone().and(c),
            None => c,
        })
        .collect())
}

/// The aggregates an aggregates-only principal may compute over participant data.
const AGGREGATES_ONLY_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "variance",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "percentile_cont",
];

/// Aggregates that put every member's value into one cell.
fn collects_values(name: &str) -> bool {
    matches!(
        name,
        "array_agg" | "string_agg" | "listagg" | "group_concat" | "array_union_agg"
    )
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
fn contribution(e: &Expr, schema: &DFSchema, lineage: &[Hidden]) -> Option<Expr> {
    let f = aggregate_of(e)?;
    // COUNT(DISTINCT person_id) over rows whose only lineage is that very key: a NULL key is a
    // NULL id, which contributes no one anyway, so the condition adds nothing (and would cost a
    // second bitmap per group).
    let args: Vec<Expr> = f
        .params
        .args
        .iter()
        .filter(|a| {
            !matches!((a, lineage), (Expr::Column(c), [only])
                if only.kind == Kind::Person && only.origin.as_ref() == Some(c))
        })
        .cloned()
        .collect();
    condition(f.params.filter.as_deref(), &args, schema)
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
            parts.push(branches::without_widening(a, schema).clone().is_not_null());
        }
    }
    parts.into_iter().reduce(|a, b| a.and(b))
}
/// Window functions whose value counts the partition's rows (a rank), which are statistics
/// unless the partition is one participant.
fn ranks_rows(name: &str) -> bool {
    matches!(
        name,
        "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" | "ntile"
    )
}

/// Window functions that return the value of another row of the partition.
fn reads_another_row(name: &str) -> bool {
    matches!(
        name,
        "lag" | "lead" | "first_value" | "last_value" | "nth_value"
    )
}

fn whole_partition() -> WindowFrame {
    WindowFrame::new_bounds(
        WindowFrameUnits::Rows,
        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        WindowFrameBound::Following(ScalarValue::UInt64(None)),
    )
}

/// The window expression that carries a code column along with a window expression over cells:
/// the code of the row read (LAG, LEAD, FIRST_VALUE and the like), the codes of the frame (an
/// aggregate), or of the whole partition (a rank).
fn code_window(
    wf: &WindowFunction,
    code: &str,
    is_aggregate: bool,
) -> (WindowFunctionDefinition, WindowFunctionParams) {
    if reads_another_row(wf.fun.name()) {
        // The code of the row whose value it returns: the same function over the
        // code column (a default value is releasable: code 0).
        let mut args = wf.params.args.clone();
        args[0] = col(code);
        if matches!(wf.fun.name(), "lag" | "lead") && args.len() > 2 {
            args[2] = lit(0u8);
        }
        (
            wf.fun.clone(),
            WindowFunctionParams {
                args,
                ..wf.params.clone()
            },
        )
    } else if is_aggregate {
        (
            WindowFunctionDefinition::AggregateUDF(bit_or_udaf()),
            WindowFunctionParams {
                args: vec![col(code)],
                distinct: false,
                filter: None,
                null_treatment: None,
                ..wf.params.clone()
            },
        )
    } else {
        // The whole partition, under the same sort keys (a Window node's
        // expressions share them).
        (
            WindowFunctionDefinition::AggregateUDF(bit_or_udaf()),
            WindowFunctionParams {
                args: vec![col(code)],
                partition_by: wf.params.partition_by.clone(),
                order_by: wf.params.order_by.clone(),
                window_frame: whole_partition(),
                filter: None,
                null_treatment: None,
                distinct: false,
            },
        )
    }
}
