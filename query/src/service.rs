//! The query service: what every door calls. It authenticates, plans in the principal's
//! session, writes the durable audit start record before anything executes, executes, protects
//! and releases, and streams under the egress limits; a door only decodes and encodes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::catalog::TableProvider;
use strata_engine::Dataset;
use strata_passport::Principal;
use strata_planner::PlannerError;
use strata_planner::disclosure::{self, DisclosureSettings, release::ReleaseLedger};
use strata_planner::registered::policy::fact_rows;
use strata_planner::registered::{self, RegisteredPolicy, RegisteredSettings};
use strata_planner::tiers::TierMap;

use crate::audit::{AuditLog, AuditRecord, now_rfc3339};
use crate::auth::Authenticator;
use crate::call::Call;
use crate::cohorts::NamedCohorts;
use crate::config::{EgressSettings, ServerConfig, read_or_make_date_shift_secret};
use crate::error::QueryError;
use crate::handles::Handles;
use crate::ledger_file::open_ledger;
use crate::limits::{Held, Limits};
use crate::prepared::{PlanningSession, Prepared};
use crate::stream::QueryStream;
use tracing::Instrument;

pub struct QueryService {
    pub(crate) dataset: Arc<Dataset>,
    pub(crate) tiers: Arc<TierMap>,
    /// Registered-tier views of the participant tables, built once.
    pub(crate) registered_views: BTreeMap<String, Arc<dyn TableProvider>>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) auth: Authenticator,
    pub(crate) egress: EgressSettings,
    pub(crate) egress_alerts: Arc<AtomicU64>,
    pub(crate) disclosure: DisclosureSettings,
    pub(crate) person_keys: Arc<std::collections::HashMap<String, String>>,
    /// Participant sets released to each principal (complementary suppression across
    /// queries).
    pub(crate) ledger: Arc<ReleaseLedger>,
    pub(crate) cohorts: NamedCohorts,
    /// Named cohorts compiled once per principal and tier (their concept sets resolved), for
    /// every later session of their owner. The dataset does not change while it is served.
    pub(crate) compiled_cohorts: std::sync::Mutex<
        std::collections::HashMap<(String, String), datafusion::logical_expr::LogicalPlan>,
    >,
    handles: Handles,
    pub(crate) limits: Limits,
    /// The workers plans are shipped to, if this server coordinates a cluster.
    pub(crate) cluster: Option<Arc<strata_cluster::Coordinator>>,
    /// What the workers check before running a registered-tier fragment.
    pub(crate) registered_fingerprint: String,
}

/// The end record of a query whose execution was dropped before it produced a stream.
struct Unfinished<'a> {
    record: Option<AuditRecord>,
    audit: &'a AuditLog,
}

impl Unfinished<'_> {
    fn finished(mut self) {
        self.record = None;
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.phase = "end".into();
            record.time = now_rfc3339();
            record.outcome = QueryError::Cancelled.outcome().into();
            record.error = Some(QueryError::Cancelled.message());
            self.audit.submit(&record);
        }
    }
}

/// What a run hands the door: batches computed before the first one could leave (protected
/// results, whose suppression report rides in the schema), or a live stream.
pub enum Results {
    Computed(
        Arc<Vec<arrow::record_batch::RecordBatch>>,
        arrow::datatypes::SchemaRef,
    ),
    Streaming(Box<QueryStream>),
}

/// The registered tier's policy for `dataset` under `config` (its state folder's date-shift
/// secret), as the server builds it at start; a cluster worker builds the same to run the
/// registered views' fragments.
///
/// `make_secret`: the server makes the date-shift secret when it has none; a worker does not.
pub async fn registered_policy_of(
    dataset: &Dataset,
    config: &ServerConfig,
    make_secret: bool,
) -> anyhow::Result<Arc<strata_planner::registered::policy::RegisteredPolicy>> {
    let secret = read_or_make_date_shift_secret(&config.state_dir(dataset.dir()), make_secret)?;
    let (raw, _) = dataset.session()?;
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let policy = registered_policy(&raw, &secret, &config.registered, year)
        .await
        .map_err(|e| anyhow::anyhow!("cannot prepare the registered tier: {e}"))?;
    Ok(Arc::new(policy))
}

