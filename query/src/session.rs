//! A principal's session: only the tables the principal may read (registered views for the
//! registered tier, their named cohorts as `cohort_<name>`), the tier guard as an analyzer rule
//! so every plan DataFusion runs in it is checked again, and the disclosure planner sized to the
//! principal.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::execution::context::QueryPlanner;
use datafusion::prelude::SessionContext;
use strata_engine::Tier;
use strata_engine::table::ScanRecorder;
use strata_passport::Principal;
use strata_planner::PlannerError;
use strata_planner::disclosure::{DisclosurePlanner, DisclosureReport, Level, Protection};
use strata_planner::registered::shift_bounds::ShiftBounds;
use strata_planner::tier_guard::TierGuard;

use crate::call::Dialect;
use crate::error::QueryError;
use crate::service::QueryService;

/// Compiled named cohorts kept at most (then the cache starts over).
const COMPILED_COHORTS: usize = 4096;

/// A principal's session for one request.
pub(crate) struct Session {
    pub(crate) ctx: SessionContext,
    pub(crate) recorder: Arc<ScanRecorder>,
    pub(crate) guard: Arc<TierGuard>,
    pub(crate) report: Arc<DisclosureReport>,
    pub(crate) protection: Option<Protection>,
}

/// A session ends with its pg_catalog taken out (which would otherwise keep it alive for ever:
/// `strata_planner::postgres::remove_catalog`).
impl Drop for Session {
    fn drop(&mut self) {
        strata_planner::postgres::remove_catalog(&self.ctx);
    }
}

impl Session {
    /// A cohort definition compiled in the principal's session; a table the definition needs that
    /// is above the principal's tier is refused as in SQL.
    pub(crate) async fn compile_cohort(
        &self,
        def: &serde_json::Value,
    ) -> Result<datafusion::dataframe::DataFrame, QueryError> {
        use strata_planner::cohort::CohortError;
        match strata_planner::cohort::compile(&self.ctx, def).await {
            Ok(df) => Ok(df),
            Err(CohortError::MissingTable(name)) => {
                Err(self.guard.explain(PlannerError::MissingTable(name)).into())
            }
            Err(e @ CohortError::Unsupported { .. }) => Err(QueryError::Unsupported(e.to_string())),
            Err(e) => Err(QueryError::Invalid(e.to_string())),
        }
    }
}

impl QueryService {
    /// The principal's session, with its named cohorts as tables `cohort_<name>` and, for
    /// PostgreSQL clients, `pg_catalog` over exactly those tables.
    pub(crate) async fn session(
        &self,
        principal: &Principal,
        dialect: Dialect,
    ) -> Result<Session, QueryError> {
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
            match session.compile_cohort(&def).await.map(|df| {
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
        if dialect == Dialect::Postgres {
            strata_planner::postgres::install_catalog(&session.ctx)?;
        }
        Ok(session)
    }

    /// The table `name` as `principal` may read it: nothing above their tier, the registered
    /// view for the registered tier, else the table itself. Sessions and listings both ask
    /// here, so that what a caller can list is what they can query.
    pub(crate) fn visible_table(
        &self,
        principal: &Principal,
        name: &str,
        table: Arc<dyn TableProvider>,
    ) -> Option<Arc<dyn TableProvider>> {
        if !self
            .tiers
            .table_tier(name)
            .is_some_and(|t| principal.may_read(t))
        {
            return None;
        }
        if principal.tier == Tier::Registered
            && let Some(view) = self.registered_views.get(name)
        {
            return Some(view.clone());
        }
        Some(table)
    }

    fn base_session(&self, principal: &Principal) -> Result<Session, QueryError> {
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
        let (ctx, recorder) = self.dataset.session_with(
            |name, table| self.visible_table(principal, name, table),
            self.limits.settings().query_memory_bytes(),
            |builder| match &self.cluster {
                None => Ok(builder.with_query_planner(planner)),
                Some(cluster) => {
                    let options = strata_cluster::QueryOptions::new(
                        protection,
                        registered.then(|| self.registered_fingerprint.clone()),
                    )
                    .with_memory(self.limits.settings().query_memory_bytes())
                    .with_origin(self.dataset.fingerprint());
                    cluster
                        .coordinate(builder, planner, options)
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
                }
            },
        )?;
        strata_planner::cohort::function::CohortFunction::register(&ctx);
        let guard = Arc::new(
            TierGuard::new(self.tiers.clone(), principal.tier)
                .aggregates_only(principal.aggregates_only()),
        );
        ctx.add_analyzer_rule(guard.clone());
        if registered {
            ShiftBounds::install(&ctx);
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
    pub(crate) fn protection(&self, principal: &Principal) -> Option<Protection> {
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
}
