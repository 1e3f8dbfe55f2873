//! The query executor the front doors call: plan (through the planner), execute over the
//! dataset, stream batches, and log one structured line per query with what it scanned.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::ParamValues;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use futures::Stream;
use strata_engine::Dataset;
use strata_engine::Tier;
use strata_engine::cache::CacheSnapshot;
use strata_engine::table::ScanRecorder;
use strata_planner::disclosure::{
    self, DisclosurePlanner, DisclosureReport, DisclosureSettings, Level, Protection,
    release::{ReleaseLedger, Rules},
};
use strata_planner::principal::Principal;
use strata_planner::registered::{self, RegisteredPolicy, shift_bounds::ShiftBounds};
use strata_planner::tier_guard::{TierGuard, TierMap};

use crate::audit::{AuditLog, AuditRecord, now_rfc3339, sha256_hex};
use crate::cohorts::NamedCohorts;
use crate::config::{EgressSettings, ServerConfig, date_shift_secret};
use strata_planner::{PlannedQuery, PlannerError};

pub struct Executor {
    dataset: Arc<Dataset>,
    tiers: Arc<TierMap>,
    /// Registered-tier views of the participant tables, built once.
    registered_views: BTreeMap<String, Arc<dyn TableProvider>>,
    audit: Arc<AuditLog>,
    egress: EgressSettings,
    egress_alerts: Arc<AtomicU64>,
    disclosure: DisclosureSettings,
    person_keys: Arc<HashMap<String, String>>,
    /// Participant sets released to each principal (complementary suppression across
    /// queries).
    ledger: Arc<ReleaseLedger>,
    cohorts: NamedCohorts,
    /// Named cohorts compiled once per principal and tier (their concept sets resolved), for
    /// every later session of their owner. The dataset does not change while it is served.
    compiled_cohorts:
        std::sync::Mutex<HashMap<(String, String), datafusion::logical_expr::LogicalPlan>>,
}

/// Compiled named cohorts kept at most (then the cache starts over).
const COMPILED_COHORTS: usize = 4096;

/// A principal's session for one request.
struct Session {
    ctx: SessionContext,
    recorder: Arc<ScanRecorder>,
    guard: Arc<TierGuard>,
    report: Arc<DisclosureReport>,
    protection: Option<Protection>,
}

/// A statement planned once (at GetFlightInfo or prepare) and executed later (at DoGet).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub query: PlannedQuery,
    pub schema: SchemaRef,
    pub parameters: Option<ParamValues>,
    /// The principal that planned it, with its tier and egress; tickets and handles work for
    /// nobody else.
    pub owner: String,
    /// `table:tier` of every table read, for the audit log.
    pub tables: Vec<String>,
    pub plan_sha256: String,
    /// Results computed at GetFlightInfo (protected queries), released by the next DoGet.
    pub results: Option<Arc<Vec<RecordBatch>>>,
}

impl Prepared {
    /// A checked plan of `principal`, with what its audit records need.
    fn new(query: PlannedQuery, guard: &TierGuard, principal: &Principal) -> Self {
        let schema = Arc::new(query.plan.schema().as_arrow().clone());
        let tables = guard
            .tables_touched(&query.plan)
            .into_iter()
            .map(|(t, tier)| format!("{t}:{tier}"))
            .collect();
        let plan_sha256 = sha256_hex(&query.plan.display_indent().to_string());
        Prepared {
            query,
            schema,
            parameters: None,
            owner: principal.session_key(),
            tables,
            plan_sha256,
            results: None,
        }
    }
}

