//! A statement planned and checked for one principal, with what its audit records need.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use strata_passport::Principal;
use strata_planner::PlannedQuery;
use strata_planner::tier_guard::TierGuard;

use crate::audit::sha256_hex;
use crate::call::Dialect;
use crate::error::QueryError;
use crate::session::Session;

/// A statement planned once (at describe or prepare time) and executed later.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub query: PlannedQuery,
    pub schema: SchemaRef,
    pub parameters: Option<ParamValues>,
    /// The principal that planned it, with its tier and egress; handles work for nobody else.
    pub(crate) owner: String,
    /// `table:tier` of every table read, for the audit log.
    pub tables: Vec<String>,
    pub plan_sha256: String,
    /// Results computed by `settle` (protected queries), released by the next run.
    pub results: Option<Arc<Vec<RecordBatch>>>,
    /// The dialect it was planned in: its execution's session is the same.
    pub(crate) dialect: Dialect,
    /// The session it was planned in, handed to its first execution so that a statement planned
    /// and run at once (a ticket, a protected result settled at describe time) builds one.
    pub(crate) session: PlanningSession,
}

/// A session kept from planning for one execution; clones share it, and the first to take it
/// wins (later executions build their own, with a fresh disclosure report).
#[derive(Clone, Default)]
pub(crate) struct PlanningSession(Arc<Mutex<Option<Session>>>);

impl PlanningSession {
    pub(crate) fn new(session: Session) -> Self {
        PlanningSession(Arc::new(Mutex::new(Some(session))))
    }

    pub(crate) fn take(&self) -> Option<Session> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

impl std::fmt::Debug for PlanningSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanningSession")
    }
}

impl Prepared {
    pub(crate) fn new(
        query: PlannedQuery,
        guard: &TierGuard,
        principal: &Principal,
        dialect: Dialect,
    ) -> Self {
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
            dialect,
            session: PlanningSession::default(),
        }
    }

    pub(crate) fn owned_by(&self, principal: &Principal) -> bool {
        self.owner == principal.session_key()
    }

    /// Parameters `$1..$n` in order, typed where DataFusion could infer a type.
    pub fn parameter_schema(&self) -> Result<Schema, QueryError> {
        let types = self
            .query
            .plan
            .get_parameter_types()
            .map_err(strata_planner::PlannerError::from_datafusion)?;
        let mut names: Vec<_> = types.into_iter().collect();
        names.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        Ok(Schema::new(
            names
                .into_iter()
                .map(|(name, t)| Field::new(name, t.unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        ))
    }
}
