//! Statements a door plans now and executes later, by handle: Flight SQL's statement tickets and
//! prepared statements (PostgreSQL's named statements map onto the latter). Every operation is
//! audited here — refusals durably — so that a door only decodes, calls one of these, encodes.

use arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use std::sync::Arc;

use crate::call::Call;
use crate::error::QueryError;
use crate::prepared::Prepared;
use crate::service::{QueryService, Results};

impl QueryService {
    /// Plans `sql` and settles it (protected results computed now, so that their summary rides
    /// in the schema the door describes first); returns the schema and a one-shot ticket.
    pub async fn plan_ticket(
        &self,
        call: &Call,
        sql: &str,
    ) -> Result<(SchemaRef, String), QueryError> {
        let mut prepared = self.prepare(call, "plan_statement", sql).await?;
        self.settle(call, "execute_statement", &mut prepared)
            .await?;
        let schema = prepared.schema.clone();
        Ok((schema, self.handles().insert_ticket(prepared)))
    }

    /// Executes a ticket of the caller, once.
    pub async fn run_ticket(&self, call: &Call, handle: &str) -> Result<Results, QueryError> {
        let taken = call
            .principal()
            .and_then(|who| self.handles().take_ticket(handle, who));
        let prepared = self
            .refused_if_err(call, "execute_statement", taken)
            .await?;
        self.run(call, "execute_statement", &prepared).await
    }

    /// Plans `sql` as a prepared statement of the caller; returns its handle and plan.
    pub async fn create_prepared(
        &self,
        call: &Call,
        sql: &str,
    ) -> Result<(String, Arc<Prepared>), QueryError> {
        let prepared = Arc::new(self.prepare(call, "prepare", sql).await?);
        let handle = self.handles().insert_prepared(prepared.as_ref().clone());
        Ok((handle, prepared))
    }

    /// Binds one row of parameters (as the door decoded them, or why it could not).
    pub async fn bind_prepared(
        &self,
        call: &Call,
        handle: &str,
        parameters: Result<ParamValues, QueryError>,
    ) -> Result<(), QueryError> {
        let bound = call.principal().and_then(|who| {
            let mut bound = (*self.handles().prepared(handle, who)?).clone();
            bound.parameters = Some(parameters?);
            self.handles().replace_prepared(handle, who, bound)
        });
        self.answer(call, "bind", bound).await
    }

    /// Settles a prepared statement for the execution that follows; returns its schema.
    pub async fn settle_prepared(
        &self,
        call: &Call,
        handle: &str,
    ) -> Result<SchemaRef, QueryError> {
        let settled = async {
            let who = call.principal()?;
            let mut prepared = (*self.handles().prepared(handle, who)?).clone();
            self.settle(call, "execute_prepared", &mut prepared).await?;
            let schema = prepared.schema.clone();
            if prepared.results.is_some() {
                // Kept for the execution that follows; the next settle runs it again.
                self.handles().replace_prepared(handle, who, prepared)?;
            }
            Ok(schema)
        }
        .await;
        self.answer(call, "plan_prepared", settled).await
    }

    /// Executes a prepared statement of the caller.
    pub async fn run_prepared(&self, call: &Call, handle: &str) -> Result<Results, QueryError> {
        let found = call
            .principal()
            .and_then(|who| self.handles().prepared_for_run(handle, who));
        let prepared = self.refused_if_err(call, "execute_prepared", found).await?;
        self.run(call, "execute_prepared", &prepared).await
    }

    pub async fn close_prepared(&self, call: &Call, handle: &str) -> Result<(), QueryError> {
        let closed = call
            .principal()
            .and_then(|who| self.handles().close_prepared(handle, who));
        self.answer(call, "close_prepared", closed).await
    }

    /// Refuses a write (an update, an ingestion): Strata serves queries only.
    pub async fn refuse_write<R>(
        &self,
        call: &Call,
        action: &str,
        statement: Option<&str>,
        tables: Vec<String>,
    ) -> Result<R, QueryError> {
        let mut record = call.record(action);
        if let Some(statement) = statement {
            record.set_statement(statement);
        }
        record.tables = tables;
        self.audited(record, Err(QueryError::read_only())).await
    }

    /// Audits `result` only when it is a refusal: a success is recorded by the execution that
    /// follows it (its start and end records).
    async fn refused_if_err<R>(
        &self,
        call: &Call,
        action: &str,
        result: Result<R, QueryError>,
    ) -> Result<R, QueryError> {
        match result {
            Ok(r) => Ok(r),
            Err(e) => self.answer(call, action, Err(e)).await,
        }
    }
}