impl Executor {
    pub async fn open(dataset: Arc<Dataset>, config: &ServerConfig) -> anyhow::Result<Self> {
        let tiers = Arc::new(TierMap::from_catalog(dataset.catalog()));
        let secret = date_shift_secret(&config.state_dir(dataset.dir()))?;
        let (raw, _) = dataset.session()?;
        let year = chrono::Datelike::year(&chrono::Utc::now());
        let policy = RegisteredPolicy::load(&raw, &secret, &config.registered, year)
            .await
            .map_err(|e| anyhow::anyhow!("cannot prepare the registered tier: {e}"))?;
        tracing::info!(
            left_out = policy.excluded_count(),
            "registered tier: participants aged {}+ left out",
            config.registered.max_age
        );
        let providers: BTreeMap<String, Arc<dyn TableProvider>> = dataset
            .tables()
            .iter()
            .map(|(n, t)| (n.clone(), t.clone() as Arc<dyn TableProvider>))
            .collect();
        let registered_views =
            registered::build_views(dataset.catalog(), &tiers, &providers, Arc::new(policy))?;
        let audit = Arc::new(AuditLog::open(&config.audit_path(dataset.dir()))?);
        Ok(Executor {
            tiers,
            registered_views,
            audit,
            egress: config.egress.clone(),
            egress_alerts: Arc::new(AtomicU64::new(0)),
            disclosure: config.disclosure.clone(),
            person_keys: Arc::new(disclosure::person_keys(dataset.catalog())),
            cohorts: NamedCohorts::open(&config.state_dir(dataset.dir()).join("cohorts.json"))?,
            compiled_cohorts: Default::default(),
            ledger: Arc::new(
                ReleaseLedger::open(
                    &config.state_dir(dataset.dir()).join("released.jsonl"),
                    config.disclosure.ledger_budget_mb << 20,
                )
                .map_err(|e| anyhow::anyhow!("cannot open the release ledger: {e}"))?,
            ),
            dataset,
        })
    }

