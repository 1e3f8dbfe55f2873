//! Planned statements waiting for their execution, keyed by unguessable handles (Flight tickets
//! and prepared-statement handles; PostgreSQL named statements). A handle works only for the
//! principal — with the same tier and egress — that planned it: anyone else's is "unknown",
//! the same answer as a handle that never existed.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use strata_passport::Principal;

use crate::error::QueryError;
use crate::prepared::{PlanningSession, Prepared};

/// Abandoned handles expire so they don't pile up.
const HANDLE_TTL: Duration = Duration::from_secs(30 * 60);

pub struct Handles {
    /// One-shot: a statement ticket is executed once.
    tickets: Cache<String, Arc<Prepared>>,
    prepared: Cache<String, Arc<Prepared>>,
}

impl Default for Handles {
    fn default() -> Self {
        let cache = || {
            Cache::builder()
                .time_to_idle(HANDLE_TTL)
                .max_capacity(100_000)
                .build()
        };
        Handles {
            tickets: cache(),
            prepared: cache(),
        }
    }
}

fn new_handle() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Handles {
    pub fn insert_ticket(&self, mut prepared: Prepared) -> String {
        // A handle waits up to 30 minutes: it keeps its plan, not a whole session.
        prepared.session = PlanningSession::default();
        let handle = new_handle();
        self.tickets.insert(handle.clone(), Arc::new(prepared));
        handle
    }

    /// The ticket's statement, taken: a second execution of the same ticket is refused.
    pub fn take_ticket(&self, handle: &str, who: &Principal) -> Result<Arc<Prepared>, QueryError> {
        let prepared = self
            .tickets
            .get(handle)
            .filter(|p| p.owned_by(who))
            .ok_or_else(|| QueryError::NotFound("unknown or expired statement ticket".into()))?;
        self.tickets.invalidate(handle);
        Ok(prepared)
    }

    pub fn insert_prepared(&self, mut prepared: Prepared) -> String {
        prepared.session = PlanningSession::default();
        let handle = new_handle();
        self.prepared.insert(handle.clone(), Arc::new(prepared));
        handle
    }

    pub fn prepared(&self, handle: &str, who: &Principal) -> Result<Arc<Prepared>, QueryError> {
        self.prepared
            .get(handle)
            .filter(|p| p.owned_by(who))
            .ok_or_else(|| QueryError::NotFound("unknown or expired prepared statement".into()))
    }

    /// Replaces an owned prepared statement (bound parameters, settled results).
    pub fn replace_prepared(
        &self,
        handle: &str,
        who: &Principal,
        prepared: Prepared,
    ) -> Result<(), QueryError> {
        self.prepared(handle, who)?;
        self.prepared.insert(handle.to_string(), Arc::new(prepared));
        Ok(())
    }

    /// The prepared statement to execute now. Settled results are released once: the handle
    /// keeps the statement without them, so a later execution runs it again.
    pub fn prepared_for_run(
        &self,
        handle: &str,
        who: &Principal,
    ) -> Result<Arc<Prepared>, QueryError> {
        let prepared = self.prepared(handle, who)?;
        if prepared.results.is_some() {
            let mut fresh = (*prepared).clone();
            fresh.results = None;
            self.prepared.insert(handle.to_string(), Arc::new(fresh));
        }
        Ok(prepared)
    }

    pub fn close_prepared(&self, handle: &str, who: &Principal) -> Result<(), QueryError> {
        self.prepared(handle, who)?;
        self.prepared.invalidate(handle);
        Ok(())
    }
}
