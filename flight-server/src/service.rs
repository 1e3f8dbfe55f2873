//! The Flight SQL front door: decodes requests, calls the executor, streams batches. It holds no
//! policy; every statement goes through the planner.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Stream, TryStreamExt};
use moka::sync::Cache;
use prost::Message;
use strata_engine::dataset::{CATALOG_NAME, SCHEMA_NAME};
use strata_planner::principal::Principal;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info_span};

use crate::audit::{AuditRecord, now_rfc3339, sha256_hex};
use crate::auth::principal;
use crate::error::ServerError;
use crate::executor::{Executor, Prepared, QueryStream};
use crate::xdbc;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// Statements planned at GetFlightInfo or prepare time wait here for their DoGet, keyed by an
/// unguessable handle; they expire so abandoned ones don't pile up.
const HANDLE_TTL: Duration = Duration::from_secs(30 * 60);

pub struct StrataFlightSql {
    executor: Arc<Executor>,
    statements: Cache<String, Arc<Prepared>>,
    prepared: Cache<String, Arc<Prepared>>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

impl StrataFlightSql {
    pub fn new(executor: Arc<Executor>) -> Self {
        StrataFlightSql {
            executor,
            statements: Cache::builder()
                .time_to_idle(HANDLE_TTL)
                .max_capacity(100_000)
                .build(),
            prepared: Cache::builder()
                .time_to_idle(HANDLE_TTL)
                .max_capacity(100_000)
                .build(),
            sql_info: sql_info(),
            xdbc: xdbc::type_info(),
        }
    }

    fn new_handle() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn flight_info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }

    /// A prepared statement of this principal; another principal's handle is "unknown", the same
    /// answer as a handle that never existed.
    fn owned_prepared(&self, handle: &str, who: &Principal) -> Result<Arc<Prepared>, Status> {
        self.prepared
            .get(handle)
            .filter(|p| p.owner == who.session_key())
            .ok_or_else(|| Status::not_found("unknown or expired prepared statement"))
    }

    /// Executes and streams. The start record is on disk before anything executes; the end
    /// record follows when the stream ends.
    /// Writes the durable start record, then starts executing.
    async fn start(
        &self,
        prepared: &Prepared,
        who: &Principal,
        mut record: AuditRecord,
    ) -> Result<QueryStream, Status> {
        record.statement_sha256 = Some(sha256_hex(&prepared.query.sql));
        record.statement = Some(prepared.query.sql.clone());
        record.plan_sha256 = Some(prepared.plan_sha256.clone());
        record.tables = prepared.tables.clone();
        record.phase = "start".into();
        record.outcome = "started".into();
        record.time = now_rfc3339();
        self.executor.audit().append(&record).await.map_err(|e| {
            tracing::error!(error = %e, "audit log unavailable; refusing to stream");
            Status::unavailable("the audit log is unavailable; no results are released")
        })?;
        match self.executor.execute(prepared, who, record.clone()).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let status = Status::from(ServerError::from(e));
                record.phase = "end".into();
                self.audited(record, Err(status)).await
            }
        }
    }

    /// Executes and streams (or streams what an eager run already computed). The start record
    /// is on disk before anything executes; the end record follows when the stream ends.
    async fn stream(
        &self,
        prepared: &Prepared,
        who: &Principal,
        record: AuditRecord,
    ) -> Result<Response<DoGetStream>, Status> {
        if let Some(batches) = &prepared.results {
            let batches: Vec<Result<RecordBatch, FlightError>> =
                batches.iter().cloned().map(Ok).collect();
            let flight = FlightDataEncoderBuilder::new()
                .with_schema(prepared.schema.clone())
                .build(futures::stream::iter(batches))
                .map_err(flight_error_to_status);
            return Ok(Response::new(Box::pin(flight)));
        }
        let results = self.start(prepared, who, record).await?;
        let schema = results.schema();
        let batches =
            results.map_err(|e| FlightError::Tonic(Box::new(Status::from(ServerError::from(e)))));
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(flight_error_to_status);
        Ok(Response::new(Box::pin(flight)))
    }

    /// Protected (aggregate) results run to completion before the FlightInfo goes out: the
    /// suppression report rides in the schema, and clients check that the FlightInfo schema
    /// and the stream's agree.
    async fn run_if_protected(
        &self,
        prepared: &mut Prepared,
        who: &Principal,
        record: AuditRecord,
    ) -> Result<(), Status> {
        if !self.executor.is_protected(prepared, who) {
            return Ok(());
        }
        let mut stream = self.start(prepared, who, record).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            batches.push(batch.map_err(|e| Status::from(ServerError::from(e)))?);
        }
        prepared.schema = schema;
        prepared.results = Some(Arc::new(batches));
        Ok(())
    }

    /// Writes the audit record of a request that answers in one call: refusals durably before
    /// the refusal is sent, successes in the background.
    async fn audited<R>(
        &self,
        mut record: AuditRecord,
        result: Result<R, Status>,
    ) -> Result<R, Status> {
        record.time = now_rfc3339();
        match &result {
            Ok(_) => {
                record.outcome = "ok".into();
                self.executor.audit().submit(&record);
            }
            Err(status) => {
                record.outcome = outcome_of(status).into();
                record.error = Some(status.message().to_string());
                if let Err(e) = self.executor.audit().append(&record).await {
                    tracing::error!(error = %e, "audit record of a refusal not written");
                }
            }
        }
        result
    }

    /// A metadata command's answer, audited.
    async fn metadata(
        &self,
        request: &Request<Ticket>,
        action: &str,
        result: Result<Response<DoGetStream>, Status>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.audited(audit_record(request, action), result).await
    }

    fn batch_response(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { Ok(batch) }))
            .map_err(flight_error_to_status);
        Response::new(Box::pin(stream))
    }
}