    pub fn tiers(&self) -> &TierMap {
        &self.tiers
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// A session holding only the tables the principal may read — for the registered tier,
    /// their registered views — with the tier guard installed as an analyzer rule so every
    /// plan DataFusion runs in it is checked again.
    /// The principal's session, with its named cohorts as tables `cohort_<name>`.
    async fn session(&self, principal: &Principal) -> Result<Session, PlannerError> {
        let session = self.base_session(principal)?;
        for (name, saved) in self.cohorts.of(&principal.key()) {
            let Ok(def) = serde_json::from_str::<serde_json::Value>(&saved.definition) else {
                continue;
            };
            let key = (
                format!("{}|{}", principal.key(), principal.tier),
                saved.definition.clone(),
            );
            let cached = self
                .compiled_cohorts
                .lock()
                .ok()
                .and_then(|c| c.get(&key).cloned());
            if let Some(plan) = cached {
                let table =
                    datafusion::dataframe::DataFrame::new(session.ctx.state(), plan).into_view();
                session
                    .ctx
                    .register_table(format!("cohort_{name}").as_str(), table)
                    .map_err(PlannerError::from_datafusion)?;
                continue;
            }
            match compile_cohort(&session, &def).await.map(|df| {
                if let Ok(mut cache) = self.compiled_cohorts.lock() {
                    if cache.len() >= COMPILED_COHORTS {
                        cache.clear();
                    }
                    cache.insert(key, df.logical_plan().clone());
                }
                df.into_view()
            }) {
                Ok(table) => {
                    session
                        .ctx
                        .register_table(format!("cohort_{name}").as_str(), table)
                        .map_err(PlannerError::from_datafusion)?;
                }
                Err(e) => tracing::warn!(cohort = %name, error = %e, "named cohort not available"),
            }
        }
        Ok(session)
    }

    pub fn cohorts(&self) -> &NamedCohorts {
        &self.cohorts
    }

    fn base_session(&self, principal: &Principal) -> Result<Session, PlannerError> {
        let tiers = self.tiers.clone();
        let registered = principal.tier == Tier::Registered;
        let report = Arc::new(DisclosureReport::default());
        let protection = self.protection(principal);
        let planner: Arc<dyn QueryPlanner + Send + Sync> = match protection {
            Some(p) => Arc::new(DisclosurePlanner::new(
                self.person_keys.clone(),
                p,
                report.clone(),
            )),
            None => Arc::new(strata_planner::cohort::boundary::PlainQueryPlanner),
        };
        let (ctx, recorder) = self
            .dataset
            .session_with(
                |name, table| {
                    if !tiers
                        .table_tier(name)
                        .is_some_and(|t| principal.may_read(t))
                    {
                        return None;
                    }
                    if registered && let Some(view) = self.registered_views.get(name) {
                        return Some(view.clone());
                    }
                    Some(table.clone() as Arc<dyn TableProvider>)
                },
                Some(planner),
            )
            .map_err(internal)?;
        strata_planner::cohort::function::CohortFunction::register(&ctx);
        let guard = Arc::new(
            TierGuard::new(self.tiers.clone(), principal.tier)
                .aggregates_only(principal.aggregates_only()),
        );
        ctx.add_analyzer_rule(guard.clone());
        if registered {
            ctx.add_optimizer_rule(Arc::new(ShiftBounds));
        }
        Ok(Session {
            ctx,
            recorder,
            guard,
            report,
            protection,
        })
    }

    /// How this principal's aggregate cells are released; `None` for the local operator of a
    /// development server, who sees the data as stored.
    fn protection(&self, principal: &Principal) -> Option<Protection> {
        if principal.operator {
            return None;
        }
        let aggregates_only = principal.aggregates_only();
        Some(Protection {
            threshold: self.disclosure.threshold,
            rounding: aggregates_only.then_some(self.disclosure.rounding),
            level: if aggregates_only {
                Level::AggregatesOnly
            } else {
                Level::RowLevel
            },
            dominance: self.disclosure.dominance,
        })
    }

    /// The table's schema as the principal sees it (registered views leave columns out).
    pub fn table_schema(
        &self,
        name: &str,
        table: &Arc<strata_engine::table::ShardedTable>,
        principal: &Principal,
    ) -> SchemaRef {
        match self.registered_views.get(name) {
            Some(view) if principal.tier == Tier::Registered => view.schema(),
            _ => TableProvider::schema(table.as_ref()),
        }
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    pub async fn plan(&self, sql: &str, principal: &Principal) -> Result<Prepared, PlannerError> {
        let session = self.session(principal).await?;
        let guard = session.guard;
        let query = strata_planner::plan_sql_guarded(&session.ctx, sql, &guard).await?;
        Ok(Prepared::new(query, &guard, principal))
    }

    /// Whether disclosure control will protect cells of this statement's result: the principal
    /// is protected and an aggregate or window reads participant data.
    pub fn is_protected(&self, prepared: &Prepared, principal: &Principal) -> bool {
        self.protection(principal).is_some()
            && disclosure::aggregates_participants(&prepared.query.plan, &self.person_keys)
    }

    /// Executes a prepared statement; batches stream lazily, and the query's log line and
    /// audit end record are written when the stream ends (or is dropped by a client that went
    /// away). Row-level results past the egress cap end the stream with an error.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        principal: &Principal,
        audit: AuditRecord,
    ) -> Result<QueryStream, PlannerError> {
        let started = Instant::now();
        let Session {
            ctx,
            recorder,
            report,
            protection,
            ..
        } = self.session(principal).await?;
        let plan = match &prepared.parameters {
            Some(p) => strata_planner::bind(&prepared.query, p.clone())?,
            None => {
                if !prepared
                    .query
                    .plan
                    .get_parameter_types()
                    .map_err(PlannerError::from_datafusion)?
                    .is_empty()
                {
                    return Err(PlannerError::InvalidQuery(
                        "the statement has parameters but none were bound".into(),
                    ));
                }
                prepared.query.plan.clone()
            }
        };
        let row_level = !is_aggregate_output(&plan);
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(PlannerError::from_datafusion)?;
        let physical = df
            .create_physical_plan()
            .await
            .map_err(PlannerError::from_datafusion)?;
        let mut stream = execute_stream(physical.clone(), ctx.task_ctx())
            .map_err(PlannerError::from_datafusion)?;
        if let Some(p) = protection
            && report.protected_cells() > 0
        {
            // The suppression report travels in the schema, which goes out first: protected
            // (aggregate) results are computed whole before the first batch leaves.
            // Row-level principals' results are checked alone (a principal who can read the rows
            // gains nothing by differencing two results), unless the operator asks otherwise.
            let (ledger, rules) = match p.level {
                Level::RowLevel if !self.disclosure.row_level_ledger => {
                    (Arc::new(ReleaseLedger::default()), Rules::Cells)
                }
                _ => (self.ledger.clone(), Rules::Groups),
            };
            stream = buffered_with_report(
                stream,
                p,
                &report,
                self.egress.max_bytes,
                &ledger,
                rules,
                &principal.key(),
            )
            .await?;
        }
        Ok(QueryStream {
            inner: stream,
            row_level,
            egress: self.egress.clone(),
            alerts: self.egress_alerts.clone(),
            done: false,
            report: Some(QueryReport {
                statement: prepared.query.sql.clone(),
                principal: principal.key(),
                started,
                physical,
                recorder,
                cache_before: self.dataset.cache_snapshot(),
                dataset: self.dataset.clone(),
                rows: 0,
                bytes: 0,
                egress_alert: false,
                error: None,
                disclosure: report,
                audit,
                audit_log: self.audit.clone(),
            }),
        })
    }
}

/// Runs the stream to its end and returns its batches again, under a schema whose metadata
/// carries the suppression report (`strata.suppressed_cells`, `strata.threshold`,
/// `strata.rounding`).
async fn buffered_with_report(
    mut stream: SendableRecordBatchStream,
    protection: Protection,
    report: &DisclosureReport,
    max_bytes: u64,
    ledger: &ReleaseLedger,
    rules: Rules,
    principal: &str,
) -> Result<SendableRecordBatchStream, PlannerError> {
    use futures::StreamExt;
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(PlannerError::from_datafusion)?;
        bytes += batch_bytes(&batch);
        if bytes > max_bytes {
            return Err(PlannerError::ResourcesExhausted(format!(
                "the protected result passed {max_bytes} bytes; aggregate to fewer groups"
            )));
        }
        batches.push(batch);
    }
    let cells = report.output_cells();
    if !cells.is_empty() {
        let schema = stream.schema();
        let whole = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| PlannerError::Internal(e.to_string()))?;
        report.set_result_cells((whole.num_rows() * cells.len()) as u64);
        let released = release(
            whole,
            &cells,
            protection,
            (ledger, rules),
            principal,
            report,
        )?;
        batches = vec![released];
    }
    let base = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| stream.schema());
    let mut metadata = base.metadata().clone();
    metadata.insert(
        "strata.suppressed_cells".into(),
        report.suppressed_cells().to_string(),
    );
    for reason in disclosure::REASONS {
        metadata.insert(
            format!("strata.suppressed.{reason}"),
            report.suppressed.of(reason).to_string(),
        );
    }
    metadata.insert("strata.threshold".into(), protection.threshold.to_string());
    metadata.insert(
        "strata.rounding".into(),
        protection.rounding.unwrap_or(1).to_string(),
    );
    let schema = Arc::new(base.as_ref().clone().with_metadata(metadata));
    let batches: Vec<_> = batches
        .into_iter()
        .map(|b| {
            b.with_schema(schema.clone())
                .map_err(|e| datafusion::error::DataFusionError::ArrowError(Box::new(e), None))
        })
        .collect();
    Ok(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        ),
    ))
}

