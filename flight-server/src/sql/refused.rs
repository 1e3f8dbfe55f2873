//! Strata is read-only and plans SQL only: updates, ingestion and Substrait plans are refused
//! (and audited) rather than left to the library's defaults.

use strata_query::QueryError;
use tonic::{Request, Status};

use super::StrataFlightSql;
use crate::call::flight;
use crate::error::status;

impl StrataFlightSql {
    pub(super) async fn refuse_update<T>(
        &self,
        statement: Option<String>,
        action: &str,
        request: &Request<T>,
    ) -> Result<i64, Status> {
        self.query
            .refuse_write(&flight(request), action, statement.as_deref(), vec![])
            .await
            .map_err(status)
    }

    pub(super) async fn refuse_ingest<T>(
        &self,
        table: String,
        request: &Request<T>,
    ) -> Result<i64, Status> {
        self.query
            .refuse_write(&flight(request), "ingest", None, vec![table])
            .await
            .map_err(status)
    }

    pub(super) async fn refuse_substrait<T, R>(&self, request: &Request<T>) -> Result<R, Status> {
        let refused = Err(QueryError::no_substrait());
        self.query
            .answer(&flight(request), "substrait_plan", refused)
            .await
            .map_err(status)
    }
}
