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
use strata_query::{QueryError, Results};
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
        let (schema, handle) = self
            .query
            .plan_ticket(&call, &query.query)
            .instrument(info_span!("get_flight_info_statement"))
            .await
            .map_err(status)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        Self::info_with_ticket(&schema, ticket.as_any().encode_to_vec(), request)
    }

    pub(super) async fn execute_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = handle_text(&ticket.statement_handle);
        let results = self
            .query
            .run_ticket(&flight(&request), &handle)
            .instrument(info_span!("do_get_statement"))
            .await
            .map_err(status)?;
        Ok(Self::results(results))
    }

    pub(super) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (handle, prepared) = self
            .query
            .create_prepared(&flight(&request), &query.query)
            .instrument(info_span!("create_prepared_statement"))
            .await
            .map_err(status)?;
        let encoded = async {
            let parameters = prepared.parameter_schema()?;
            let parameter_schema = if parameters.fields().is_empty() {
                Default::default()
            } else {
                schema_bytes(&parameters)?
            };
            Ok(ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle.into(),
                dataset_schema: schema_bytes(&prepared.schema)?,
                parameter_schema,
            })
        };
        encoded.await.map_err(status)
    }

    pub(super) async fn bind_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let call = flight(&request);
        let handle = handle_text(&query.prepared_statement_handle);
        // The peekable stream still holds the first message (the schema) that routing looked at.
        let stream = request
            .into_inner()
            .map_err(|e| FlightError::Tonic(Box::new(e)));
        let decoded: Result<Vec<RecordBatch>, _> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                .try_collect()
                .await;
        let parameters = decoded
            .map_err(|e| {
                QueryError::Invalid(format!(
                    "cannot decode parameters: {}",
                    strata_engine::error::first_line(&e.to_string())
                ))
            })
            .and_then(|batches| first_row_params(&batches));
        self.query
            .bind_prepared(&call, &handle, parameters)
            .instrument(info_span!("bind_prepared_statement"))
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
        let handle = handle_text(&cmd.prepared_statement_handle);
        let schema = self
            .query
            .settle_prepared(&flight(&request), &handle)
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
        let results = self
            .query
            .run_prepared(&flight(&request), &handle)
            .instrument(info_span!("do_get_prepared_statement"))
            .await
            .map_err(status)?;
        Ok(Self::results(results))
    }

    pub(super) async fn close_prepared(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let handle = handle_text(&query.prepared_statement_handle);
        self.query
            .close_prepared(&flight(&request), &handle)
            .await
            .map_err(status)
    }

    fn results(results: Results) -> Response<DoGetStream> {
        match results {
            Results::Computed(batches, schema) => {
                let batches: Vec<_> = batches.iter().cloned().map(Ok).collect();
                Self::stream(schema, futures::stream::iter(batches))
            }
            Results::Streaming(results) => {
                let schema = results.schema();
                let batches = results.map_err(|e| FlightError::Tonic(Box::new(status(e))));
                Self::stream(schema, batches)
            }
        }
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