/// Applies the release ledger to a protected result: rows whose participant set would let a
/// small group be solved (with this result's other rows or with what the principal already
/// received) get their protected cells withheld. Drops the hidden participant-set column.
fn release(
    batch: RecordBatch,
    cells: &[usize],
    protection: Protection,
    (ledger, rules): (&ReleaseLedger, Rules),
    principal: &str,
    report: &DisclosureReport,
) -> Result<RecordBatch, PlannerError> {
    use arrow::array::{Array, AsArray, BooleanArray};
    let internal = |e: arrow::error::ArrowError| PlannerError::Internal(e.to_string());
    let last = batch.num_columns() - 1;
    let sets = batch.column(last).as_binary::<i32>().clone();
    let rows: Vec<disclosure::release::Row> = (0..batch.num_rows())
        .map(|i| {
            let offered = cells.iter().any(|&c| batch.column(c).is_valid(i));
            let set = if sets.is_null(i) {
                None
            } else {
                Some(
                    disclosure::participants::deserialize(sets.value(i))
                        .map_err(PlannerError::from_datafusion)?,
                )
            };
            Ok(disclosure::release::Row { set, offered })
        })
        .collect::<Result<_, PlannerError>>()?;
    let started = Instant::now();
    let decisions = ledger
        .decide(principal, &rows, protection.threshold, rules)
        .map_err(|e| PlannerError::ResourcesExhausted(e.to_string()))?;
    tracing::debug!(
        rows = rows.len(),
        release_ms = started.elapsed().as_secs_f64() * 1000.0,
        "release decided"
    );
    let withhold: BooleanArray = decisions.iter().map(|d| Some(!d.released())).collect();
    let mut columns = Vec::with_capacity(last);
    for (i, column) in batch.columns()[..last].iter().enumerate() {
        if cells.contains(&i) {
            for (row, d) in decisions.iter().enumerate() {
                if let Some(reason) = d.reason()
                    && column.is_valid(row)
                {
                    report.add_suppressed(reason, 1);
                }
            }
            columns.push(arrow::compute::nullif(column, &withhold).map_err(internal)?);
        } else {
            columns.push(column.clone());
        }
    }
    let schema = batch.schema();
    let fields: Vec<_> = schema.fields()[..last]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if cells.contains(&i) {
                Arc::new(f.as_ref().clone().with_nullable(true))
            } else {
                f.clone()
            }
        })
        .collect();
    let out_schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ));
    RecordBatch::try_new(out_schema, columns).map_err(internal)
}

