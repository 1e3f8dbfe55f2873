//! Queries and prepared statements: planned at GetFlightInfo or prepare, executed at DoGet.

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::common::{ParamValues, ScalarValue};
use futures::TryStreamExt;
use prost::Message;
use std::sync::Arc;

use strata_query::{Call, Prepared, Principal, QueryError, Results};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use super::{DoGetStream, StrataFlightSql, handle_text};
use crate::call::flight;
use crate::error::{codec, status};

impl StrataFlightSql {
    pub(super) async fn plan_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = flight(&request);
        async {
            let mut prepared = self
                .query
                .prepare(&call, "plan_statement", &query.query)
                .await?;
            self.query
                .settle(&call, "execute_statement", &mut prepared)
                .await?;
            let schema = prepared.schema.clone();
            let handle = self.query.handles().insert_ticket(prepared);
            let ticket = TicketStatementQuery {
                statement_handle: handle.into(),
            };
            Ok::<_, QueryError>((schema, ticket.as_any().encode_to_vec()))
        }
        .instrument(info_span!("get_flight_info_statement"))
        .await
        .map_err(status)
        .and_then(|(schema, ticket)| Self::info_with_ticket(&schema, ticket, request))
    }

    pub(super) async fn execute_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = handle_text(&ticket.statement_handle);
        let lookup = |who: &Principal| self.query.handles().take_ticket(&handle, who);
        self.execute(&request, "execute_statement", lookup)
            .instrument(info_span!("do_get_statement"))
            .await
    }

    pub(super) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let call = flight(&request);
        async {
            let prepared = self.query.prepare(&call, "prepare", &query.query).await?;
            let parameters = prepared.parameter_schema()?;
            let dataset_schema = schema_bytes(&prepared.schema)?;
            let parameter_schema = if parameters.fields().is_empty() {
                Default::default()
            } else {
                schema_bytes(&parameters)?
            };
            let handle = self.query.handles().insert_prepared(prepared);
            Ok(ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle.into(),
                dataset_schema,
                parameter_schema,
            })
        }
        .instrument(info_span!("create_prepared_statement"))
        .await
        .map_err(status)
    }

    pub(super) async fn bind_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let call = flight(&request);
        let handle = handle_text(&query.prepared_statement_handle);
        let bound = async {
            let who = call.principal()?;
            let prepared = self.query.handles().prepared(&handle, who)?;
            // The peekable stream still holds the first message (the schema) that routing
            // looked at.
            let stream = request
                .into_inner()
                .map_err(|e| FlightError::Tonic(Box::new(e)));
            let batches: Vec<RecordBatch> =
                arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                    .try_collect()
                    .await
                    .map_err(|e| {
                        QueryError::Invalid(format!(
                            "cannot decode parameters: {}",
                            strata_engine::error::first_line(&e.to_string())
                        ))
                    })?;
            let mut bound = (*prepared).clone();
            bound.parameters = Some(first_row_params(&batches)?);
            self.query.handles().replace_prepared(&handle, who, bound)
        }
        .instrument(info_span!("bind_prepared_statement"))
        .await;
        self.query
            .answer(&call, "bind", bound)
            .await
            .map_err(status)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    pub(super) async fn plan_prepared(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = flight(&request);
        let handle = handle_text(&cmd.prepared_statement_handle);
        let settled = async {
            let who = call.principal()?;
            let mut prepared = (*self.query.handles().prepared(&handle, who)?).clone();
            self.query
                .settle(&call, "execute_prepared", &mut prepared)
                .await?;
            let schema = prepared.schema.clone();
            if prepared.results.is_some() {
                // Kept for the DoGet that follows; the next GetFlightInfo runs it again.
                self.query
                    .handles()
                    .replace_prepared(&handle, who, prepared)?;
            }
            Ok(schema)
        }
        .await;
        let schema = self
            .query
            .answer(&call, "plan_prepared", settled)
            .await
            .map_err(status)?;
        Self::info(&schema, &cmd, request)
    }

    pub(super) async fn execute_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = handle_text(&query.prepared_statement_handle);
        let lookup = |who: &Principal| self.query.handles().prepared_for_run(&handle, who);
        self.execute(&request, "execute_prepared", lookup)
            .instrument(info_span!("do_get_prepared_statement"))
            .await
    }

    /// Executes the statement a handle holds for the caller (an unknown handle is refused and
    /// audited) and streams its results.
    async fn execute(
        &self,
        request: &Request<Ticket>,
        action: &str,
        lookup: impl FnOnce(&Principal) -> Result<Arc<Prepared>, QueryError>,
    ) -> Result<Response<DoGetStream>, Status> {
        let call = flight(request);
        let found = call.principal().and_then(lookup);
        let prepared = self.query.answer_if_err(&call, action, found).await;
        let run = match prepared {
            Ok(prepared) => self.run(&call, action, &prepared).await,
            Err(e) => Err(e),
        };
        run.map_err(status)
    }

    pub(super) async fn close_prepared(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let call = flight(&request);
        let handle = handle_text(&query.prepared_statement_handle);
        let closed = call
            .principal()
            .and_then(|who| self.query.handles().close_prepared(&handle, who));
        self.query
            .answer(&call, "close_prepared", closed)
            .await
            .map_err(status)
    }

    async fn run(
        &self,
        call: &Call,
        action: &str,
        prepared: &Prepared,
    ) -> Result<Response<DoGetStream>, QueryError> {
        Ok(match self.query.run(call, action, prepared).await? {
            Results::Computed(batches, schema) => {
                let batches: Vec<_> = batches.iter().cloned().map(Ok).collect();
                Self::stream(schema, futures::stream::iter(batches))
            }
            Results::Streaming(results) => {
                let schema = results.schema();
                let batches = results.map_err(|e| FlightError::Tonic(Box::new(status(e))));
                Self::stream(schema, batches)
            }
        })
    }
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, QueryError> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(codec)?;
    Ok(message.0)
}

fn first_row_params(batches: &[RecordBatch]) -> Result<ParamValues, QueryError> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(ParamValues::from(Vec::<ScalarValue>::new()));
    };
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > 1 {
        return Err(QueryError::Invalid(
            "a query binds one row of parameters; run it once per row".into(),
        ));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            QueryError::Invalid(format!(
                "bad parameter: {}",
                strata_engine::error::first_line(&e.to_string())
            ))
        })?;
    Ok(ParamValues::from(values))
}
