//! A request as the query service sees it, whichever door it came through: who (once
//! authenticated), from where, in which workspace. Every audit record starts from it.

use strata_passport::Principal;

use crate::audit::{AuditRecord, now_rfc3339};
use crate::error::QueryError;

/// The SQL a door's clients speak: Flight SQL's generic SQL, or PostgreSQL's, whose clients
/// also read `pg_catalog` and call its session functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Generic,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Call {
    /// The door: `flight`, `cohort` (gRPC CohortService), `pg`.
    pub door: &'static str,
    pub dialect: Dialect,
    pub principal: Option<Principal>,
    pub peer: Option<String>,
    /// The workspace the client named (free text, cut to 200 characters).
    pub workspace: Option<String>,
}

impl Call {
    pub fn new(door: &'static str) -> Self {
        Call {
            door,
            dialect: Dialect::Generic,
            principal: None,
            peer: None,
            workspace: None,
        }
    }

    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    pub fn with_peer(mut self, peer: Option<String>) -> Self {
        self.peer = peer;
        self
    }

    pub fn with_workspace(mut self, workspace: Option<&str>) -> Self {
        self.workspace = workspace.map(|w| w.chars().take(200).collect());
        self
    }

    pub fn with_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// The authenticated caller; a door that forgot to authenticate gets an internal error,
    /// never an anonymous pass.
    pub fn principal(&self) -> Result<&Principal, QueryError> {
        self.principal.as_ref().ok_or_else(|| {
            QueryError::Internal("request reached the query service without authentication".into())
        })
    }

    /// The audit record of this request, before its outcome.
    pub fn record(&self, action: &str) -> AuditRecord {
        let who = self.principal.as_ref();
        AuditRecord {
            time: now_rfc3339(),
            request_id: uuid::Uuid::new_v4().to_string(),
            phase: "request".into(),
            action: action.into(),
            door: self.door.into(),
            sub: who.map_or_else(String::new, |p| p.sub.clone()),
            issuer: who.map_or_else(String::new, |p| p.issuer.clone()),
            tier: who.map_or_else(String::new, |p| p.tier.to_string()),
            egress_mode: who.map_or_else(String::new, |p| p.egress.to_string()),
            visa_ids: who.map_or_else(Vec::new, |p| p.visa_ids.clone()),
            workspace: self.workspace.clone(),
            peer: self.peer.clone(),
            ..Default::default()
        }
    }
}