/// What a cohort request computes over the cohort's participants.
pub enum CohortQuery<'a> {
    Count,
    /// Participant counts by a person attribute.
    Breakdown(&'a str),
}

impl Executor {
    /// Plans a cohort definition in the principal's session (registered views, tier guard,
    /// egress checks apply as to SQL), ready for `execute`, where disclosure control protects
    /// the counts.
    pub async fn plan_cohort(
        &self,
        definition: &str,
        query: CohortQuery<'_>,
        principal: &Principal,
    ) -> Result<Prepared, PlannerError> {
        use datafusion::functions_aggregate::expr_fn::count_distinct;
        use datafusion::logical_expr::col;
        let def: serde_json::Value = serde_json::from_str(definition).map_err(|e| {
            PlannerError::InvalidQuery(format!("the cohort definition is not JSON: {e}"))
        })?;
        let session = self.session(principal).await?;
        let persons = compile_cohort(&session, &def).await?;
        let df = match query {
            CohortQuery::Count => persons
                .aggregate(
                    vec![],
                    vec![count_distinct(col("person_id")).alias("participants")],
                )
                .map_err(PlannerError::from_datafusion)?,
            CohortQuery::Breakdown(attribute) => {
                let key = breakdown_key(attribute)?;
                let people = session
                    .ctx
                    .table("person")
                    .await
                    .map_err(PlannerError::from_datafusion)?
                    .select(vec![col("person.person_id"), key.alias("value")])
                    .map_err(PlannerError::from_datafusion)?
                    .alias("people")
                    .map_err(PlannerError::from_datafusion)?;
                persons
                    .alias("cohort")
                    .and_then(|c| {
                        c.join_on(
                            people,
                            datafusion::common::JoinType::Inner,
                            [col("cohort.person_id").eq(col("people.person_id"))],
                        )
                    })
                    .and_then(|j| {
                        j.aggregate(
                            vec![col("value")],
                            vec![count_distinct(col("cohort.person_id")).alias("participants")],
                        )
                    })
                    .map_err(PlannerError::from_datafusion)?
            }
        };
        let plan = df.into_unoptimized_plan();
        session
            .guard
            .check(&plan)
            .map_err(|d| PlannerError::NotPermitted(d.0))?;
        let query = PlannedQuery {
            sql: definition.to_string(),
            plan,
        };
        Ok(Prepared::new(query, &session.guard, principal))
    }
}

/// A cohort definition compiled in the principal's session; a table the definition needs that
/// is above the principal's tier is refused as in SQL.
async fn compile_cohort(
    session: &Session,
    def: &serde_json::Value,
) -> Result<datafusion::dataframe::DataFrame, PlannerError> {
    use strata_planner::cohort::CohortError;
    match strata_planner::cohort::compile(&session.ctx, def).await {
        Ok(df) => Ok(df),
        Err(e @ CohortError::MissingTable(_)) => {
            Err(session.guard.explain_missing_table(e.to_string()))
        }
        Err(e @ CohortError::Unsupported { .. }) => Err(PlannerError::Unsupported(e.to_string())),
        Err(e) => Err(PlannerError::InvalidQuery(e.to_string())),
    }
}