fn flight_error_to_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => Status::internal(strata_engine::error::first_line(&other.to_string())),
    }
}

fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.build().expect("static sql info")
}

/// OMOP tables name their key `<table>_id` in the first column (`person.person_id`,
/// `visit_occurrence.visit_occurrence_id`); vocabulary has `concept.concept_id`.
fn primary_key(table: &str, schema: &Schema) -> Option<String> {
    let first = schema.fields().first()?.name();
    (first == &format!("{table}_id")).then(|| first.clone())
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSql {
    type FlightService = StrataFlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let span = info_span!("get_flight_info_statement");
        let mut record = audit_record(&request, "plan_statement");
        record.statement_sha256 = Some(sha256_hex(&query.query));
        record.statement = Some(query.query.clone());
        let result = async {
            let who = principal(&request)?;
            let prepared = self
                .executor
                .plan(&query.query, &who)
                .await
                .map_err(ServerError::from)?;
            record.tables = prepared.tables.clone();
            record.plan_sha256 = Some(prepared.plan_sha256.clone());
            let mut prepared = prepared;
            self.run_if_protected(
                &mut prepared,
                &who,
                audit_record(&request, "execute_statement"),
            )
            .await?;
            let handle = Self::new_handle();
            let ticket = TicketStatementQuery {
                statement_handle: handle.clone().into(),
            };
            let info = Self::flight_info(
                &prepared.schema,
                ticket.as_any().encode_to_vec(),
                request.into_inner(),
            )?;
            self.statements.insert(handle, Arc::new(prepared));
            Ok(Response::new(info))
        }
        .instrument(span)
        .await;
        self.audited(record, result).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let span = info_span!("do_get_statement");
        async {
            let handle = String::from_utf8_lossy(&ticket.statement_handle).to_string();
            let who = principal(&request)?;
            let prepared = self
                .statements
                .get(&handle)
                .filter(|p| p.owner == who.session_key());
            let record = audit_record(&request, "execute_statement");
            let Some(prepared) = prepared else {
                let refused = Err(Status::not_found("unknown or expired statement ticket"));
                return self.audited(record, refused).await;
            };
            self.statements.invalidate(&handle);
            self.stream(&prepared, &who, record).await
        }
        .instrument(span)
        .await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let span = info_span!("create_prepared_statement");
        let mut record = audit_record(&request, "prepare");
        record.statement_sha256 = Some(sha256_hex(&query.query));
        record.statement = Some(query.query.clone());
        let result = async {
            let who = principal(&request)?;
            let prepared = self
                .executor
                .plan(&query.query, &who)
                .await
                .map_err(ServerError::from)?;
            record.tables = prepared.tables.clone();
            record.plan_sha256 = Some(prepared.plan_sha256.clone());
            let parameter_schema = parameter_schema(&prepared).map_err(ServerError::from)?;
            let handle = Self::new_handle();
            let dataset_schema = schema_bytes(&prepared.schema)?;
            let parameter_schema = if parameter_schema.fields().is_empty() {
                Default::default()
            } else {
                schema_bytes(&parameter_schema)?
            };
            self.prepared.insert(handle.clone(), Arc::new(prepared));
            Ok(ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle.into(),
                dataset_schema,
                parameter_schema,
            })
        }
        .instrument(span)
        .await;
        self.audited(record, result).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let span = info_span!("bind_prepared_statement");
        let record = audit_record(&request, "bind");
        let result = async {
            let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
            let prepared = self.owned_prepared(&handle, &principal(&request)?)?;
            // The peekable stream still holds the first message (the schema) that routing looked at.
            let stream = request
                .into_inner()
                .map_err(|e| FlightError::Tonic(Box::new(e)));
            let batches: Vec<RecordBatch> =
                arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                    .try_collect()
                    .await
                    .map_err(|e| {
                        Status::invalid_argument(format!(
                            "cannot decode parameters: {}",
                            strata_engine::error::first_line(&e.to_string())
                        ))
                    })?;
            let params = first_row_params(&batches)?;
            let mut bound = (*prepared).clone();
            bound.parameters = Some(params);
            self.prepared.insert(handle.clone(), Arc::new(bound));
            Ok(DoPutPreparedStatementResult {
                prepared_statement_handle: Some(handle.into()),
            })
        }
        .instrument(span)
        .await;
        self.audited(record, result).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = String::from_utf8_lossy(&cmd.prepared_statement_handle).to_string();
        let record = audit_record(&request, "plan_prepared");
        let result = async {
            let who = principal(&request)?;
            let mut prepared = (*self.owned_prepared(&handle, &who)?).clone();
            prepared.results = None;
            self.run_if_protected(
                &mut prepared,
                &who,
                audit_record(&request, "execute_prepared"),
            )
            .await?;
            let info = Self::flight_info(
                &prepared.schema,
                cmd.as_any().encode_to_vec(),
                request.into_inner(),
            )?;
            if prepared.results.is_some() {
                // Kept for the DoGet that follows; the next GetFlightInfo runs it again.
                self.prepared.insert(handle.clone(), Arc::new(prepared));
            }
            Ok(Response::new(info))
        }
        .await;
        self.audited(record, result).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let span = info_span!("do_get_prepared_statement");
        async {
            let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
            let who = principal(&request)?;
            let record = audit_record(&request, "execute_prepared");
            let prepared = match self.owned_prepared(&handle, &who) {
                Ok(p) => p,
                Err(refused) => return self.audited(record, Err(refused)).await,
            };
            if prepared.results.is_some() {
                // Results are released once; a later DoGet without GetFlightInfo runs again.
                let mut fresh = (*prepared).clone();
                fresh.results = None;
                self.prepared.insert(handle.clone(), Arc::new(fresh));
            }
            self.stream(&prepared, &who, record).await
        }
        .instrument(span)
        .await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).to_string();
        let record = audit_record(&request, "close_prepared");
        let result = principal(&request)
            .and_then(|who| self.owned_prepared(&handle, &who))
            .map(|_| self.prepared.invalidate(&handle));
        self.audited(record, result).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let mut builder = query.into_builder();
            builder.append(CATALOG_NAME);
            Ok(Self::batch_response(
                builder.build().map_err(ServerError::from)?,
            ))
        })();
        self.metadata(&request, "get_catalogs", result).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let mut builder = query.into_builder();
            builder.append(CATALOG_NAME, SCHEMA_NAME);
            Ok(Self::batch_response(
                builder.build().map_err(ServerError::from)?,
            ))
        })();
        self.metadata(&request, "get_db_schemas", result).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let who = principal(&request)?;
            let tiers = self.executor.tiers();
            let mut builder = query.into_builder();
            for (name, table) in self.executor.dataset().tables() {
                if !tiers.table_tier(name).is_some_and(|t| who.may_read(t)) {
                    continue;
                }
                let schema = self.executor.table_schema(name, table, &who);
                builder
                    .append(CATALOG_NAME, SCHEMA_NAME, name, "TABLE", &schema)
                    .map_err(ServerError::from)?;
            }
            Ok(Self::batch_response(
                builder.build().map_err(ServerError::from)?,
            ))
        })();
        self.metadata(&request, "get_tables", result).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let mut builder = query.into_builder();
            builder.append("TABLE");
            Ok(Self::batch_response(
                builder.build().map_err(ServerError::from)?,
            ))
        })();
        self.metadata(&request, "get_table_types", result).await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let batch = query
                .into_builder(&self.sql_info)
                .build()
                .map_err(ServerError::from)?;
            Ok(Self::batch_response(batch))
        })();
        self.metadata(&request, "get_sql_info", result).await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc).schema();
        Ok(Response::new(Self::flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let batch = query
                .into_builder(&self.xdbc)
                .build()
                .map_err(ServerError::from)?;
            Ok(Self::batch_response(batch))
        })();
        self.metadata(&request, "get_xdbc_type_info", result).await
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(Self::flight_info(
            &primary_keys_schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let result = (|| {
            let who = principal(&request)?;
            let visible = self
                .executor
                .tiers()
                .table_tier(&query.table)
                .is_some_and(|t| who.may_read(t));
            let catalog_ok = query.catalog.as_deref().is_none_or(|c| c == CATALOG_NAME);
            let schema_ok = query.db_schema.as_deref().is_none_or(|s| s == SCHEMA_NAME);
            let mut rows: Vec<(String, String)> = Vec::new();
            if catalog_ok
                && schema_ok
                && visible
                && let Some(table) = self.executor.dataset().tables().get(&query.table)
            {
                let schema = datafusion::catalog::TableProvider::schema(table.as_ref());
                if let Some(column) = primary_key(&query.table, &schema) {
                    rows.push((query.table.clone(), column));
                }
            }
            let n = rows.len();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![CATALOG_NAME; n])),
                Arc::new(StringArray::from(vec![SCHEMA_NAME; n])),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| format!("{}_pkey", r.0))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(vec![1; n])),
            ];
            let batch = RecordBatch::try_new(Arc::new(primary_keys_schema()), columns)
                .map_err(ServerError::from)?;
            Ok(Self::batch_response(batch))
        })();
        self.metadata(&request, "get_primary_keys", result).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}

    // Strata is read-only and plans SQL only: updates, ingestion and Substrait plans are
    // refused (and audited) rather than left to the library's defaults.

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mut record = audit_record(&request, "statement_update");
        record.statement_sha256 = Some(sha256_hex(&ticket.query));
        record.statement = Some(ticket.query);
        self.audited(record, Err(read_only())).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.audited(audit_record(&request, "prepared_update"), Err(read_only()))
            .await
    }

    async fn do_put_statement_ingest(
        &self,
        ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mut record = audit_record(&request, "ingest");
        record.tables = vec![ticket.table];
        self.audited(record, Err(read_only())).await
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.audited(
            audit_record(&request, "substrait_plan"),
            Err(no_substrait()),
        )
        .await
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.audited(
            audit_record(&request, "substrait_plan"),
            Err(no_substrait()),
        )
        .await
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.audited(
            audit_record(&request, "substrait_plan"),
            Err(no_substrait()),
        )
        .await
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "ticket type {} is not supported",
            message.type_url
        )))
    }

    async fn do_handshake(
        &self,
        _request: Request<Streaming<arrow_flight::HandshakeRequest>>,
    ) -> Result<
        Response<
            Pin<Box<dyn Stream<Item = Result<arrow_flight::HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        // No credentials to exchange yet: an empty handshake lets clients that always shake hands
        // proceed; passports arrive as bearer tokens on every call.
        let response = arrow_flight::HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(response)
        }))))
    }
}

