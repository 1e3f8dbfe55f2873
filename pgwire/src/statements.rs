//! The simple and extended query protocols over the query service. A statement is either a
//! session command (answered by the connection) or planned, protected, audited and run by the
//! query service; this module only moves it between the wire and that service.

use std::fmt::Debug;
use std::sync::Arc;
use tracing::Instrument;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::Statement;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use strata_query::Prepared;

use crate::encode;
use crate::error::{error, pg_error};
use crate::params;
use crate::results::{Rows, fields};
use crate::session::{Connection, is_command, setting_name};

/// A statement of the extended protocol, as parsed.
#[derive(Clone)]
pub enum Parsed {
    /// Planned for the caller by the query service.
    Query(Arc<Prepared>),
    /// A session command, run at each execution; `schema` describes its rows (SHOW, FETCH).
    Command {
        statement: Box<Statement>,
        schema: Option<SchemaRef>,
    },
}

pub struct Statements {
    parser: Arc<Parser>,
    /// `[egress] max_rows`: no result has more rows (it fails instead).
    egress_max_rows: u64,
}

/// The most rows one Execute asks of a portal at a time. pgwire 0.42 reserves room for the
/// whole row limit before it reads a row (`Portal::fetch`): an Execute asking 2^31 - 1 rows
/// aborted the process on a 51 GB allocation (found by the fuzz target `pg_messages`).
pub const EXECUTE_ROWS_AT_A_TIME: i32 = 1 << 20;

impl Statements {
    pub fn new(egress_max_rows: u64) -> Self {
        Statements {
            parser: Arc::new(Parser),
            egress_max_rows,
        }
    }

    /// The row limit an Execute is run with. PostgreSQL reads zero and negative limits as "all
    /// rows", and so does this; so is a limit above what egress lets any result have (the same
    /// rows, exactly). A limit between the two is served in portions of
    /// [`EXECUTE_ROWS_AT_A_TIME`] rows, each ending in PortalSuspended like any limit reached,
    /// so a client that sets one and executes again gets every row.
    fn row_limit(&self, asked: i32) -> i32 {
        if asked <= 0 || asked as u64 > self.egress_max_rows {
            0
        } else {
            asked.min(EXECUTE_ROWS_AT_A_TIME)
        }
    }
}

/// Runs one statement of a simple query.
async fn simple(
    connection: &Connection,
    text: &str,
    statement: Statement,
) -> PgWireResult<Response> {
    if let Some(answer) = connection.command(&statement, &Format::UnifiedText).await {
        return answer;
    }
    let call = &connection.call()?;
    let prepared = connection
        .query
        .prepare_statement(call, "plan_statement", text, statement)
        .await
        .map_err(pg_error)?;
    let results = connection
        .query
        .run(call, "execute_statement", &prepared)
        .await
        .map_err(pg_error)?;
    Ok(Response::Query(
        Rows::new(results, &Format::UnifiedText).response(),
    ))
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = Connection::of(client)?;
        let statements = strata_query::postgres::parse(query).map_err(|e| pg_error(e.into()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let single = statements.len() == 1;
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            let text = if single {
                query.to_owned()
            } else {
                statement.to_string()
            };
            let request = strata_telemetry::request_span("pg", "query", |_| None);
            match simple(&connection, &text, statement)
                .instrument(request)
                .await
            {
                Ok(response) => responses.push(response),
                // PostgreSQL stops at the first failing statement of a simple query.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Statements {
    type Statement = Parsed;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        message.max_rows = self.row_limit(message.max_rows);
        self._on_execute(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = Connection::of(client)?;
        match &portal.statement.statement {
            Parsed::Command { statement, .. } => {
                let answer = connection
                    .command(statement, &portal.result_column_format)
                    .await
                    .unwrap_or_else(|| Err(error("XX000", "not a session command".into())))?;
                if let Statement::Declare { stmts } = statement.as_ref() {
                    // A declared cursor is also a portal: clients describe it by name.
                    for name in stmts.iter().flat_map(|d| &d.names) {
                        if let Some(prepared) = connection.cursor(&name.value).await {
                            let statement = StoredStatement::new(
                                name.value.clone(),
                                Parsed::Query(prepared),
                                vec![],
                            );
                            client
                                .portal_store()
                                .put_portal(Arc::new(Portal::new_cursor(
                                    name.value.clone(),
                                    Arc::new(statement),
                                )));
                        }
                    }
                }
                Ok(answer)
            }
            Parsed::Query(prepared) => {
                let mut bound = prepared.as_ref().clone();
                bound.parameters = Some(params::values(portal, prepared)?);
                let results = connection
                    .query
                    .run(&connection.call()?, "execute_prepared", &bound)
                    .instrument(strata_telemetry::request_span("pg", "execute", |_| None))
                    .await
                    .map_err(pg_error)?;
                Ok(Response::Query(
                    Rows::new(results, &portal.result_column_format).response(),
                ))
            }
        }
    }
}

pub struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let connection = Connection::of(client)?;
        let mut statements = strata_query::postgres::parse(sql).map_err(|e| pg_error(e.into()))?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                return Err(error(
                    "42601",
                    "cannot insert multiple commands into a prepared statement".into(),
                ));
            }
        };
        if is_command(&statement) {
            let schema = match &statement {
                Statement::Fetch { name, .. } => connection
                    .cursor(&name.value)
                    .await
                    .map(|p| p.schema.clone()),
                Statement::ShowVariable { variable } => {
                    Some(Arc::new(Schema::new(vec![Field::new(
                        setting_name(variable),
                        DataType::Utf8,
                        true,
                    )])))
                }
                _ => None,
            };
            return Ok(Some(Parsed::Command {
                statement: Box::new(statement),
                schema,
            }));
        }
        let prepared = connection
            .query
            .prepare_statement(&connection.call()?, "prepare", sql, statement)
            .instrument(strata_telemetry::request_span("pg", "parse", |_| None))
            .await
            .map_err(pg_error)?;
        Ok(Some(Parsed::Query(Arc::new(prepared))))
    }

    fn get_parameter_types(&self, statement: &Parsed) -> PgWireResult<Vec<Type>> {
        let Parsed::Query(prepared) = statement else {
            return Ok(vec![]);
        };
        let schema = prepared.parameter_schema().map_err(pg_error)?;
        Ok(schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                datafusion::arrow::datatypes::DataType::Null => Type::UNKNOWN,
                t => encode::pg_type(t),
            })
            .collect())
    }

    fn get_result_schema(
        &self,
        statement: &Parsed,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or_default();
        Ok(match statement {
            Parsed::Query(prepared) => fields(&prepared.schema, &format).as_ref().clone(),
            Parsed::Command {
                schema: Some(schema),
                ..
            } => fields(schema, &format).as_ref().clone(),
            Parsed::Command { .. } => vec![],
        })
    }
}

#[cfg(test)]
mod row_limits {
    use super::*;

    #[test]
    fn row_limits_are_all_rows_or_at_most_a_portion() {
        let statements = Statements::new(10_000_000);
        assert_eq!(statements.row_limit(0), 0);
        assert_eq!(
            statements.row_limit(-1),
            0,
            "negative: all rows, as PostgreSQL"
        );
        assert_eq!(statements.row_limit(i32::MIN), 0);
        assert_eq!(statements.row_limit(100), 100);
        assert_eq!(
            statements.row_limit(i32::MAX),
            0,
            "above the egress limit: all rows"
        );
        assert_eq!(statements.row_limit(5_000_000), EXECUTE_ROWS_AT_A_TIME);
    }
}