fn breakdown_key(attribute: &str) -> Result<datafusion::logical_expr::Expr, PlannerError> {
    use datafusion::logical_expr::{cast, col, lit, when};
    let text = |e| cast(e, arrow::datatypes::DataType::Utf8);
    Ok(match attribute {
        "sex" | "gender" => text(col("gender_concept_id")),
        "race" => text(col("race_concept_id")),
        "ethnicity" => text(col("ethnicity_concept_id")),
        "age_group" => {
            let year = chrono::Datelike::year(&chrono::Utc::now()) as i64;
            let age = lit(year) - cast(col("year_of_birth"), arrow::datatypes::DataType::Int64);
            when(age.clone().lt(lit(18)), lit("0-17"))
                .when(age.clone().lt(lit(30)), lit("18-29"))
                .when(age.clone().lt(lit(45)), lit("30-44"))
                .when(age.clone().lt(lit(65)), lit("45-64"))
                .when(age.lt(lit(80)), lit("65-79"))
                .otherwise(lit("80+"))
                .map_err(PlannerError::from_datafusion)?
        }
        other
            if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !other.is_empty() =>
        {
            text(col(other))
        }
        other => {
            return Err(PlannerError::InvalidQuery(format!(
                "cannot break down by {other:?}: use sex, gender, race, ethnicity, age_group or a person column"
            )));
        }
    })
}

/// Whether the plan's output rows are aggregates (every output passes through an aggregate)
/// rather than rows of a table.
fn is_aggregate_output(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Projection(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_) => plan.inputs().iter().all(|i| is_aggregate_output(i)),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => true,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => true,
        _ => false,
    }
}

fn internal(e: strata_engine::EngineError) -> PlannerError {
    PlannerError::Internal(e.to_string())
}

/// Result batches of one query; counts rows and bytes, enforces the egress limits, and reports
/// on completion.
pub struct QueryStream {
    inner: SendableRecordBatchStream,
    /// Row-level results (not aggregates) are what the egress alert and cap watch.
    row_level: bool,
    egress: EgressSettings,
    alerts: Arc<AtomicU64>,
    done: bool,
    report: Option<QueryReport>,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn finish(&mut self, error: Option<String>) {
        self.done = true;
        if let Some(mut r) = self.report.take() {
            r.error = error;
            r.log();
        }
    }

    /// Counts a batch; an error once the row-level cap would be passed.
    fn admit(&mut self, batch: &RecordBatch) -> Result<(), PlannerError> {
        let Some(r) = self.report.as_mut() else {
            return Ok(());
        };
        let rows = r.rows + batch.num_rows() as u64;
        let bytes = r.bytes + batch_bytes(batch);
        if self.row_level {
            if rows > self.egress.max_rows || bytes > self.egress.max_bytes {
                return Err(PlannerError::ResourcesExhausted(format!(
                    "the result passed the row-level egress cap ({} rows, {} bytes); \
                     aggregate or narrow the query",
                    self.egress.max_rows, self.egress.max_bytes
                )));
            }
            if !r.egress_alert && (rows > self.egress.alert_rows || bytes > self.egress.alert_bytes)
            {
                r.egress_alert = true;
                let total = self.alerts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    principal = %r.principal,
                    request_id = %r.audit.request_id,
                    rows,
                    bytes,
                    alert_rows = self.egress.alert_rows,
                    alert_bytes = self.egress.alert_bytes,
                    egress_alerts_total = total,
                    "egress alert: large row-level result"
                );
            }
        }
        r.rows = rows;
        r.bytes = bytes;
        Ok(())
    }
}

fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, PlannerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match polled {
            Poll::Ready(Some(Ok(batch))) => match self.admit(&batch) {
                Ok(()) => Poll::Ready(Some(Ok(batch))),
                Err(e) => {
                    self.finish(Some(e.to_string()));
                    Poll::Ready(Some(Err(e)))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                let err = PlannerError::from_datafusion(e);
                self.finish(Some(err.to_string()));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                self.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        if self.report.is_some() {
            self.finish(Some("cancelled by the client".into()));
        }
    }
}

struct QueryReport {
    statement: String,
    principal: String,
    started: Instant,
    physical: Arc<dyn ExecutionPlan>,
    recorder: Arc<ScanRecorder>,
    cache_before: CacheSnapshot,
    dataset: Arc<Dataset>,
    rows: u64,
    bytes: u64,
    egress_alert: bool,
    error: Option<String>,
    disclosure: Arc<DisclosureReport>,
    /// The start record of this query; its end record copies it.
    audit: AuditRecord,
    audit_log: Arc<AuditLog>,
}

#[derive(Debug, Default)]
struct ScanTotals {
    bytes_scanned: usize,
    row_groups_total: usize,
    row_groups_pruned: usize,
    page_rows_pruned: usize,
}

impl QueryReport {
    fn log(self) {
        let mut scan = ScanTotals::default();
        collect_scan_metrics(self.physical.as_ref(), &mut scan);
        let records = self.recorder.records();
        let cache = self.dataset.cache_snapshot().since(&self.cache_before);
        let tables: Vec<&str> = records.iter().map(|r| r.table.as_str()).collect();
        tracing::info!(
            statement = %self.statement,
            principal = %self.principal,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            rows = self.rows,
            bytes = self.bytes,
            egress_alert = self.egress_alert,
            tables = %tables.join(","),
            shards_scanned = records.iter().map(|r| r.shards_scanned).sum::<usize>(),
            shards_total = records.iter().map(|r| r.shards_total).sum::<usize>(),
            files_scanned = records.iter().map(|r| r.files).sum::<usize>(),
            bytes_scanned = scan.bytes_scanned,
            row_groups_total = scan.row_groups_total,
            row_groups_pruned = scan.row_groups_pruned,
            page_index_rows_pruned = scan.page_rows_pruned,
            cache_memory_hits = cache.memory_hits,
            cache_memory_misses = cache.memory_misses,
            cache_disk_hits = cache.disk_hits,
            cache_disk_misses = cache.disk_misses,
            object_store_gets = cache.store_gets,
            object_store_bytes = cache.store_bytes,
            outcome = if self.error.is_some() { "error" } else { "ok" },
            error = self.error.as_deref().unwrap_or(""),
            "query"
        );
        let mut end = self.audit;
        end.time = now_rfc3339();
        end.phase = "end".into();
        end.rows = Some(self.rows);
        end.bytes = Some(self.bytes);
        end.egress_alert = self.egress_alert;
        end.suppressed_cells = Some(self.disclosure.suppressed_cells());
        end.suppressed_by_reason = disclosure::REASONS
            .iter()
            .map(|r| (r.to_string(), self.disclosure.suppressed.of(r)))
            .collect();
        end.protected_cells = Some(self.disclosure.result_cells());
        end.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        end.outcome = match &self.error {
            None => "ok".into(),
            Some(e) if e == "cancelled by the client" => "cancelled".into(),
            Some(_) => "error".into(),
        };
        end.error = self.error;
        self.audit_log.submit(&end);
    }
}

fn collect_scan_metrics(plan: &dyn ExecutionPlan, totals: &mut ScanTotals) {
    if let Some(metrics) = plan.metrics() {
        for m in metrics.iter() {
            match m.value() {
                MetricValue::Count { name, count } if name == "bytes_scanned" => {
                    totals.bytes_scanned += count.value()
                }
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } => match name.as_ref() {
                    "row_groups_pruned_statistics" => {
                        totals.row_groups_total +=
                            pruning_metrics.pruned() + pruning_metrics.matched();
                        totals.row_groups_pruned += pruning_metrics.pruned();
                    }
                    "row_groups_pruned_bloom_filter" => {
                        totals.row_groups_pruned += pruning_metrics.pruned()
                    }
                    "page_index_rows_pruned" => totals.page_rows_pruned += pruning_metrics.pruned(),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    for child in plan.children() {
        collect_scan_metrics(child.as_ref(), totals);
    }
}