/// Runs the registered views' fact queries over the unrestricted session of the dataset.
async fn registered_policy(
    raw: &datafusion::prelude::SessionContext,
    secret: &[u8; 32],
    settings: &RegisteredSettings,
    year: i32,
) -> Result<RegisteredPolicy, QueryError> {
    let mut person_columns = Vec::new();
    if let Ok(person) = raw.table_provider("person").await {
        person_columns = person
            .schema()
            .fields()
            .iter()
            .map(|f| format!("person.{}", f.name()))
            .collect();
    }
    let has =
        |t: &str| raw.table_exist(t).unwrap_or(false) || person_columns.iter().any(|c| c == t);
    let mut facts = Vec::new();
    for (fact, sql) in RegisteredPolicy::fact_queries(settings, year, has) {
        let batches = raw
            .sql(&sql)
            .await
            .map_err(PlannerError::from_datafusion)?
            .collect()
            .await
            .map_err(PlannerError::from_datafusion)?;
        facts.push((fact, fact_rows(&batches)?));
    }
    Ok(RegisteredPolicy::from_facts(secret, settings, facts))
}

impl QueryService {
    pub async fn open(
        dataset: Arc<Dataset>,
        config: &ServerConfig,
        auth: Authenticator,
    ) -> anyhow::Result<Self> {
        let tiers = Arc::new(TierMap::from_catalog(dataset.catalog()));
        let policy = registered_policy_of(&dataset, config, true).await?;
        tracing::info!(
            left_out = policy.excluded_count(),
            "registered tier: participants aged {}+ left out",
            config.registered.max_age
        );
        let registered_fingerprint = policy.fingerprint();
        let registered_views =
            registered::build_views(dataset.catalog(), &tiers, dataset.providers(), policy)?;
        let cluster = match config.cluster.workers.is_empty() {
            true => None,
            false => {
                let secret = strata_cluster::ClusterSecret::load_or_create(
                    &config.cluster_secret_path(dataset.dir()),
                )?;
                let coordinator = strata_cluster::Coordinator::new(&config.cluster, secret)?;
                tracing::info!(workers = ?coordinator.workers(), "coordinating a cluster");
                Some(Arc::new(coordinator))
            }
        };
        let audit = Arc::new(AuditLog::open(&config.audit_path(dataset.dir()))?);
        tracing::info!(audit_log = %audit.path().display(), "audit log");
        Ok(QueryService {
            tiers,
            registered_views,
            audit,
            auth,
            egress: config.egress.clone(),
            egress_alerts: Arc::new(AtomicU64::new(0)),
            disclosure: config.disclosure.clone(),
            person_keys: Arc::new(disclosure::person_keys(dataset.catalog())),
            cohorts: NamedCohorts::open(&config.state_dir(dataset.dir()).join("cohorts.json"))?,
            compiled_cohorts: Default::default(),
            ledger: Arc::new(
                open_ledger(
                    &config.state_dir(dataset.dir()).join("released.jsonl"),
                    config.disclosure.ledger_budget_mb << 20,
                )
                .map_err(|e| anyhow::anyhow!("cannot open the release ledger: {e}"))?,
            ),
            dataset,
            handles: Handles::default(),
            limits: Limits::new(config.limits.clone()),
            cluster,
            registered_fingerprint,
        })
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// Planned statements waiting for their execution, each bound to the principal that
    /// planned it.
    pub(crate) fn handles(&self) -> &Handles {
        &self.handles
    }

    /// The caller behind `authorization` (`Bearer <JWT>`, or `None`); a refusal leaves an audit
    /// record (who the token claimed to be is not trusted, so not recorded).
    pub fn authenticate(
        &self,
        call: &Call,
        authorization: Option<&str>,
    ) -> Result<Principal, QueryError> {
        let _auth = tracing::info_span!("auth").entered();
        self.auth.authenticate(authorization).inspect_err(|e| {
            let mut record = call.record("authenticate");
            record.outcome = e.outcome().into();
            record.error = Some(e.message());
            self.audit.submit(&record);
        })
    }

    /// Plans `sql` for the caller (statement policy, tier guard, registered views); audited.
    pub async fn prepare(
        &self,
        call: &Call,
        action: &str,
        sql: &str,
    ) -> Result<Prepared, QueryError> {
        self.plan(call, action, sql, None).await
    }

    /// [`QueryService::prepare`] for a statement the door parsed (PostgreSQL clients send several
    /// statements and session commands in one text); `sql` is its text for the audit log.
    pub async fn prepare_statement(
        &self,
        call: &Call,
        action: &str,
        sql: &str,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<Prepared, QueryError> {
        self.plan(call, action, sql, Some(statement)).await
    }

    async fn plan(
        &self,
        call: &Call,
        action: &str,
        sql: &str,
        parsed: Option<datafusion::sql::sqlparser::ast::Statement>,
    ) -> Result<Prepared, QueryError> {
        let mut record = call.record(action);
        record.set_statement(sql);
        let result = async {
            let principal = call.principal()?;
            let session = self.session(principal, call.dialect).await?;
            let (ctx, guard) = (&session.ctx, &session.guard);
            let query = match parsed {
                Some(statement) => {
                    strata_planner::plan_statement_guarded(ctx, sql, statement, guard).await?
                }
                None => strata_planner::plan_sql_guarded(ctx, sql, guard).await?,
            };
            let mut prepared = Prepared::new(query, guard, principal, call.dialect);
            prepared.session = PlanningSession::new(session);
            Ok(prepared)
        }
        .instrument(tracing::info_span!("plan"))
        .await;
        if let Ok(prepared) = &result {
            record.tables = prepared.tables.clone();
            record.plan_sha256 = Some(prepared.plan_sha256.clone());
        }
        self.audited(record, result).await
    }

    /// Protected results are computed before the door describes the result: the suppression
    /// report rides in the schema, which goes out first (Flight clients check that the
    /// FlightInfo schema and the stream's agree). The results wait in `prepared` for the
    /// execution that releases them.
    pub async fn settle(
        &self,
        call: &Call,
        action: &str,
        prepared: &mut Prepared,
    ) -> Result<(), QueryError> {
        prepared.results = None;
        if !self.is_protected(prepared, call.principal()?) {
            return Ok(());
        }
        let mut stream = self.start(call, action, prepared).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            batches.push(batch?);
        }
        prepared.schema = schema;
        prepared.results = Some(Arc::new(batches));
        Ok(())
    }

    /// Runs a planned statement: what `settle` computed, or a fresh execution whose start record
    /// is on disk before anything executes and whose end record follows when the stream ends.
    pub async fn run(
        &self,
        call: &Call,
        action: &str,
        prepared: &Prepared,
    ) -> Result<Results, QueryError> {
        if let Some(batches) = &prepared.results {
            return Ok(Results::Computed(batches.clone(), prepared.schema.clone()));
        }
        let stream = self.start(call, action, prepared).await?;
        Ok(Results::Streaming(Box::new(stream)))
    }

    /// Writes the durable start record, then starts executing.
    pub(crate) async fn start(
        &self,
        call: &Call,
        action: &str,
        prepared: &Prepared,
    ) -> Result<QueryStream, QueryError> {
        let mut record = call.record(action);
        record.set_statement(&prepared.query.sql);
        record.plan_sha256 = Some(prepared.plan_sha256.clone());
        record.tables = prepared.tables.clone();
        let principal = call.principal()?;
        let admission = match self.limits.admit(&principal.key()).await {
            Ok(admission) => admission,
            Err(e) => return self.audited(record, Err(e)).await,
        };
        let deadline = self
            .limits
            .settings()
            .query_timeout()
            .map(|t| tokio::time::Instant::now() + t);
        record.phase = "start".into();
        record.outcome = "started".into();
        record.time = now_rfc3339();
        // A client that goes away while the start record is written, or while a result is
        // computed whole (protected ones run inside `execute`), drops this future: the query
        // still gets its end record.
        let unfinished = Unfinished {
            record: Some(record.clone()),
            audit: &self.audit,
        };
        if let Err(e) = self.audit.append(&record).await {
            unfinished.finished();
            tracing::error!(error = %e, "audit log unavailable; refusing to stream");
            return Err(QueryError::AuditUnavailable);
        }
        let executed = self
            .execute(prepared, principal, record.clone())
            .instrument(tracing::info_span!("execute"));
        let mut end = self.limits.end(deadline);
        let executed = tokio::select! {
            executed = executed => executed,
            e = &mut end => Err(e),
        };
        unfinished.finished();
        match executed {
            Ok(mut stream) => {
                stream.span = tracing::info_span!(
                    "stream",
                    rows = tracing::field::Empty,
                    bytes = tracing::field::Empty
                );
                stream.admission = Some(Held::new(admission, deadline));
                stream.end = Some(end);
                Ok(stream)
            }
            Err(e) => {
                record.phase = "end".into();
                self.audited(record, Err(e)).await
            }
        }
    }

    /// Writes the audit record of a request that answers in one call: refusals durably before
    /// the refusal is sent, successes in the background.
    pub async fn audited<R>(
        &self,
        mut record: AuditRecord,
        result: Result<R, QueryError>,
    ) -> Result<R, QueryError> {
        record.time = now_rfc3339();
        match &result {
            Ok(_) => {
                record.outcome = "ok".into();
                self.audit.submit(&record);
            }
            Err(e) => {
                record.outcome = e.outcome().into();
                record.error = Some(e.message());
                if let Err(e) = self.audit.append(&record).await {
                    tracing::error!(error = %e, "audit record of a refusal not written");
                }
            }
        }
        result
    }

    /// A request answered in one call (a listing, a refusal), audited under `action`.
    pub async fn answer<R>(
        &self,
        call: &Call,
        action: &str,
        result: Result<R, QueryError>,
    ) -> Result<R, QueryError> {
        self.audited(call.record(action), result).await
    }

    /// Whether disclosure control will protect cells of this statement's result: the principal
    /// is protected and an aggregate or window reads participant data.
    pub fn is_protected(&self, prepared: &Prepared, principal: &Principal) -> bool {
        self.protection(principal).is_some()
            && disclosure::aggregates_participants(&prepared.query.plan, &self.person_keys)
    }

    /// How long running queries may go on once the server is asked to stop.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.limits.settings().shutdown_grace_secs)
    }

    /// Shuts the service down: no new queries, the running ones drained within the grace
    /// (then stopped), and the audit log on disk.
    pub async fn shut_down(&self) {
        let running = self.limits.running();
        if running > 0 {
            tracing::info!(
                running,
                grace_secs = self.limits.settings().shutdown_grace_secs,
                "waiting for running queries"
            );
        }
        let stopped = self.limits.drain().await;
        if stopped > 0 {
            tracing::warn!(
                stopped,
                "queries still running at the end of the grace were stopped"
            );
        }
    }

    /// Waits until every audit record submitted so far is on disk.
    pub async fn flush_audit(&self) {
        match self.audit.flush().await {
            Ok(()) => tracing::info!("audit log flushed"),
            Err(e) => tracing::error!(error = %e, "audit log not flushed"),
        }
    }
}
