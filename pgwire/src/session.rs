//! A connection's own state and the session commands PostgreSQL clients send around their
//! queries: SET/SHOW/RESET of client settings, transactions (no-ops: Strata is read-only, every
//! statement sees the same data), DISCARD, and cursors (DECLARE/FETCH/CLOSE) over a result
//! stream of the query service. None of this is policy: each cursor's query is planned,
//! protected and audited by the query service like any other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::sql::sqlparser::ast::{CloseCursor, Expr, FetchDirection, Set, Statement, Value};
use futures::stream;
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use strata_query::{Call, Prepared, QueryService};

use crate::error::{error, pg_error};
use crate::results::{Batches, fields, response};

/// What a connection keeps between statements.
pub struct Connection {
    /// The session's call as it logged in; [`Connection::call`] is what a statement runs as.
    login: Call,
    /// The passport presented at login, presented again by every statement.
    bearer: String,
    pub query: Arc<QueryService>,
    settings: Mutex<BTreeMap<String, String>>,
    cursors: tokio::sync::Mutex<HashMap<String, Cursor>>,
}

/// A declared cursor: its plan (a portal of the same name describes it) and its rows to come.
struct Cursor {
    prepared: Arc<Prepared>,
    batches: Batches,
}

impl Connection {
    pub fn new(login: Call, bearer: String, query: Arc<QueryService>) -> Self {
        Connection {
            login,
            bearer,
            query,
            settings: Mutex::default(),
            cursors: Default::default(),
        }
    }

    /// The call a statement runs as: the login's passport verified again, so that one that
    /// expired, or whose key the JWKS no longer holds, stops answering (the check is cached).
    pub fn call(&self) -> PgWireResult<Call> {
        let principal = self
            .query
            .authenticate(&self.login, Some(&self.bearer))
            .map_err(|e| {
                error(
                    "28P01",
                    format!(
                        "the session's passport is no longer accepted: {}",
                        e.message()
                    ),
                )
            })?;
        Ok(self.login.clone().with_principal(Some(principal)))
    }

    /// The connection of an authenticated client.
    pub fn of(client: &(impl ClientInfo + ?Sized)) -> PgWireResult<Arc<Connection>> {
        client
            .session_extensions()
            .get::<Connection>()
            .ok_or_else(|| error("28000", "not authenticated".into()))
    }

