//! Flight SQL requests: descriptors, tickets and actions whose bytes are arbitrary, wrapped in
//! each command type Flight SQL knows so that every command's decoding is reached, and followed
//! through (a FlightInfo's tickets are fetched, a prepared statement's handle is executed).

use std::sync::OnceLock;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, CommandPreparedStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor, Ticket};
use futures::StreamExt;
use prost::Message;
use strata_flight_server::StrataFlightSql;
use strata_query::Principal;
use tonic::Request;

use crate::World;

const NO_CALL_OUTLIVES: Duration = Duration::from_secs(60);
const PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The messages a descriptor or ticket may carry.
pub const COMMAND_TYPES: &[&str] = &[
    "CommandStatementQuery",
    "CommandPreparedStatementQuery",
    "TicketStatementQuery",
    "CommandGetCatalogs",
    "CommandGetDbSchemas",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetSqlInfo",
    "CommandGetPrimaryKeys",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetCrossReference",
    "CommandGetXdbcTypeInfo",
    "CommandStatementUpdate",
    "CommandPreparedStatementUpdate",
    "CommandStatementSubstraitPlan",
    "CommandStatementIngest",
];

/// The actions Flight SQL defines.
pub const ACTION_TYPES: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    "CancelFlightInfo",
    "RenewFlightEndpoint",
];

fn service() -> &'static StrataFlightSql {
    static SERVICE: OnceLock<StrataFlightSql> = OnceLock::new();
    SERVICE.get_or_init(|| StrataFlightSql::new(World::get().query.clone()))
}

/// `input[0]` picks the call and the principal, `input[1]` the message type (past the known
/// types: the rest is sent unwrapped), the rest is the message. Holds: every call ends in a
/// response or a status, within the limits.
pub fn flight_sql(input: &[u8]) {
    let [call, kind, body @ ..] = input else {
        return;
    };
    let world = World::get();
    let principal = &world.principals[(*call as usize >> 2) % world.principals.len()];
    let done = world.within(NO_CALL_OUTLIVES, async {
        match call % 4 {
            0 => flight_info(principal, wrapped(COMMAND_TYPES, *kind, body)).await,
            1 => fetch(principal, wrapped(COMMAND_TYPES, *kind, body)).await,
            2 => action(principal, *kind, body).await,
            _ => schema(principal, wrapped(COMMAND_TYPES, *kind, body)).await,
        }
    });
    assert!(
        done.is_some(),
        "a Flight SQL call outlived every limit: {input:?}"
    );
}

/// `body` as an `Any` of the `kind`-th type, or as it is past the known types.
fn wrapped(types: &[&str], kind: u8, body: &[u8]) -> Vec<u8> {
    match types.get(kind as usize) {
        Some(name) => Any {
            type_url: format!("{PREFIX}{name}"),
            value: body.to_vec().into(),
        }
        .encode_to_vec(),
        None => body.to_vec(),
    }
}

fn request<T>(principal: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(principal.clone());
    request
}

async fn flight_info(principal: &Principal, command: Vec<u8>) {
    let descriptor = FlightDescriptor::new_cmd(command);
    let Ok(info) = service()
        .get_flight_info(request(principal, descriptor))
        .await
    else {
        return;
    };
    for endpoint in info.into_inner().endpoint {
        if let Some(ticket) = endpoint.ticket {
            fetch(principal, ticket.ticket.to_vec()).await;
        }
    }
}

async fn fetch(principal: &Principal, ticket: Vec<u8>) {
    let ticket = Ticket::new(ticket);
    if let Ok(stream) = service().do_get(request(principal, ticket)).await {
        let mut stream = stream.into_inner();
        while let Some(Ok(_)) = stream.next().await {}
    }
}

async fn schema(principal: &Principal, command: Vec<u8>) {
    let descriptor = FlightDescriptor::new_cmd(command);
    let _ = service().get_schema(request(principal, descriptor)).await;
}

/// An action; a prepared statement it creates is then described and executed.
async fn action(principal: &Principal, kind: u8, body: &[u8]) {
    let Some(name) = ACTION_TYPES.get(kind as usize % ACTION_TYPES.len()) else {
        return;
    };
    let action = Action::new(*name, body.to_vec());
    let Ok(results) = service().do_action(request(principal, action)).await else {
        return;
    };
    let mut results = results.into_inner();
    while let Some(Ok(result)) = results.next().await {
        let Ok(any) = Any::decode(result.body) else {
            continue;
        };
        let Ok(Some(created)) =
            any.unpack::<arrow_flight::sql::ActionCreatePreparedStatementResult>()
        else {
            continue;
        };
        let query = CommandPreparedStatementQuery {
            prepared_statement_handle: created.prepared_statement_handle,
        };
        flight_info(principal, query.as_any().encode_to_vec()).await;
    }
}