fn read_only() -> Status {
    Status::permission_denied(
        "Strata is read-only: only queries (SELECT, WITH, VALUES, EXPLAIN) are accepted",
    )
}

fn no_substrait() -> Status {
    Status::unimplemented("Substrait plans are not accepted; send SQL")
}

/// The audit record of a request, before its outcome: who (if authenticated), from where, and
/// the workspace the client named.
pub fn audit_record<T>(request: &Request<T>, action: &str) -> AuditRecord {
    let who = request.extensions().get::<Principal>();
    let workspace = request
        .metadata()
        .get("x-strata-workspace")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect());
    AuditRecord {
        time: now_rfc3339(),
        request_id: uuid::Uuid::new_v4().to_string(),
        phase: "request".into(),
        action: action.into(),
        sub: who.map_or_else(String::new, |p| p.sub.clone()),
        issuer: who.map_or_else(String::new, |p| p.issuer.clone()),
        tier: who.map_or_else(String::new, |p| p.tier.to_string()),
        egress_mode: who.map_or_else(String::new, |p| p.egress.to_string()),
        visa_ids: who.map_or_else(Vec::new, |p| p.visa_ids.clone()),
        workspace,
        peer: request.remote_addr().map(|a| a.to_string()),
        ..Default::default()
    }
}

pub fn outcome_of(status: &Status) -> &'static str {
    match status.code() {
        tonic::Code::PermissionDenied => "denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::InvalidArgument | tonic::Code::NotFound => "invalid",
        tonic::Code::Unimplemented => "unsupported",
        tonic::Code::Cancelled => "cancelled",
        _ => "error",
    }
}

fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode schema: {e}")))?;
    Ok(message.0)
}

/// Parameters `$1..$n` in order, typed where DataFusion could infer a type.
fn parameter_schema(prepared: &Prepared) -> Result<Schema, strata_planner::PlannerError> {
    let types = prepared
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

fn first_row_params(batches: &[RecordBatch]) -> Result<ParamValues, Status> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(ParamValues::from(Vec::<ScalarValue>::new()));
    };
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > 1 {
        return Err(Status::invalid_argument(
            "a query binds one row of parameters; run it once per row",
        ));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Status::invalid_argument(format!(
                "bad parameter: {}",
                strata_engine::error::first_line(&e.to_string())
            ))
        })?;
    Ok(ParamValues::from(values))
}