    /// Answers `statement` when it is a session command; `None` for anything the query service
    /// plans.
    /// Results are encoded in `format`.
    pub async fn command(
        &self,
        statement: &Statement,
        format: &Format,
    ) -> Option<PgWireResult<Response>> {
        let done = |tag: &str| Some(Ok(Response::Execution(Tag::new(tag))));
        match statement {
            Statement::StartTransaction { .. } => {
                Some(Ok(Response::TransactionStart(Tag::new("BEGIN"))))
            }
            Statement::Commit { .. } => Some(Ok(Response::TransactionEnd(Tag::new("COMMIT")))),
            // Savepoints, like transactions, have nothing to undo in a read-only server.
            Statement::Rollback {
                savepoint: Some(_), ..
            } => done("ROLLBACK"),
            Statement::Rollback { .. } => Some(Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))),
            Statement::Savepoint { .. } => done("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => done("RELEASE"),
            Statement::Set(set) => {
                self.set(set);
                done("SET")
            }
            Statement::Reset(_) => {
                self.settings().clear();
                done("RESET")
            }
            Statement::ShowVariable { variable } => Some(self.show(&setting_name(variable))),
            Statement::Discard { .. } => {
                self.settings().clear();
                self.cursors.lock().await.clear();
                done("DISCARD ALL")
            }
            Statement::Deallocate { .. } => done("DEALLOCATE"),
            Statement::Declare { stmts } => Some(self.declare(stmts).await),
            Statement::Fetch {
                name, direction, ..
            } => Some(self.fetch(&name.value, direction, format).await),
            Statement::Close { cursor } => {
                let mut cursors = self.cursors.lock().await;
                match cursor {
                    CloseCursor::All => cursors.clear(),
                    CloseCursor::Specific { name } => {
                        if cursors.remove(&name.value).is_none() {
                            return Some(Err(no_cursor(&name.value)));
                        }
                    }
                }
                done("CLOSE CURSOR")
            }
            _ => None,
        }
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, set: &Set) {
        let (name, value) = match set {
            Set::SingleAssignment {
                variable, values, ..
            } => (
                variable.to_string(),
                values.iter().map(setting).collect::<Vec<_>>().join(", "),
            ),
            Set::SetTimeZone { value, .. } => ("timezone".into(), setting(value)),
            Set::SetNames { charset_name, .. } => {
                ("client_encoding".into(), charset_name.value.clone())
            }
            // Transaction modes, roles, session authorization: nothing to keep.
            _ => return,
        };
        self.settings().insert(name.to_ascii_lowercase(), value);
    }

    fn show(&self, name: &str) -> PgWireResult<Response> {
        let key = name.to_ascii_lowercase();
        let value = self
            .settings()
            .get(&key)
            .cloned()
            .or_else(|| default_setting(&key).map(str::to_owned))
            .ok_or_else(|| {
                error(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })?;
        let fields = Arc::new(vec![FieldInfo::new(
            key,
            None,
            None,
            Type::TEXT,
            FieldFormat::Text,
        )]);
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&value)?;
        let row = encoder.take_row();
        let mut response = QueryResponse::new(fields, stream::iter([Ok(row)]));
        response.set_command_tag("SHOW");
        Ok(Response::Query(response))
    }

    /// The plan of a declared cursor.
    pub async fn cursor(&self, name: &str) -> Option<Arc<Prepared>> {
        self.cursors
            .lock()
            .await
            .get(name)
            .map(|c| c.prepared.clone())
    }

    async fn declare(
        &self,
        declarations: &[datafusion::sql::sqlparser::ast::Declare],
    ) -> PgWireResult<Response> {
        for declaration in declarations {
            let (Some(query), [name]) = (&declaration.for_query, declaration.names.as_slice())
            else {
                return Err(error("0A000", "only DECLARE name CURSOR FOR query".into()));
            };
            let statement = Statement::Query(query.clone());
            let text = statement.to_string();
            let call = self.call()?;
            let prepared = self
                .query
                .prepare_statement(&call, "plan_statement", &text, statement)
                .await
                .map_err(pg_error)?;
            let results = self
                .query
                .run(&call, "execute_statement", &prepared)
                .await
                .map_err(pg_error)?;
            let cursor = Cursor {
                prepared: Arc::new(prepared),
                batches: Batches::new(results),
            };
            self.cursors.lock().await.insert(name.value.clone(), cursor);
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    async fn fetch(
        &self,
        name: &str,
        direction: &FetchDirection,
        format: &Format,
    ) -> PgWireResult<Response> {
        let count = match direction {
            FetchDirection::Next | FetchDirection::Forward { limit: None } => Some(1),
            FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
                Some(count(&limit.value)?)
            }
            FetchDirection::All | FetchDirection::ForwardAll => None,
            _ => {
                return Err(error(
                    "0A000",
                    "cursors move forward only (FETCH n, NEXT, ALL)".into(),
                ));
            }
        };
        let mut cursors = self.cursors.lock().await;
        let cursor = cursors.get_mut(name).ok_or_else(|| no_cursor(name))?;
        let fields = fields(&cursor.batches.schema, format);
        let batches = match cursor.batches.take(count).await {
            Ok(batches) => batches,
            Err(e) => {
                // A failed cursor cannot go on.
                cursors.remove(name);
                return Err(pg_error(e));
            }
        };
        let mut response = response(&batches, fields)?;
        response.set_command_tag("FETCH");
        Ok(Response::Query(response))
    }
}

fn count(value: &Value) -> PgWireResult<usize> {
    match value {
        Value::Number(n, _) => n
            .parse()
            .map_err(|_| error("22023", format!("bad FETCH count {n}"))),
        other => Err(error("22023", format!("bad FETCH count {other}"))),
    }
}

fn no_cursor(name: &str) -> pgwire::error::PgWireError {
    error("34000", format!("cursor \"{name}\" does not exist"))
}

/// The name of a setting as SHOW and SET know it (`transaction isolation level` is three words).
pub fn setting_name(words: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    words
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the connection answers `statement` itself ([`Connection::command`]).
pub fn is_command(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
    )
}

/// A setting's value as SHOW gives it back: string literals without their quotes.
fn setting(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// What SHOW answers for settings the client did not set.
fn default_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => strata_query::postgres::SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" | "log_timezone" => "UTC",
        "integer_datetimes" | "standard_conforming_strings" => "on",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "transaction isolation level"
        | "transaction_isolation"
        | "default_transaction_isolation" => "read committed",
        "search_path" => "\"$user\", public",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => {
            "C.UTF-8"
        }
        "is_superuser" => "off",
        "bytea_output" => "hex",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "application_name" => "",
        _ => return None,
    })
}
